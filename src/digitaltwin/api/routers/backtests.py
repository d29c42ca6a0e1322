"""Backtests: run one on an asset, read its metrics table, plot and forecasts."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from digitaltwin.api.deps import State
from digitaltwin.api.forecast_schemas import BacktestIn, BacktestOut
from digitaltwin.domain.durations import parse_duration
from digitaltwin.domain.errors import ValidationError
from digitaltwin.forecasting.algorithms import canonical_name
from digitaltwin.forecasting.errors import ForecastError
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


def _algorithms(names: list[str]) -> list[str]:
    """The canonical names of ``names``, each once, in the order given.

    Raises:
        ValidationError: naming ``algorithms`` when the list is empty or a name is unknown
            (or needs an extra that is not installed).
    """
    if not names:
        raise ValidationError("at least one algorithm is needed", field="algorithms")
    out: list[str] = []
    for name in names:
        try:
            canonical = canonical_name(name)
        except ForecastError as exc:
            raise ValidationError(str(exc), field="algorithms") from None
        if canonical not in out:
            out.append(canonical)
    return out


@router.post("/assets/{asset_id}/backtests", response_model=BacktestOut, status_code=201)
async def run_backtest(asset_id: str, body: BacktestIn, state: State) -> BacktestOut:
    """Rolling-origin backtest, one origin per local midnight from ``start`` to ``end``; stored with its plot.

    422 naming ``algorithms`` for an empty list or an unknown name (aliases count once).
    """
    algorithms = _algorithms(body.algorithms)
    start, end = _date(body.start, "start"), _date(body.end, "end")
    horizon = parse_duration(body.horizon, field="horizon")
    _, record = await run_in_threadpool(
        lambda: state.forecasts.backtest(
            asset_id, algorithms, start=start, end=end, horizon=horizon, retrain_every=body.retrain_every, store=True
        )
    )
    assert record is not None
    return backtest_out(record)


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
