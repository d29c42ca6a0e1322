"""Issued forecasts (the product's scheduled ones and external ones posted here) and their skill."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from digitaltwin.api.deps import State
from digitaltwin.api.monitoring_schemas import ExternalForecastIn, IssuedForecastOut, SkillOut, SkillRowOut
from digitaltwin.api.routers.alarms import MonitoringUnavailableError, monitoring_of
from digitaltwin.domain.errors import ValidationError
from digitaltwin.domain.timestamps import parse_instant
from digitaltwin.services.forecast_monitor import EXTERNAL_PREFIX
from digitaltwin.storage.monitoring_store import ForecastPoint, IssuedForecast

router = APIRouter(prefix="/api/v1", tags=["forecasting"])

#: Farthest a point may lie from its issue time (forecasts longer than a year are not scored here).
MAX_LEAD = timedelta(days=366)


def _out(f: IssuedForecast) -> IssuedForecastOut:
    return IssuedForecastOut(id=f.id, asset_id=f.asset_id, source=f.source, issued_at=f.issued_at,
                             step_seconds=f.step_s, points=f.points)


@router.post("/assets/{asset_id}/forecasts", response_model=IssuedForecastOut, status_code=201)
def post_forecast(asset_id: str, body: ExternalForecastIn, state: State) -> IssuedForecastOut:
    """Store an external forecast (a vendor's PV or load forecast; operator) as issued, source
    ``external:<source>``: kWh per interval of ``step_seconds`` at each interval start, with optional
    quantiles. It is scored like the product's own (``GET .../forecast-skill``); for a score, the
    points should sit on the asset's interval grid (15 min or 1 h starts). 404 naming ``asset_id``;
    422 naming the field (``points``, ``source``, ``issued_at`` ...)."""
    state.repo.get_asset(asset_id)
    if len({p.ts for p in body.points}) != len(body.points):
        raise ValidationError("two points share a ts", field="points")
    if any(abs(p.ts - body.issued_at) > MAX_LEAD for p in body.points):
        raise ValidationError(f"a point is more than {MAX_LEAD.days} days from issued_at", field="points")
    points = [ForecastPoint(p.ts, p.value, {float(k): v for k, v in p.quantiles.items()} if p.quantiles else None)
              for p in sorted(body.points, key=lambda p: p.ts)]
    issued = monitoring_of(state).store.save_forecast(asset_id, EXTERNAL_PREFIX + body.source, body.issued_at,
                                                    body.step_seconds, points)
    return _out(issued)


@router.get("/assets/{asset_id}/forecasts", response_model=list[IssuedForecastOut])
def list_forecasts(
    asset_id: str, state: State,
    source: Annotated[str | None, Query(max_length=200, description="model:<model_id> or external:<name>")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[IssuedForecastOut]:
    """Forecasts stored as issued for the asset, newest first. 404 naming ``asset_id``."""
    state.repo.get_asset(asset_id)
    return [_out(f) for f in monitoring_of(state).store.forecasts(asset_id, source=source, limit=limit)]


@router.get("/assets/{asset_id}/forecast-skill", response_model=SkillOut)
async def forecast_skill(
    asset_id: str, state: State,
    source: Annotated[str | None, Query(max_length=200, description="one source only")] = None,
    end: Annotated[str | None, Query(description="RFC 3339: the windows end here (default now)")] = None,
) -> SkillOut:
    """MAE, RMSE, CV(RMSE), bias, NMBE and interval coverage of every stored forecast of the asset
    against its actual energy, by source, rolling window (7 and 30 days of target intervals ending at
    ``end``) and lead-time bucket (docs/alarms.md gives the formulas). 404 naming ``asset_id``."""
    until = datetime.now(UTC) if end is None else parse_instant(end, field="end")
    monitor = monitoring_of(state).forecast_monitor
    if monitor is None:
        raise MonitoringUnavailableError("forecast monitoring is not running in this process")
    rows = await run_in_threadpool(monitor.skill, asset_id, end=until, source=source)
    return SkillOut(asset_id=asset_id, end=until, rows=[
        SkillRowOut(source=r.source, window=r.window, lead=r.lead, n=r.n, mae=r.mae, rmse=r.rmse, cv_rmse=r.cv_rmse,
                    bias=r.bias, nmbe=r.nmbe, coverage=r.coverage, interval=r.interval)
        for r in rows
    ])
