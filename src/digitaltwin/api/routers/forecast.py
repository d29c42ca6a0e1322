"""Forecasts of an asset's energy, with quantiles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated

import anyio.to_thread
import orjson
from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from digitaltwin.api.deps import AppState, State
from digitaltwin.api.forecast_schemas import ForecastOut
from digitaltwin.domain.durations import parse_duration
from digitaltwin.domain.errors import ValidationError
from digitaltwin.forecasting.algorithms import TORCH_ALGORITHMS, canonical_name
from digitaltwin.forecasting.errors import ForecastError
from digitaltwin.services import energy_rollups
from digitaltwin.services.energy_answers import settled_inputs
from digitaltwin.services.forecast_answers import forecast_body_key, join_body, split_body
from digitaltwin.services.forecasting import ForecastResult, ForecastService

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


async def run_forecast(state: AppState, asset_id: str, algorithm: str, horizon: timedelta, levels: list[float]) -> ForecastResult:
    """Forecast through the service in worker threads, counting ``predictions_total{algorithm, status}``.

    The inputs are read and the kept forecast looked up outside the process's limit of forecasts
    computed at once (:func:`forecast_limiter`); only a computation waits for it, so a kept
    forecast is not queued behind one, and kept forecasts overlap their reads.
    """
    try:
        prepared = await anyio.to_thread.run_sync(
            partial(state.forecasts.prepare, asset_id, algorithm, horizon=horizon, quantiles=levels)
        )
        result = prepared.kept
        if result is None:
            result = await anyio.to_thread.run_sync(state.forecasts.compute, prepared, limiter=forecast_limiter(state))
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
    ] = "best",
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
    rows, kept = await _kept_body(state, asset_id, algorithm, delta, levels)
    if kept is not None:
        return Response(kept, media_type="application/json")
    result = await run_forecast(state, asset_id, algorithm, delta, levels)
    if rows:
        # kept under the inputs read before the forecast and the model that made it
        key = forecast_body_key(rows, asset_id, ForecastService.identity_of(result), horizon=delta, levels=levels,
                                max_hold=state.settings.power_max_hold)
        if key is not None and state.forecast_bodies is not None:
            head, tail = split_body(partial(forecast_body, asset_id, result, levels))
            state.forecast_bodies.put(key, (head, tail, result.algorithm))
            return Response(join_body((head, tail), datetime.now(UTC)), media_type="application/json")
    return Response(forecast_body(asset_id, result, levels), media_type="application/json")


async def _kept_body(
    state: AppState, asset_id: str, algorithm: str, horizon: timedelta, levels: list[float]
) -> tuple[list[tuple[object, ...]], bytes | None]:
    """PostgreSQL: the body served last time for the same stored inputs, model and request, found
    with one statement on the event loop (services/forecast_answers.py), and the settled
    fingerprint rows to keep a new body under ([] where bodies are not kept)."""
    bodies, reads = state.forecast_bodies, state.async_reads
    if bodies is None or reads is None:
        return [], None
    rows = await reads.energy_fingerprint(asset_id)
    if not rows:
        return [], None  # unknown asset: the forecast raises the error that names it
    max_hold = state.settings.power_max_hold
    try:
        model = state.forecasts.served_identity(asset_id, algorithm)
    except Exception:  # noqa: BLE001 - unknown algorithm, no model: the forecast raises the error that names it
        return [], None
    key = forecast_body_key(rows, asset_id, model, horizon=horizon, levels=levels, max_hold=max_hold)
    kept = bodies.get(key) if key is not None else None
    if kept is not None:
        head, tail, served_by = kept
        state.metrics.predictions.labels(served_by, "ok").inc()
        return rows, join_body((head, tail), datetime.now(UTC))
    # Pending change marks are folded into the rollups first, as the forecast would do, so the
    # body is kept under the inputs the next request will read (as energy answers are).
    settled = await run_in_threadpool(
        partial(settled_inputs, state.repo, asset_id, max_hold=max_hold, rollups=energy_rollups.settings.enabled)
    )
    return settled, None


def forecast_limiter(state: AppState) -> anyio.CapacityLimiter:
    """The process's limiter of ``FORECAST_CONCURRENCY`` forecasts at once (created in the event loop on first use).

    The others wait in the event loop. A forecast is CPU-bound Python and numpy holding the GIL
    most of the time, so threads computing at once only take turns at it, and their switching cost
    more than they overlapped: with 8 connections, one process served 83 uncached forecasts/s with
    anyio's 40 threads and 139/s with one (``bench/forecast_latency.py``), hence the default of 1.
    Throughput comes from ``serve --workers``. A slow forecast (a stateless algorithm calibrated
    on the request's history) delays the others of its process unless the setting is raised.
    """
    if state.forecast_limiter is None:
        state.forecast_limiter = anyio.CapacityLimiter(state.settings.forecast_concurrency)
    return state.forecast_limiter  # type: ignore[return-value]


def forecast_body(asset_id: str, result: ForecastResult, levels: list[float], issued_at: object = None) -> bytes:
    """The JSON response body of a forecast: a :class:`ForecastOut`, serialised by orjson directly.

    orjson writes the same text as ``ForecastOut.model_dump_json()`` (RFC 3339 UTC stamps ending
    in ``Z``, the shortest float that reads back the same value, ``null`` for a non-finite one;
    checked by ``tests/api/test_forecast_body.py``) in a fraction of the time of validating 96
    point models and dumping them; the values come from the service, whose types are fixed.
    ``issued_at``: written as ``issued_at`` instead of now (services/forecast_answers.py).
    """
    stamps = result.values.index.to_pydatetime().tolist()
    values = result.values.to_numpy(dtype=float).tolist()
    if levels:
        table = result.forecast.quantiles
        keys = [level_key(q) for q in table.columns]
        rows = table.to_numpy(dtype=float).tolist()
        points = [
            {"ts": ts, "value": value, "quantiles": dict(zip(keys, row, strict=True))}
            for ts, value, row in zip(stamps, values, rows, strict=True)
        ]
    else:
        points = [{"ts": ts, "value": value, "quantiles": None} for ts, value in zip(stamps, values, strict=True)]
    manifest = result.manifest
    body = {
        "asset_id": asset_id,
        "algorithm": result.algorithm,
        "model_id": manifest.model_id if manifest else None,
        "model_version": manifest.version if manifest else None,
        "unit": "kWh",
        "interval_seconds": int(result.step.total_seconds()),
        "issued_at": datetime.now(UTC) if issued_at is None else issued_at,
        "flatliner": bool(result.forecast.flatliner),
        "points": points,
    }
    return orjson.dumps(body, option=orjson.OPT_UTC_Z)
