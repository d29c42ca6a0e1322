"""Energy accounting: KPIs of an asset or a site, and a site's metering tree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from digitaltwin.api.accounting_schemas import KpisOut, MeterNodeOut, MeteringTreeOut
from digitaltwin.api.deps import State
from digitaltwin.domain.timestamps import parse_instant
from digitaltwin.services.kpis import Kpis, asset_kpis, metering_tree, site_kpis

router = APIRouter(prefix="/api/v1", tags=["accounting"])

_Start = Annotated[str, Query(description="RFC 3339 with offset, inclusive")]
_End = Annotated[str, Query(description="RFC 3339 with offset, exclusive")]


def _range(start: str, end: str) -> tuple[datetime, datetime]:
    return parse_instant(start, field="start", plausible=False), parse_instant(end, field="end", plausible=False)


def _out(k: Kpis) -> KpisOut:
    return KpisOut(
        subject_id=k.subject, start=k.start, end=k.end, timezone=k.timezone, assets=k.assets,
        energy_kwh=k.load.energy_kwh, peak_demand_kw=k.load.peak_demand_kw, peak_ts=k.load.peak_ts,
        load_factor=k.load.load_factor, base_load_kw=k.load.base_load_kw,
        floor_area_m2=k.floor_area_m2, energy_per_m2_kwh=k.energy_per_m2_kwh,
        production_units=k.production_units, energy_per_unit_kwh=k.energy_per_unit_kwh,
        cost_per_kwh=k.cost_per_kwh, currency=k.currency, co2_kg=k.co2_kg, avoided_co2_kg=k.avoided_co2_kg,
        co2_uncovered_kwh=k.co2_uncovered_kwh, co2_source=k.co2_source, completeness=k.load.completeness,
    )


@router.get("/assets/{asset_id}/kpis", response_model=KpisOut)
def get_asset_kpis(asset_id: str, state: State, start: _Start, end: _End) -> KpisOut:
    """Energy, peak demand and its time, load factor, base load, energy per m2 and per unit produced,
    CO2 and data completeness of one asset over ``[start, end)`` (definitions: docs/accounting.md).

    404 for an unknown asset or one without energy readings; 422 naming ``start``/``end``.
    """
    begin, finish = _range(start, end)
    return _out(asset_kpis(state.repo, asset_id, start=begin, end=finish, max_hold=state.settings.power_max_hold, now=datetime.now(UTC)))


@router.get("/sites/{site_id}/kpis", response_model=KpisOut)
def get_site_kpis(site_id: str, state: State, start: _Start, end: _End) -> KpisOut:
    """The KPIs of ``/assets/{id}/kpis`` for a site: the summed profile of its root meters, so no
    sub-meter is counted twice."""
    begin, finish = _range(start, end)
    return _out(site_kpis(state.repo, site_id, start=begin, end=finish, max_hold=state.settings.power_max_hold, now=datetime.now(UTC)))


@router.get("/sites/{site_id}/metering-tree", response_model=MeteringTreeOut)
def get_metering_tree(site_id: str, state: State, start: _Start, end: _End) -> MeteringTreeOut:
    """Each meter's energy over ``[start, end)``, its metered children and the explicit
    ``unmetered_kwh`` remainder; the site total is the sum of the root meters."""
    begin, finish = _range(start, end)
    result = metering_tree(state.repo, site_id, start=begin, end=finish, max_hold=state.settings.power_max_hold, now=datetime.now(UTC))
    meters = [
        MeterNodeOut(
            asset_id=n.asset_id, quantity=result.quantities[n.asset_id], parent_meter_id=n.parent_meter_id,
            energy_kwh=n.energy_kwh, children=n.children, children_kwh=n.children_kwh,
            children_without_data=n.children_without_data, unmetered_kwh=n.unmetered_kwh, meter_error=n.meter_error,
        )
        for n in result.tree.nodes
    ]
    return MeteringTreeOut(
        site_id=site_id, start=begin, end=finish, roots=result.tree.roots, total_energy_kwh=result.tree.total_kwh, meters=meters
    )
