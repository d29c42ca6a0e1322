"""Response bodies of the KPI and metering-tree routes (see :mod:`digitaltwin.accounting`)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class KpisOut(BaseModel):
    """KPIs of one asset or site over ``[start, end)``; null where undefined (no data, no attribute)."""

    subject_id: str = Field(description="the asset or site id")
    start: datetime
    end: datetime
    timezone: str
    assets: list[str] = Field(description="the meters whose energy is counted (for a site: its root meters)")
    energy_kwh: float | None
    peak_demand_kw: float | None = Field(description="highest 15-minute mean power")
    peak_ts: datetime | None = Field(description="start (UTC) of the 15 minutes of peak demand")
    load_factor: float | None = Field(description="mean power over the covered hours / peak demand, 0..1")
    base_load_kw: float | None = Field(
        description="2.5th percentile of the 15-minute mean power in the local night 00:00-06:00 "
        "(near-base load, Price 2010, LBNL-3713E)"
    )
    floor_area_m2: float | None = Field(description="asset attribute floor_area_m2 (for a site: summed over its root meters)")
    energy_per_m2_kwh: float | None
    production_units: float | None = Field(description="increase of the production_total counter(s) over the period")
    energy_per_unit_kwh: float | None
    cost_per_kwh: float | None = Field(description=(
        "bill totals / energy for whole billing periods of the asset's own tariff, else the range's energy "
        "charges / energy (docs/accounting.md); null without a tariff"))
    currency: str | None = Field(None, description="currency of cost_per_kwh")
    co2_kg: float | None = Field(description="location-based: energy x grid carbon intensity per interval; null without an intensity")
    avoided_co2_kg: float | None = Field(description="exported energy x intensity (credited apart, not subtracted)")
    co2_uncovered_kwh: float | None = Field(description="energy without a known intensity (no CO2 counted for it)")
    co2_source: str | None = Field(description="asset:<id> of the intensity series, or the site factor; null if none")
    completeness: float = Field(description="share of the expected hours (up to now) covered by data, 0..1")


class MeterNodeOut(BaseModel):
    asset_id: str
    quantity: str = Field(description="series the energy comes from: energy, energy_total or power")
    parent_meter_id: str | None = Field(description="nearest metered ancestor; null for a root meter")
    energy_kwh: float | None
    children: list[str] = Field(description="metered children (nearest meters below this one)")
    children_kwh: float = Field(description="sum of the children's energy")
    children_without_data: list[str]
    unmetered_kwh: float | None = Field(
        description="energy_kwh - children_kwh, null for a meter without children; negative = meter error"
    )
    meter_error: bool = Field(description="unmetered_kwh below -1 % of energy_kwh (beyond class 1 meter accuracy)")


class MeteringTreeOut(BaseModel):
    site_id: str
    start: datetime
    end: datetime
    roots: list[str] = Field(description="meters without a meter above them")
    total_energy_kwh: float = Field(description="sum of the root meters: no child counted twice")
    meters: list[MeterNodeOut]
