"""Bodies of the scheduling routes (``/api/v1/sites/{site_id}/schedules``, ``/api/v1/schedules/{id}``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from digitaltwin.optimization.flexibility import MAX_DEMAND_RATE_PER_KW, MAX_PRICE_PER_KWH


class ScheduleIn(BaseModel):
    """What to plan. Prices are in ``currency`` per kWh: one number for every step or one per step."""

    model_config = ConfigDict(extra="forbid")

    load_asset_id: str = Field(description="the site's grid connection meter (or its load without the flexible assets)")
    pv_asset_id: str | None = Field(None, description="PV production forecast, when not already inside the load")
    horizon: str = Field("PT24H", description="ISO 8601 duration, at most PT48H")
    mode: Literal["expected", "robust"] = Field(
        "robust", description="robust: demand peaks planned for the upper load (and lower PV) quantile")
    quantile: float = Field(0.9, gt=0.5, lt=1.0, description="upper load quantile of robust mode")
    algorithm: str = Field("best", description="forecast model; best: the asset's champion")
    import_price: float | list[float] | None = Field(
        None, description=f"energy price per kWh imported (may be negative, at most {MAX_PRICE_PER_KWH:g} either way); "
        "omitted: the site's tariff in force (with its export credit and demand rate)")
    export_price: float | list[float] | None = Field(
        None, description=f"price per kWh exported (may be negative or above the import price, at most {MAX_PRICE_PER_KWH:g} "
        "either way); omitted: the tariff's, or 0")
    demand_charge_per_kw: float | None = Field(
        None, ge=0.0, le=MAX_DEMAND_RATE_PER_KW,
        description="price per kW of the billing period's peak; omitted: the tariff's monthly rate, or 0")
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$", description="of the prices given; omitted: the tariff's, or EUR")
    publish: bool = Field(True, description="publish battery setpoints on MQTT (retained, QoS 1)")
    replan: bool = Field(False, description="solve again as new data and forecasts arrive")


class ScheduleOut(BaseModel):
    """A stored schedule version with its per-step plan."""

    id: str
    site_id: str
    version: int
    created_at: datetime
    created_by: str | None
    start: datetime
    step_seconds: int
    steps: int
    mode: str
    request: dict[str, Any]
    plan: dict[str, Any] = Field(description=(
        "timestamps (UTC interval starts); load_kw, grid_import_kw, grid_export_kw, pv_kw per step; "
        "batteries: {asset_id: {setpoint_kw (+ charging), soc (fraction at the step's end)}}; deferrables: "
        "{asset_id: kW per step}; peaks_kw; cost {energy, export_credit, demand, degradation, total}; currency; "
        "mode and risk; solver {status: optimal or time_limit, gap (currency the plan may cost above the optimum), "
        "binaries, time_limit_s}; inputs (models, SOC source, windows, sunk peak)"))
    published: dict[str, Any]


class TrackingOut(BaseModel):
    """Planned against realised for the elapsed steps of a schedule."""

    schedule_id: str
    version: int
    elapsed_steps: int
    steps: list[dict[str, Any]]
    totals: dict[str, Any]
