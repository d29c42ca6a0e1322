"""Forecasts of an asset's energy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from digitaltwin.api.deps import State
from digitaltwin.api.schemas import ForecastOut, ForecastPoint
from digitaltwin.domain.durations import parse_duration

router = APIRouter(prefix="/api/v1/assets", tags=["forecasts"])


@router.get("/{asset_id}/forecast", response_model=ForecastOut)
async def get_forecast(
    asset_id: str,
    state: State,
    horizon: Annotated[str, Query(description="ISO 8601 duration, e.g. PT24H or PT1H")] = "PT24H",
    algorithm: Annotated[str, Query(description="lightgbm, seasonal_naive_daily or seasonal_naive_weekly")] = "lightgbm",
) -> ForecastOut:
    """Energy per interval (kWh) for the intervals after the last stored reading.

    404 naming ``algorithm`` when no model of a trained algorithm exists yet;
    422 naming ``horizon`` when it exceeds the model's or is not a multiple of
    the resolution, or ``history`` with the samples available and required.
    """
    delta: timedelta = parse_duration(horizon, field="horizon")
    try:
        result = await run_in_threadpool(state.forecasts.forecast, asset_id, algorithm, horizon=delta)
    except Exception:
        state.metrics.predictions.labels(algorithm, "error").inc()
        raise
    state.metrics.predictions.labels(algorithm, "ok").inc()
    points = [
        ForecastPoint(ts=ts.to_pydatetime(), value=None if value != value else float(value))
        for ts, value in result.values.items()
    ]
    manifest = result.manifest
    return ForecastOut(
        asset_id=asset_id,
        algorithm=algorithm,
        model_id=manifest.model_id if manifest else None,
        model_version=manifest.version if manifest else None,
        unit="kWh",
        interval_seconds=int(result.step.total_seconds()),
        issued_at=datetime.now(UTC),
        points=points,
    )
