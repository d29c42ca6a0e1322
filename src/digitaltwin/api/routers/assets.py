"""Assets (the twins), their raw readings and their energy per bucket."""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from digitaltwin.accounting.cost import COST_BASIS
from digitaltwin.analytics.buckets import MAX_BUCKETS, Bucket
from digitaltwin.api.deps import AppState, State
from digitaltwin.api.schemas import (
    AssetIn,
    AssetOut,
    AssetPatch,
    DeletedOut,
    EnergyBucketOut,
    EnergyOut,
    LatestReading,
    MeterEventOut,
    ReadingOut,
    ReadingsPage,
    SeriesOut,
)
from digitaltwin.domain.assets import (
    FORECAST_EXOG,
    Asset,
    AssetKind,
    check_asset_accounting_attributes,
    check_attributes_depth,
    check_forecast_exog,
    check_no_nul,
    check_slug,
)
from digitaltwin.domain.errors import ValidationError
from digitaltwin.domain.series_attributes import check_asset_energy_attributes
from digitaltwin.domain.timestamps import parse_instant
from digitaltwin.domain.units import quantity_spec
from digitaltwin.observability.changes import changes, record_change
from digitaltwin.optimization.flexibility import check_flexibility_attributes
from digitaltwin.security.audit import AuditEvent
from digitaltwin.security.policy import access
from digitaltwin.security.roles import Role
from digitaltwin.services.carbon import energy_co2
from digitaltwin.services.billing import BillingService
from digitaltwin.services.energy import ENERGY_QUANTITIES, EnergyReport, energy_report
from digitaltwin.services.energy_cost import bucket_costs
from digitaltwin.services import energy_rollups
from digitaltwin.services.energy_answers import settled_inputs
from digitaltwin.storage.repository import ReadingPage

router = APIRouter(prefix="/api/v1/assets", tags=["assets"])
log = logging.getLogger(__name__)

#: Largest page of raw readings.
MAX_LIMIT = 50_000
#: Meter events explained in one energy response (every bucket still lists the kinds it contains).
MAX_EVENTS = 1000
#: Largest free-form metadata of one asset, as JSON.
MAX_ATTRIBUTES_BYTES = 64 * 1024


def _out(state: State, asset: Asset, *, detail: bool = False) -> AssetOut:
    out = AssetOut(
        id=asset.id,
        site_id=asset.site_id,
        name=asset.name,
        kind=asset.kind,
        parent_id=asset.parent_id,
        rated_power_kw=asset.rated_power_kw,
        attributes=asset.attributes,
    )
    if detail:
        out.series = [
            SeriesOut(quantity=s.quantity, kind=s.kind.value, unit=s.unit, interval_seconds=s.interval_seconds, attributes=s.attributes)
            for s in state.repo.list_series(asset.id)
        ]
        out.latest = [LatestReading(quantity=r.quantity, unit=r.unit, ts=r.ts, value=r.value) for r in state.repo.latest(asset.id)]
    return out


def _check_attributes(state: State, asset_id: str, attributes: dict[str, object]) -> None:
    """Size of ``attributes`` and, when present, its ``forecast_exog`` list.

    An entry may not name the asset's own energy, energy_total or power (the forecast target:
    training would read the answer). Every asset an entry names must exist (the asset itself included): a
    dangling entry would otherwise only show as a 404 at forecast time. It may belong to
    another site (a regional weather station shared by several sites); its readings are
    UTC instants like every other, so no timezone is involved.

    Raises:
        ValidationError: naming ``attributes`` (over :data:`MAX_ATTRIBUTES_BYTES`), ``forecast_exog``, or
            ``attributes.<battery|deferrable|pv|grid_connection>.<key>`` for a flexible asset's settings.
    """
    check_attributes_depth(attributes)
    if len(json.dumps(attributes)) > MAX_ATTRIBUTES_BYTES:
        raise ValidationError(f"attributes larger than {MAX_ATTRIBUTES_BYTES} bytes as JSON", field="attributes")
    check_asset_accounting_attributes(attributes)  # floor_area_m2
    check_asset_energy_attributes(attributes)  # energy_flow, connection_capacity_kw
    check_flexibility_attributes(asset_id, attributes)
    if FORECAST_EXOG not in attributes:
        return
    pairs = check_forecast_exog(attributes[FORECAST_EXOG])
    for source, quantity in pairs:
        if source == asset_id and quantity in ENERGY_QUANTITIES:
            # the target itself as an input: training would read the answer (leakage)
            raise ValidationError(
                f"attributes.{FORECAST_EXOG} lists the asset's own {quantity}, which is what is forecast; "
                "list other series (e.g. a weather asset's temperature)",
                field=FORECAST_EXOG,
            )
    others = sorted({source for source, _ in pairs if source != asset_id})
    known = set(state.repo.known_asset_ids(others)) if others else set()
    for source in others:
        if source not in known:
            raise ValidationError(
                f"attributes.{FORECAST_EXOG} names asset {source!r}, which does not exist", field=FORECAST_EXOG
            )


def _instant(value: str | None, field: str) -> datetime | None:
    # Query bounds are not readings: "this month" may end in the future.
    return None if value is None else parse_instant(value, field=field, plausible=False)


@router.get("", response_model=list[AssetOut])
def list_assets(state: State, site_id: str | None = None, kind: AssetKind | None = None) -> list[AssetOut]:
    """All assets, optionally of one site or kind (without series and latest readings: see the detail route)."""
    return [_out(state, a) for a in state.repo.list_assets(site_id=site_id, kind=kind)]


@router.post("", response_model=AssetOut, status_code=status.HTTP_201_CREATED)
def create_asset(body: AssetIn, state: State) -> AssetOut:
    """Register an asset; 404 naming ``site_id``/``parent_id`` if they do not exist, 409 if the id exists,
    422 naming ``forecast_exog`` for a malformed list or one naming an unknown asset."""
    check_slug(body.id, field="id")
    asset = Asset(body.id, body.site_id, body.name, body.kind, body.parent_id, body.rated_power_kw, body.attributes)
    check_no_nul(asset)  # before the lookups, so a NUL is a 422 on SQLite as on PostgreSQL
    state.repo.get_site(body.site_id)
    _check_attributes(state, body.id, body.attributes)
    return _out(state, state.repo.create_asset(asset))


@router.patch("/{asset_id}", response_model=AssetOut)
def update_asset(asset_id: str, body: AssetPatch, state: State, request: Request) -> AssetOut:
    """Change an asset's name, kind, parent, rated power or attributes (admin).

    Only the fields sent change; ``null`` clears ``parent_id`` or ``rated_power_kw``.
    404 if unknown (or naming ``parent_id``); 422 naming ``parent_id`` for a parent on
    another site or one that would make the asset its own ancestor, or ``forecast_exog``
    as on creation. The change is written to the audit log (``asset_updated``).
    """
    asset = state.repo.get_asset(asset_id)
    sent = body.model_fields_set
    for name in ("name", "kind", "attributes"):
        if name in sent and getattr(body, name) is None:
            raise ValidationError(f"{name} cannot be null", field=name)
    attributes = body.attributes if "attributes" in sent and body.attributes is not None else asset.attributes
    if "attributes" in sent:
        _check_attributes(state, asset.id, attributes)
    changed = Asset(
        asset.id,
        asset.site_id,
        body.name if body.name is not None else asset.name,
        body.kind if body.kind is not None else asset.kind,
        body.parent_id if "parent_id" in sent else asset.parent_id,
        body.rated_power_kw if "rated_power_kw" in sent else asset.rated_power_kw,
        attributes,
    )
    updated = state.repo.update_asset(changed)
    diff = changes(_fields(asset), _fields(updated))
    if diff:
        record_change(request, AuditEvent.ASSET_UPDATED, subject=asset_id, changes=diff)
    return _out(state, updated)


def _fields(asset: Asset) -> dict[str, object]:
    return {
        "name": asset.name, "kind": asset.kind.value, "parent_id": asset.parent_id,
        "rated_power_kw": asset.rated_power_kw, "attributes": asset.attributes,
    }


@router.get("/{asset_id}", response_model=AssetOut)
def get_asset(asset_id: str, state: State) -> AssetOut:
    """One asset with its series and the latest reading of each (the twin's current state)."""
    return _out(state, state.repo.get_asset(asset_id), detail=True)


@router.get("/{asset_id}/readings", response_model=ReadingsPage)
async def get_readings(
    asset_id: str,
    state: State,
    start: Annotated[str | None, Query(description="RFC 3339 with offset, inclusive")] = None,
    end: Annotated[str | None, Query(description="RFC 3339 with offset, exclusive")] = None,
    quantity: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 1000,
    cursor: str | None = None,
) -> Response:
    """Raw readings, oldest first, in canonical units; follow ``next_cursor`` for more.

    422 naming the parameter for a bad one, then 404 naming ``asset_id`` for an unknown asset.
    """
    if quantity is not None:
        quantity_spec(quantity)
    start_ts, end_ts = _instant(start, "start"), _instant(end, "end")
    if start_ts is not None and end_ts is not None and end_ts <= start_ts:
        raise ValidationError("end must be after start", field="end")
    args = {"start": start_ts, "end": end_ts, "quantity": quantity, "limit": limit, "cursor": cursor, "asset_must_exist": True}
    if state.async_reads is not None:  # PostgreSQL: on the event loop (storage/async_reads.py)
        page = await state.async_reads.read_page(asset_id, **args)
    else:
        page = await run_in_threadpool(partial(state.repo.read_page, asset_id, **args))
    return Response(readings_body(asset_id, page), media_type="application/json")


def readings_out(asset_id: str, page: ReadingPage) -> ReadingsPage:
    """A page of readings as its pydantic model."""
    rows = [ReadingOut(ts=r.ts, quantity=r.quantity, unit=r.unit, value=r.value) for r in page.rows]
    return ReadingsPage(asset_id=asset_id, readings=rows, next_cursor=page.next_cursor)


def readings_body(asset_id: str, page: ReadingPage) -> bytes:
    """:func:`readings_out`'s JSON text written by orjson from plain dicts (the same keys in the same
    order, RFC 3339 stamps with ``Z``, shortest round-trip floats; checked against
    ``readings_out(...).model_dump_json()`` by ``tests/api/test_readings_body.py``): a page of
    100 readings without 100 validated models."""
    rows = [{"ts": ts, "quantity": quantity, "unit": unit, "value": value} for ts, quantity, unit, value in page.rows]
    return orjson.dumps({"asset_id": asset_id, "readings": rows, "next_cursor": page.next_cursor}, option=orjson.OPT_UTC_Z)


@router.delete("/{asset_id}/readings", response_model=DeletedOut, openapi_extra=access(Role.ADMIN))
def delete_readings(
    asset_id: str,
    state: State,
    request: Request,
    start: Annotated[str, Query(description="RFC 3339 with offset, inclusive")],
    end: Annotated[str, Query(description="RFC 3339 with offset, exclusive")],
    quantity: str | None = None,
) -> DeletedOut:
    """Delete raw readings in ``[start, end)`` (admin), e.g. to replace a bad import.

    Readings are first-write-wins, so a correction is: delete the range, then send
    the corrected readings again. Written to the audit log (``readings_deleted``).
    """
    state.repo.get_asset(asset_id)
    if quantity is not None:
        quantity_spec(quantity)
    start_ts, end_ts = _instant(start, "start"), _instant(end, "end")
    assert start_ts is not None and end_ts is not None
    if end_ts <= start_ts:
        raise ValidationError("end must be after start", field="end")
    deleted = state.repo.delete_readings(asset_id, start=start_ts, end=end_ts, quantity=quantity)
    log.info("deleted %d readings of %s in [%s, %s)", deleted, asset_id, start_ts.isoformat(), end_ts.isoformat())
    record_change(
        request, AuditEvent.READINGS_DELETED, subject=asset_id,
        start=start_ts.isoformat(), end=end_ts.isoformat(), quantity=quantity, deleted=deleted,
    )
    return DeletedOut(asset_id=asset_id, deleted=deleted)


_QUARTER_HOUR = timedelta(minutes=15)
#: Reads of an energy answer with extras, at most, while writes keep changing its inputs.
_CONSISTENT_TRIES = 3


@router.get("/{asset_id}/energy", response_model=EnergyOut)
async def get_energy(
    asset_id: str,
    state: State,
    start: Annotated[str, Query(description="RFC 3339 with offset")],
    end: Annotated[str, Query(description="RFC 3339 with offset, exclusive")],
    bucket: Bucket = Bucket.HOUR,
    quantity: Annotated[str | None, Query(description="energy, energy_total or power; default: the first present")] = None,
    with_: Annotated[str | None, Query(alias="with", description=(
        "comma-separated extras: co2 (CO2 per bucket at the site's carbon intensity), "
        "cost (each bucket's energy cost under the tariff in force)"))] = None,
) -> EnergyOut | Response:
    """Energy (kWh), mean and peak power (kW) and sample counts per bucket of the site's local calendar.

    Days, weeks (Monday first) and months start at local midnight, so DST days
    have 23 or 25 hours. The first and last buckets are clipped to ``start`` and
    ``end`` (each bucket's ``start``/``end`` give the span it covers), so the
    total is that of the requested range. Buckets without data have null values.
    ``with=co2`` adds location-based CO2 per bucket, ``with=cost`` each bucket's energy cost under
    the tariff in force (``with=co2,cost`` both; docs/accounting.md); 422 naming ``with`` for anything else.

    Each bucket also gives ``import_kwh``, ``export_kwh`` and ``net_kwh`` (split per interval
    before netting) and the meter ``events`` it contains (reset, rollover, replacement, glitch,
    quarantined), explained in the response's ``events`` (docs/accounting.md).
    """
    extras = {part.strip() for part in with_.split(",")} if with_ else set()
    if extras - {"co2", "cost"}:
        raise ValidationError("with must be co2, cost or co2,cost", field="with")
    start_ts, end_ts = _instant(start, "start"), _instant(end, "end")
    assert start_ts is not None and end_ts is not None
    if end_ts - start_ts > timedelta(days=3660):
        raise ValidationError("range longer than 10 years", field="end")
    if extras and (end_ts - start_ts) / _QUARTER_HOUR > MAX_BUCKETS:
        # CO2 and cost follow the intensity and the prices per 15 minutes, whatever the bucket
        days = MAX_BUCKETS * _QUARTER_HOUR / timedelta(days=1)
        raise ValidationError(f"with={with_} is computed per 15 minutes: the range may be at most {days:.0f} days", field="end")
    now = datetime.now(UTC)
    answers, reads = state.energy_answers, state.async_reads
    if not extras and answers is not None and reads is not None:
        # A kept answer is looked up on the event loop (one statement, storage/async_reads.py);
        # the key is sound even with change marks still pending, since a body is only ever kept
        # under the inputs read before it was computed. Anything else goes to the thread pool.
        rows = await reads.energy_fingerprint(asset_id)
        if rows:
            key = answers.key(rows, asset_id, start=start_ts, end=end_ts, bucket=bucket, quantity=quantity,
                              max_hold=state.settings.power_max_hold, rollups=energy_rollups.settings.enabled, now=now)
            kept = answers.kept(key)
            if kept is not None:
                return Response(kept, media_type="application/json")
    return await run_in_threadpool(_energy, state, asset_id, start_ts, end_ts, bucket, quantity, extras, now)


def _energy(
    state: AppState, asset_id: str, start_ts: datetime, end_ts: datetime, bucket: Bucket, quantity: str | None,
    extras: set[str], now: datetime,
) -> EnergyOut | Response:
    """:func:`get_energy`'s answer computed, or kept (blocking: run in the thread pool)."""

    def report_now() -> EnergyReport:
        return energy_report(
            state.repo, asset_id, start=start_ts, end=end_ts, bucket=bucket,
            max_hold=state.settings.power_max_hold, quantity=quantity, now=now,
        )

    if not extras:
        # the dashboard's year of quarter hours is 35,040 buckets: orjson writes them in a third of the time
        def body() -> bytes:
            return energy_body(asset_id, bucket, report_now())

        if state.energy_answers is None:
            return Response(body(), media_type="application/json")
        kept = state.energy_answers.body(
            state.repo, asset_id, start=start_ts, end=end_ts, bucket=bucket, quantity=quantity,
            max_hold=state.settings.power_max_hold, rollups=energy_rollups.settings.enabled, now=now, compute=body,
        )
        return Response(kept, media_type="application/json")
    # Energy, CO2 and cost are read by separate statements: when the asset's stored inputs changed
    # meanwhile (a write landed in between), read all of them again, so that one answer never mixes
    # two states of the data; under writes that never pause the last try is answered.
    inputs = partial(settled_inputs, state.repo, asset_id, max_hold=state.settings.power_max_hold, rollups=energy_rollups.settings.enabled)
    before = inputs()
    for _ in range(_CONSISTENT_TRIES):
        report = report_now()
        out = energy_out(asset_id, bucket, report)
        if "co2" in extras:
            _add_co2(state, out, start=start_ts, end=end_ts, bucket=bucket, quantity=quantity)
        if "cost" in extras:
            _add_cost(state, out, [r.start for r in report.rows] + [report.rows[-1].end])
        after = inputs()
        if after == before:
            break
        before = after
    return out


def energy_out(asset_id: str, bucket: Bucket, report: EnergyReport) -> EnergyOut:
    """The energy answer as its pydantic model (extras such as CO2 and cost are filled in on it)."""
    tz = ZoneInfo(report.timezone)
    buckets = [
        EnergyBucketOut(
            start=r.start, start_local=r.start.astimezone(tz), end=r.end, energy_kwh=r.energy_kwh,
            mean_power_kw=r.mean_power_kw, peak_power_kw=r.peak_power_kw, sample_count=r.sample_count,
            expected_count=r.expected_count, missing_count=r.missing_count,
            import_kwh=r.import_kwh, export_kwh=r.export_kwh, net_kwh=r.net_kwh, events=list(r.events),
        )
        for r in report.rows
    ]
    events = [
        MeterEventOut(kind=e.kind.value, start=datetime.fromtimestamp(e.start_s, UTC), end=datetime.fromtimestamp(e.end_s, UTC), reason=e.reason)
        for e in report.events[:MAX_EVENTS]
    ]
    return EnergyOut(
        asset_id=asset_id, quantity=report.quantity, timezone=report.timezone, bucket=bucket.value,
        total_energy_kwh=report.total_energy_kwh, total_import_kwh=sum(r.import_kwh or 0.0 for r in report.rows),
        total_export_kwh=sum(r.export_kwh or 0.0 for r in report.rows), buckets=buckets, events=events,
        events_total=len(report.events),
    )


def energy_body(asset_id: str, bucket: Bucket, report: EnergyReport) -> bytes:
    """:func:`energy_out`'s JSON text, written by orjson from plain dicts (the same keys in the same
    order, RFC 3339 stamps with ``Z`` for UTC, shortest round-trip floats; checked against
    ``energy_out(...).model_dump_json()`` by ``tests/api/test_energy_body.py``)."""
    tz = ZoneInfo(report.timezone)
    buckets = [
        {
            "start": r.start, "start_local": r.start.astimezone(tz), "end": r.end, "energy_kwh": r.energy_kwh,
            "mean_power_kw": r.mean_power_kw, "peak_power_kw": r.peak_power_kw, "sample_count": r.sample_count,
            "expected_count": r.expected_count, "missing_count": r.missing_count, "co2_kg": None,
            "avoided_co2_kg": None, "co2_uncovered_kwh": None, "import_kwh": r.import_kwh, "export_kwh": r.export_kwh,
            "net_kwh": r.net_kwh, "events": list(r.events), "cost": None,
        }
        for r in report.rows
    ]
    events = [
        {"kind": e.kind.value, "start": datetime.fromtimestamp(e.start_s, UTC), "end": datetime.fromtimestamp(e.end_s, UTC),
         "reason": e.reason}
        for e in report.events[:MAX_EVENTS]
    ]
    body = {
        "asset_id": asset_id, "quantity": report.quantity, "timezone": report.timezone, "bucket": bucket.value,
        "total_energy_kwh": report.total_energy_kwh, "total_co2_kg": None, "total_avoided_co2_kg": None,
        "co2_source": None, "total_import_kwh": sum(r.import_kwh or 0.0 for r in report.rows),
        "total_export_kwh": sum(r.export_kwh or 0.0 for r in report.rows), "buckets": buckets, "events": events,
        "events_total": len(report.events), "currency": None, "cost_basis": None,
    }
    return orjson.dumps(body, option=orjson.OPT_UTC_Z)


def _add_co2(state: State, out: EnergyOut, *, start: datetime, end: datetime, bucket: Bucket, quantity: str | None) -> None:
    """Fill the CO2 fields of ``out`` (same buckets, see :func:`digitaltwin.services.carbon.energy_co2`)."""
    result = energy_co2(
        state.repo, out.asset_id, start=start, end=end, bucket=bucket,
        max_hold=state.settings.power_max_hold, quantity=quantity, now=datetime.now(UTC),
    )
    if result.emissions is None:
        return
    out.co2_source = result.source
    em = result.emissions
    for row, co2, avoided, uncovered in zip(
        out.buckets, em.co2_kg.tolist(), em.avoided_co2_kg.tolist(), em.uncovered_kwh.tolist(), strict=True
    ):
        row.co2_kg = None if math.isnan(co2) else co2
        row.avoided_co2_kg = None if math.isnan(avoided) else avoided
        row.co2_uncovered_kwh = uncovered
    out.total_co2_kg = float(sum(r.co2_kg for r in out.buckets if r.co2_kg is not None))
    out.total_avoided_co2_kg = float(sum(r.avoided_co2_kg for r in out.buckets if r.avoided_co2_kg is not None))


def _add_cost(state: State, out: EnergyOut, edges: list[datetime]) -> None:
    """Fill each bucket's ``cost`` under the tariff in force (see :func:`digitaltwin.services.energy_cost.bucket_costs`)."""
    service = BillingService(state.repo, max_hold=state.settings.power_max_hold)
    costs = bucket_costs(service, out.asset_id, edges, now=datetime.now(UTC))
    out.currency, out.cost_basis = costs.currency, COST_BASIS
    for row, cost in zip(out.buckets, costs.costs, strict=True):
        row.cost = cost
