"""Forecasts of an asset's energy, with quantiles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool

from digitaltwin.api.deps import State
from digitaltwin.api.forecast_schemas import ForecastOut
from digitaltwin.domain.durations import parse_duration
from digitaltwin.domain.errors import ValidationError
from digitaltwin.forecasting.algorithms import TORCH_ALGORITHMS, canonical_name
from digitaltwin.forecasting.errors import ForecastError
from digitaltwin.services.forecasting import ForecastResult

router = APIRouter(prefix="/api/v1/assets", tags=["forecasts"])


def parse_levels(text: str | None) -> list[float]:
    """``"0.1,0.5,0.9"`` -> ``[0.1, 0.5, 0.9]``.

    Raises:
        ValidationError: naming ``quantiles`` for a value that is not a number in [0.01, 0.99].
    """
    if not text:
        return []
    levels = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise ValidationError(f"quantile level {part.strip()!r} is not a number", field="quantiles") from None
        if not 0.01 <= value <= 0.99:
            raise ValidationError(f"quantile level {value:g} is outside [0.01, 0.99]", field="quantiles")
        levels.append(value)
    return sorted(set(levels))


def level_key(level: float) -> str:
    """JSON key of a quantile level: ``0.1`` -> ``"0.1"``."""
    return f"{level:g}"


def _metric_label(algorithm: str) -> str:
    """A registered algorithm name, ``best``, or ``unknown``: clients must not create label values."""
    key = algorithm.strip().lower()
    if key == "best":
        return key
    try:
        return canonical_name(key)
    except ForecastError:
        return key if key in TORCH_ALGORITHMS else "unknown"


def run_forecast(state: State, asset_id: str, algorithm: str, horizon: timedelta, levels: list[float]) -> ForecastResult:
    """Forecast through the service, counting ``predictions_total{algorithm, status}``."""
    try:
        result = state.forecasts.forecast(asset_id, algorithm, horizon=horizon, quantiles=levels)
    except Exception:
        state.metrics.predictions.labels(_metric_label(algorithm), "error").inc()
        raise
    state.metrics.predictions.labels(result.algorithm, "ok").inc()
    return result


@router.get("/{asset_id}/forecast", response_model=ForecastOut)
async def get_forecast(
    asset_id: str,
    state: State,
    horizon: Annotated[str, Query(description="ISO 8601 duration, e.g. PT24H or PT1H")] = "PT24H",
    algorithm: Annotated[
        str, Query(description="best (the asset's champion), lightgbm, xgboost, ridge, random_forest (rf), lstm, gru, "
                   "ensemble_mean, ensemble_median, ensemble_weighted, persistence, seasonal_naive_daily, seasonal_naive_weekly")
    ] = "lightgbm",
    quantiles: Annotated[str | None, Query(description="comma-separated levels in [0.01, 0.99], e.g. 0.1,0.5,0.9")] = None,
) -> Response:
    """Energy per interval (kWh) for the intervals after the last stored reading.

    Each point carries ``ts``, ``value`` and, when asked, ``quantiles`` keyed by level
    (split-conformal intervals calibrated on held-out data). Flat series: when the last
    24 h are constant every point is that level and ``flatliner`` is true.

    404 naming ``algorithm`` when no model of a trained algorithm exists yet;
    422 naming ``horizon`` when it exceeds the model's or is not a multiple of
    the resolution, ``quantiles`` for a bad level or a model without calibration,
    or ``history`` with the samples available and required.
    """
    delta: timedelta = parse_duration(horizon, field="horizon")
    levels = parse_levels(quantiles)
    result = await run_in_threadpool(run_forecast, state, asset_id, algorithm, delta, levels)
    return Response(forecast_out(asset_id, result, levels).model_dump_json(), media_type="application/json")


def forecast_out(asset_id: str, result: ForecastResult, levels: list[float]) -> ForecastOut:
    """The response body of a forecast (validated once; the route serialises it without a second pass)."""
    stamps = result.values.index.to_pydatetime().tolist()
    values = result.values.to_numpy(dtype=float).tolist()
    if levels:
        table = result.forecast.quantiles
        keys = [level_key(q) for q in table.columns]
        rows = table.to_numpy(dtype=float).tolist()
        quantiles: list[dict[str, float] | None] = [dict(zip(keys, row, strict=True)) for row in rows]
    else:
        quantiles = [None] * len(values)
    manifest = result.manifest
    return ForecastOut.model_validate(
        {
            "asset_id": asset_id,
            "algorithm": result.algorithm,
            "model_id": manifest.model_id if manifest else None,
            "model_version": manifest.version if manifest else None,
            "unit": "kWh",
            "interval_seconds": int(result.step.total_seconds()),
            "issued_at": datetime.now(UTC),
            "flatliner": result.forecast.flatliner,
            "points": [
                {"ts": ts, "value": value, "quantiles": q} for ts, value, q in zip(stamps, values, quantiles, strict=True)
            ],
        }
    )
