"""Tariffs (URDB or native form), their assignment to sites and assets, and bills.

Creating tariffs and assignments is for admins; reading tariffs and bills for viewers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, status

from digitaltwin.accounting.bill import round_money
from digitaltwin.api.deps import State
from digitaltwin.api.tariff_schemas import (
    AssignmentIn,
    AssignmentOut,
    BillOut,
    BillsOut,
    CompletenessOut,
    LineItemOut,
    MeterCompletenessOut,
    TariffOut,
)
from digitaltwin.domain.timestamps import parse_instant
from digitaltwin.security.policy import access
from digitaltwin.security.roles import Role
from digitaltwin.services.billing import BillingService, ImportedTariff, SiteBill
from digitaltwin.storage.tariffs import Assignment

router = APIRouter(prefix="/api/v1", tags=["tariffs"])


def _service(state: State) -> BillingService:
    return BillingService(state.repo, max_hold=state.settings.power_max_hold)


def _tariff_out(imported: ImportedTariff, *, detail: bool = False) -> TariffOut:
    s = imported.stored
    return TariffOut(id=s.id, name=s.name, format=s.format, currency=s.currency,
                     informational_fields=imported.informational_fields, source=s.source if detail else None)


def _assignment_out(a: Assignment) -> AssignmentOut:
    return AssignmentOut(id=a.id, tariff_id=a.tariff_id, site_id=a.site_id, asset_id=a.asset_id,
                         valid_from=a.valid_from, valid_to=a.valid_to, bill_day=a.bill_day)


def _bill_out(sb: SiteBill) -> BillOut:
    b, cur = sb.bill, sb.bill.currency
    items = [
        LineItemOut(kind=i.kind, description=i.description, amount=round_money(i.amount, cur), quantity=i.quantity,
                    unit=i.unit, rate=i.rate, period=i.period, tier=i.tier, peak_kw=i.peak_kw, peak_at=i.peak_at)
        for i in b.line_items
    ]
    return BillOut(
        tariff_id=sb.tariff_id, tariff_name=b.tariff_name, currency=cur, timezone=sb.timezone,
        start=b.period.start, end=b.period.end, first_day=b.period.first_day, last_day=b.period.last_day,
        line_items=items, subtotal=round_money(b.subtotal, cur), total=round_money(b.total, cur),
        import_kwh=b.import_kwh, export_kwh=b.export_kwh, peak_kw=b.peak_kw, peak_at=b.peak_at,
        completeness=CompletenessOut(
            expected_intervals=b.expected_intervals, present_intervals=b.present_intervals, fraction=b.completeness,
            complete=b.complete,
            meters=[MeterCompletenessOut(asset_id=m.asset_id, expected_intervals=m.expected_intervals,
                                         present_intervals=m.present_intervals) for m in b.meters],
        ),
        notes=b.notes,
    )


@router.post("/tariffs", response_model=TariffOut, status_code=status.HTTP_201_CREATED, openapi_extra=access(Role.ADMIN))
def create_tariff(
    state: State,
    record: Annotated[dict[str, Any], Body(description="a URDB record as the URDB API returns it (or its {items: [record]} answer), "
                                                       "or the native form with \"format\": \"native\"")],
    id: Annotated[str | None, Query(description="tariff id; default: the URDB label or the native form's id")] = None,  # noqa: A002
) -> TariffOut:
    """Import a tariff (admin). 422 naming the offending field: a schedule entry naming a period the rate
    structure lacks, a URDB field the engine does not bill (refused, never dropped), a malformed tier."""
    return _tariff_out(_service(state).import_tariff(record, tariff_id=id))


@router.get("/tariffs", response_model=list[TariffOut])
def list_tariffs(state: State) -> list[TariffOut]:
    """All tariffs (without their source)."""
    service = _service(state)
    return [_tariff_out(service.tariff(t.id)) for t in service.store.list()]


@router.get("/tariffs/{tariff_id}", response_model=TariffOut)
def get_tariff(tariff_id: str, state: State) -> TariffOut:
    """One tariff with the record as imported."""
    return _tariff_out(_service(state).tariff(tariff_id), detail=True)


@router.post("/sites/{site_id}/tariff-assignments", response_model=AssignmentOut, status_code=201, openapi_extra=access(Role.ADMIN))
def assign_site(site_id: str, body: AssignmentIn, state: State) -> AssignmentOut:
    """Bill the site under a tariff from ``valid_from`` (admin); 409 naming ``valid_from`` on overlap."""
    return _assignment_out(_service(state).assign(body.tariff_id, site_id=site_id, valid_from=body.valid_from,
                                                  valid_to=body.valid_to, bill_day=body.bill_day))


@router.get("/sites/{site_id}/tariff-assignments", response_model=list[AssignmentOut])
def site_assignments(site_id: str, state: State) -> list[AssignmentOut]:
    state.repo.get_site(site_id)
    return [_assignment_out(a) for a in _service(state).store.assignments(site_id=site_id)]


@router.post("/assets/{asset_id}/tariff-assignments", response_model=AssignmentOut, status_code=201, openapi_extra=access(Role.ADMIN))
def assign_asset(asset_id: str, body: AssignmentIn, state: State) -> AssignmentOut:
    """Bill the asset (a sub-meter) under a tariff from ``valid_from`` (admin)."""
    return _assignment_out(_service(state).assign(body.tariff_id, asset_id=asset_id, valid_from=body.valid_from,
                                                  valid_to=body.valid_to, bill_day=body.bill_day))


@router.get("/assets/{asset_id}/tariff-assignments", response_model=list[AssignmentOut])
def asset_assignments(asset_id: str, state: State) -> list[AssignmentOut]:
    state.repo.get_asset(asset_id)
    return [_assignment_out(a) for a in _service(state).store.assignments(asset_id=asset_id)]


def _range(start: str, end: str) -> tuple[datetime, datetime]:
    return parse_instant(start, field="start", plausible=False), parse_instant(end, field="end", plausible=False)


Start = Annotated[str, Query(description="RFC 3339 with offset; the billing period holding it is the first")]
End = Annotated[str, Query(description="RFC 3339 with offset, exclusive; periods starting before it are billed")]


@router.get("/sites/{site_id}/bill", response_model=BillsOut)
def site_bill(site_id: str, state: State, start: Start, end: End) -> BillsOut:
    """One bill per billing period (calendar month or from the bill day) in the site's local calendar, with
    line items, currency and completeness; 404 naming ``tariff`` without an assignment."""
    s, e = _range(start, end)
    bills = _service(state).bills(site_id=site_id, start=s, end=e, now=datetime.now(UTC))
    return BillsOut(site_id=site_id, bills=[_bill_out(b) for b in bills])


@router.get("/assets/{asset_id}/bill", response_model=BillsOut)
def asset_bill(asset_id: str, state: State, start: Start, end: End) -> BillsOut:
    """As the site bill, for an asset with its own tariff assignment (a sub-meter)."""
    s, e = _range(start, end)
    bills = _service(state).bills(asset_id=asset_id, start=s, end=e, now=datetime.now(UTC))
    return BillsOut(asset_id=asset_id, bills=[_bill_out(b) for b in bills])
