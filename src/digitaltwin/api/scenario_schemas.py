"""Bodies of ``POST /api/v1/sites/{site_id}/scenarios`` (what-if replays of past billing periods)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ShiftIn(BaseModel):
    """Move up to ``energy_kwh_per_day`` from one local window to another, every local day."""

    model_config = ConfigDict(extra="forbid")

    energy_kwh_per_day: float
    from_start: str = Field(description="HH:MM local")
    from_end: str = Field(description="HH:MM local, after from_start")
    to_start: str = Field(description="HH:MM local")
    to_end: str = Field(description="HH:MM local, after to_start")


class PVIn(BaseModel):
    """An added fixed PV array; latitude and longitude default to the site's attributes."""

    model_config = ConfigDict(extra="forbid")

    kwp: float = Field(description="DC nameplate, kW")
    tilt_deg: float = 30.0
    azimuth_deg: float = Field(180.0, description="clockwise from north; 180 = south")
    weather_asset_id: str = Field(description="an asset with irradiance (GHI, W/m2) and temperature (degC) series")
    latitude: float | None = None
    longitude: float | None = None
    losses: float = 0.14
    dc_ac_ratio: float = 1.1


class BatteryIn(BaseModel):
    """An added battery and how its daily plans are made."""

    model_config = ConfigDict(extra="forbid")

    capacity_kwh: float
    max_charge_kw: float
    max_discharge_kw: float
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    soc_min: float = 0.0
    soc_max: float = 1.0
    soc_initial: float = 0.5
    soc_final: float | None = None
    degradation_cost_per_kwh: float = 0.0
    perfect_foresight: bool = Field(False, description="plan with the actual load (an upper bound, labelled so)")
    forecast_algorithm: str = Field("seasonal_naive_daily", description="forecaster of the daily plans (lightgbm is slower)")
    mode: Literal["expected", "robust"] = "robust"
    quantile: float = Field(0.9, gt=0.5, lt=1.0)
    guard: bool = Field(True, description="a local controller holds the planned peak and refuses unplanned export")


class ScenarioIn(BaseModel):
    """The billing periods overlapping the local days ``start`` to ``end`` (exclusive), at most 13, and the changes."""

    model_config = ConfigDict(extra="forbid")

    start: date
    end: date
    shift: ShiftIn | None = None
    pv: PVIn | None = None
    battery: BatteryIn | None = None
    tariff_id: str | None = Field(None, description="bill the scenario under another stored tariff")


class AmountsOut(BaseModel):
    """Bill amounts by line-item kind (``other``: minimum charge and taxes), in the stated currency."""

    energy: float
    demand: float
    fixed: float
    export_credit: float
    other: float
    total: float


class SideOut(BaseModel):
    """One side of a comparison: the bill, energy, CO2 and the peak (highest interval mean import, kW)."""

    bill: AmountsOut
    import_kwh: float
    export_kwh: float
    co2_kg: float | None
    avoided_co2_kg: float | None = Field(description=(
        "CO2 of exported energy at the grid's intensity; in a scenario only the export of the site's own generation "
        "(at most the surplus before the battery, per interval), never battery discharge into the grid"))
    peak_kw: float | None
    complete: bool = True


class ComparisonOut(BaseModel):
    """Baseline, scenario and their difference (savings = baseline - scenario)."""

    baseline: SideOut
    scenario: SideOut
    savings: AmountsOut
    co2_avoided_kg: float | None = Field(description="baseline CO2 minus scenario CO2")
    peak_reduction_kw: float | None


class PeriodOut(ComparisonOut):
    """One billing period."""

    start: datetime
    end: datetime
    first_day: date
    last_day: date


class ScenarioOut(BaseModel):
    """The replay's answer: per billing period and in total, with what it assumed."""

    site_id: str
    currency: str
    timezone: str
    baseline_tariff_id: str
    scenario_tariff_id: str
    interval_seconds: int
    perfect_foresight: bool
    co2_source: str | None
    assumptions: list[str]
    battery: dict[str, Any] | None
    pv_kwh: float | None
    periods: list[PeriodOut]
    total: ComparisonOut
