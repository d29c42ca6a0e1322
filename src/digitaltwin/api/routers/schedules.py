"""Schedules of a site's flexible assets: plan, list, publish and track against what was metered."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from digitaltwin.api.deps import AppState, State
from digitaltwin.api.schedule_schemas import ScheduleIn, ScheduleOut, TrackingOut
from digitaltwin.domain.durations import parse_duration
from digitaltwin.domain.errors import NotFoundError
from digitaltwin.services.scheduling import PlanRequest, SchedulingService
from digitaltwin.storage.schedules import ScheduleRecord

router = APIRouter(tags=["schedules"])


def _service(state: AppState) -> SchedulingService:
    assert state.scheduling is not None
    return state.scheduling


def _out(record: ScheduleRecord) -> ScheduleOut:
    return ScheduleOut(
        id=record.id, site_id=record.site_id, version=record.version, created_at=record.created_at,
        created_by=record.created_by, start=record.start, step_seconds=record.step_seconds, steps=record.steps,
        mode=record.mode, request=record.request, plan=record.plan, published=record.published,
    )


def _principal_name(request: Request) -> str | None:
    principal = getattr(request.state, "principal", None)
    return getattr(principal, "label", None) if principal is not None else None


@router.post("/api/v1/sites/{site_id}/schedules", response_model=ScheduleOut, status_code=status.HTTP_201_CREATED)
def plan_schedule(site_id: str, body: ScheduleIn, state: State, request: Request) -> ScheduleOut:
    """Solve the cheapest schedule of the site's batteries and deferrable loads for the next horizon (operator).

    The result is stored as the site's next version and, with ``publish``, each battery's setpoints
    go to ``dt/{site_id}/{asset_id}/setpoint`` (retained, QoS 1). Negative prices and an export price
    above the import price are planned (never importing and exporting, or charging and discharging, at
    once). 422 names a bad field (prices beyond +-1e6 per kWh, ``demand_charge_per_kw`` beyond 1e8), a bad
    asset attribute (``attributes.battery.*``), or the constraint that cannot hold (``battery.soc_initial``,
    ``deferrable.window``, ``grid.import_limit_kw`` ...). The solver stops after 5 s with its best plan
    (``plan.solver``: ``time_limit`` and the proven ``gap``); 504 when it found none, 503 when it failed.
    """
    plan = PlanRequest(
        load_asset_id=body.load_asset_id, pv_asset_id=body.pv_asset_id,
        horizon=parse_duration(body.horizon, field="horizon"), mode=body.mode, quantile=body.quantile,
        algorithm=body.algorithm, import_price=body.import_price, export_price=body.export_price,
        demand_charge_per_kw=body.demand_charge_per_kw, currency=body.currency, publish=body.publish,
        replan=body.replan,
    )
    return _out(_service(state).plan(site_id, plan, by=_principal_name(request)))


@router.get("/api/v1/sites/{site_id}/schedules", response_model=list[ScheduleOut])
def list_schedules(site_id: str, state: State, limit: Annotated[int, Query(ge=1, le=200)] = 20) -> list[ScheduleOut]:
    """The site's schedules, newest version first."""
    state.repo.get_site(site_id)
    return [_out(r) for r in _service(state).store.list(site_id, limit=limit)]


@router.get("/api/v1/sites/{site_id}/schedules/latest", response_model=ScheduleOut)
def latest_schedule(site_id: str, state: State) -> ScheduleOut:
    """The schedule in force (the newest version); 404 when the site has none."""
    state.repo.get_site(site_id)
    record = _service(state).store.latest(site_id)
    if record is None:
        raise NotFoundError("the site has no schedule", field="site_id")
    return _out(record)


@router.get("/api/v1/schedules/{schedule_id}", response_model=ScheduleOut)
def get_schedule(schedule_id: str, state: State) -> ScheduleOut:
    """One schedule version."""
    return _out(_service(state).store.get(schedule_id))


@router.post("/api/v1/schedules/{schedule_id}/publish", response_model=ScheduleOut)
def publish_schedule(schedule_id: str, state: State) -> ScheduleOut:
    """Publish a stored schedule's setpoints again (operator), e.g. after the broker was down."""
    service = _service(state)
    service.publish(service.store.get(schedule_id))
    return _out(service.store.get(schedule_id))


@router.get("/api/v1/schedules/{schedule_id}/tracking", response_model=TrackingOut)
def schedule_tracking(schedule_id: str, state: State) -> TrackingOut:
    """Planned against realised SOC, grid energy and cost for the steps elapsed so far."""
    return TrackingOut(**_service(state).tracking(schedule_id))
