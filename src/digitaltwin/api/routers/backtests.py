"""Backtests: queue one on an asset (a job), read its metrics table, plot and forecasts."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from digitaltwin.api.deps import State
from digitaltwin.api.forecast_schemas import BacktestIn, BacktestOut
from digitaltwin.api.job_schemas import JobOut
from digitaltwin.api.routers.jobs import accepted, requester
from digitaltwin.domain.durations import parse_duration
from digitaltwin.domain.errors import ValidationError
from digitaltwin.jobs.service import JobService
from digitaltwin.registry.backtests import BacktestRecord

router = APIRouter(prefix="/api/v1", tags=["backtests"])


def backtest_out(record: BacktestRecord) -> BacktestOut:
    base = f"/api/v1/backtests/{record.backtest_id}"
    return BacktestOut(**record.to_dict(), plot_url=f"{base}/plot.png", forecasts_url=f"{base}/forecasts.csv")


def _date(value: str, field: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"{field} {value!r} is not a date YYYY-MM-DD", field=field) from None


@router.post("/assets/{asset_id}/backtests", response_model=JobOut, status_code=202)
async def run_backtest(asset_id: str, body: BacktestIn, state: State, request: Request, response: Response) -> JobOut:
    """Queue a rolling-origin backtest, one origin per local midnight from ``start`` to ``end``, stored
    with its plot; 202 with the job and ``Location: /api/v1/jobs/{id}``. Once ``succeeded`` the job's
    ``result.backtest_id`` is the stored backtest (``GET /api/v1/backtests/{id}``).

    Checked before queueing: 422 naming ``algorithms`` for an empty list or an unknown name
    (aliases count once), ``start``/``end`` for bad dates, ``horizon``, and ``retrain_every``
    when the backtest asks for more than ``BACKTEST_MAX_FITS`` model fits (algorithms x refits);
    404 unknown asset; 409 naming ``asset_id`` past ``JOBS_MAX_PER_ASSET``, 429 past ``JOBS_MAX_PER_USER``.
    """
    start, end = _date(body.start, "start"), _date(body.end, "end")
    horizon = parse_duration(body.horizon, field="horizon")
    jobs: JobService = state.jobs  # type: ignore[assignment]
    job = await run_in_threadpool(
        lambda: jobs.submit_backtest(
            asset_id, body.algorithms, start=start, end=end, horizon=horizon, retrain_every=body.retrain_every,
            requested_by=requester(request),
        )
    )
    return accepted(job, response)


@router.get("/backtests/{backtest_id}", response_model=BacktestOut)
def get_backtest(backtest_id: str, state: State) -> BacktestOut:
    """A stored backtest: metrics per algorithm (MAE, RMSE, CV(RMSE), NMBE, MAPE, MASE, pinball, 80 % coverage, peak error)."""
    return backtest_out(state.forecasts.backtests.get(backtest_id))


@router.get("/backtests/{backtest_id}/plot.png", response_class=Response, responses={200: {"content": {"image/png": {}}}})
def get_backtest_plot(backtest_id: str, state: State) -> Response:
    """PNG plot of actual against forecast with the 10-90 % interval."""
    return Response(state.forecasts.backtests.plot(backtest_id), media_type="image/png")


@router.get("/backtests/{backtest_id}/forecasts.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def get_backtest_forecasts(backtest_id: str, state: State) -> Response:
    """Every forecast of the backtest as CSV (origin, ts, algorithm, actual, predicted, q0.1, q0.5, q0.9)."""
    return Response(state.forecasts.backtests.forecasts_csv(backtest_id), media_type="text/csv")
