"""Meter declarations of an asset's series and meter replacements (``docs/accounting.md``)."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from digitaltwin.api.deps import State
from digitaltwin.api.schemas import MeterReplacementIn, MeterReplacementOut, SeriesOut, SeriesPatch
from digitaltwin.domain.timestamps import parse_instant
from digitaltwin.domain.units import quantity_spec, to_canonical
from digitaltwin.observability.changes import changes, record_change
from digitaltwin.security.audit import AuditEvent
from digitaltwin.security.policy import access
from digitaltwin.security.roles import Role
from digitaltwin.services.meter import ReplacementIn, check_counter_quantity, declare_series, record_replacement
from digitaltwin.storage.meter_events import MeterEventStore, StoredReplacement

router = APIRouter(prefix="/api/v1/assets", tags=["meters"])


@router.patch("/{asset_id}/series/{quantity}", response_model=SeriesOut, openapi_extra=access(Role.ADMIN))
def declare(asset_id: str, quantity: str, body: SeriesPatch, state: State, request: Request) -> SeriesOut:
    """Declare what a series is (admin): sign convention, register direction and modulus, resolution.

    ``attributes`` is replaced as a whole; the series is created if it has no reading yet, so a
    meter can be declared before it reports. 404 for an unknown asset; 422 naming the attribute
    (``sign_convention``, ``direction``, ``counter_modulus_kwh``, ``counter_modulus_unit`` ...)
    or ``quantity``. Written to the audit log (``series_updated``).
    """
    info, before = declare_series(state.repo, asset_id, quantity, body.attributes)
    diff = changes({"attributes": before}, {"attributes": info.attributes})
    if diff:
        record_change(request, AuditEvent.SERIES_UPDATED, subject=asset_id, quantity=quantity, changes=diff)
    return SeriesOut(
        quantity=info.quantity, kind=info.kind.value, unit=info.unit, interval_seconds=info.interval_seconds, attributes=info.attributes
    )


def _out(asset_id: str, quantity: str, r: StoredReplacement) -> MeterReplacementOut:
    return MeterReplacementOut(
        id=r.id, asset_id=asset_id, quantity=quantity, old_ts=r.old_ts, old_value_kwh=r.old_value_kwh, new_ts=r.new_ts,
        new_value_kwh=r.new_value_kwh, old_serial=r.old_serial, new_serial=r.new_serial, source=r.source,
        created_by=r.created_by, created_at=r.created_at,
    )


@router.post(
    "/{asset_id}/meter-replacements", response_model=MeterReplacementOut, status_code=status.HTTP_201_CREATED,
    openapi_extra=access(Role.OPERATOR),
)
def replace_meter(asset_id: str, body: MeterReplacementIn, state: State, request: Request) -> MeterReplacementOut:
    """Record a meter replacement (operator): the old meter's final and the new meter's first reading.

    Energy then counts each meter on its own side: the old meter up to its final reading, the new
    one from its first, and the swap window between them is a gap (no energy, not 0 kWh); its
    buckets are marked ``replacement``. Values are register readings in ``unit`` (default kWh).
    422 naming ``quantity`` (not a counter), ``old_final.ts``/``new_first.ts`` (no offset, or the
    new reading before the old), ``old_final.value``/``new_first.value`` (implausible, or a stored
    reading of the old meter above its final one, of the new meter below its first one) or
    ``*.unit``; 409 naming ``old_final.ts`` for a second replacement at the same instant.
    Written to the audit log (``meter_replaced``).
    """
    check_counter_quantity(body.quantity)
    old_ts = parse_instant(body.old_final.ts, field="old_final.ts")
    new_ts = parse_instant(body.new_first.ts, field="new_first.ts")
    old_kwh = to_canonical(body.quantity, body.old_final.value, body.old_final.unit, field="old_final.unit")
    new_kwh = to_canonical(body.quantity, body.new_first.value, body.new_first.unit, field="new_first.unit")
    principal = getattr(request.state, "principal", None)
    stored = record_replacement(
        state.repo, asset_id,
        ReplacementIn(body.quantity, old_ts, old_kwh, new_ts, new_kwh, body.old_serial, body.new_serial),
        created_by=principal.label if principal is not None else None,
    )
    record_change(
        request, AuditEvent.METER_REPLACED, subject=asset_id, quantity=body.quantity,
        old_ts=old_ts.isoformat(), old_value_kwh=old_kwh, new_ts=new_ts.isoformat(), new_value_kwh=new_kwh,
        old_serial=body.old_serial, new_serial=body.new_serial,
    )
    return _out(asset_id, body.quantity, stored)


@router.get("/{asset_id}/meter-replacements", response_model=list[MeterReplacementOut])
def list_replacements(asset_id: str, state: State, quantity: str = "energy_total") -> list[MeterReplacementOut]:
    """Meter replacements of an asset's counter series, oldest first (empty when none)."""
    state.repo.get_asset(asset_id)
    quantity_spec(quantity, field="quantity")
    info = state.repo.find_series(asset_id, quantity, fresh=True)
    if info is None:
        return []
    return [_out(asset_id, quantity, r) for r in MeterEventStore(state.repo.engine).replacements(info.id)]
