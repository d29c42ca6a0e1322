"""Request and response bodies of tariffs, tariff assignments and bills."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field

from digitaltwin.api.schemas import RequestModel

ROUNDING = (
    "line items and totals are rounded to the currency's minor unit (cents; whole units for KRW, JPY), "
    "halves away from zero, only at the end; the total is the rounded sum of the unrounded items"
)


class TariffOut(BaseModel):
    id: str
    name: str
    format: str = Field(description="urdb or native")
    currency: str
    informational_fields: list[str] = Field(
        default_factory=list, description="URDB fields kept with the source but not billed (descriptions, applicability)"
    )
    source: dict[str, Any] | None = Field(None, description="the record as imported (detail route only)")


class AssignmentIn(RequestModel):
    """Which tariff bills the site or asset, between local calendar dates."""

    tariff_id: str
    valid_from: date = Field(description="first local date billed under this tariff")
    valid_to: date | None = Field(None, description="first local date no longer billed under it (exclusive); null: open")
    bill_day: int | None = Field(None, ge=1, le=28, description="day of month a billing period starts; null: calendar months")


class AssignmentOut(AssignmentIn):
    id: int
    site_id: str | None = None
    asset_id: str | None = None


class LineItemOut(BaseModel):
    kind: str = Field(description="fixed, energy, export_credit, demand, minimum or tax")
    description: str
    amount: float = Field(description="in the bill's currency, rounded; negative for credits")
    quantity: float | None = None
    unit: str | None = Field(None, description="unit of quantity: kWh, kW, day, month, or the currency for taxes")
    rate: float | None = Field(None, description="per unit of quantity (percent for taxes)")
    period: int | None = Field(None, description="0-based time-of-use period of the tariff")
    tier: int | None = Field(None, description="0-based tier")
    peak_kw: float | None = Field(None, description="demand lines: the peak's value")
    peak_at: datetime | None = Field(None, description="demand lines: start of the peak's interval (UTC)")


class MeterCompletenessOut(BaseModel):
    asset_id: str
    expected_intervals: int = Field(description="intervals of the billing period on the bill's grid")
    present_intervals: int = Field(description="intervals in which this meter has data")


class CompletenessOut(BaseModel):
    expected_intervals: int = Field(description="intervals of the billing period, summed over the billed meters")
    present_intervals: int = Field(description="intervals with data, summed over the billed meters")
    fraction: float = Field(description="present_intervals / expected_intervals")
    complete: bool
    meters: list[MeterCompletenessOut] = Field(
        default_factory=list, description="per billed meter; a meter without data in an interval counts 0 kWh there")


class BillOut(BaseModel):
    tariff_id: str
    tariff_name: str
    currency: str
    timezone: str
    start: datetime = Field(description="period start (UTC), local midnight of first_day")
    end: datetime = Field(description="period end (UTC), exclusive")
    first_day: date
    last_day: date
    line_items: list[LineItemOut]
    subtotal: float = Field(description="before taxes")
    total: float
    import_kwh: float
    export_kwh: float
    peak_kw: float | None
    peak_at: datetime | None
    completeness: CompletenessOut
    notes: list[str]


class BillsOut(BaseModel):
    site_id: str | None = None
    asset_id: str | None = None
    rounding: str = ROUNDING
    bills: list[BillOut]
