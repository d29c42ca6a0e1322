"""Request and response bodies (kept apart from tables and domain types)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from digitaltwin.domain.assets import AssetKind


class SiteIn(BaseModel):
    id: str = Field(description="slug, 1-64 of letters, digits, '.', '_', '-'")
    name: str
    timezone: str = Field(description="IANA timezone of the site's calendar, e.g. Europe/Berlin")
    country: str | None = Field(None, description="ISO 3166 country code for public holidays")


class SiteOut(SiteIn):
    pass


class AssetIn(BaseModel):
    id: str = Field(description="slug, 1-64 of letters, digits, '.', '_', '-'")
    site_id: str
    name: str
    kind: AssetKind
    parent_id: str | None = None
    rated_power_kw: float | None = Field(None, ge=0, description="nameplate power in kW")
    attributes: dict[str, Any] = Field(default_factory=dict)


class LatestReading(BaseModel):
    quantity: str
    unit: str
    ts: datetime
    value: float


class SeriesOut(BaseModel):
    quantity: str
    kind: str
    unit: str
    interval_seconds: int | None


class AssetOut(AssetIn):
    series: list[SeriesOut] = Field(default_factory=list)
    latest: list[LatestReading] = Field(default_factory=list, description="latest reading of each series, by timestamp")


class ReadingOut(BaseModel):
    ts: datetime = Field(description="UTC; for interval quantities the interval start")
    quantity: str
    unit: str
    value: float


class ReadingsPage(BaseModel):
    asset_id: str
    readings: list[ReadingOut]
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next page; null on the last page")


class EnergyBucketOut(BaseModel):
    start: datetime = Field(description="bucket start, UTC")
    start_local: datetime = Field(description="bucket start in the site's timezone")
    end: datetime
    energy_kwh: float | None
    mean_power_kw: float | None = Field(description="energy_kwh over the covered hours")
    peak_power_kw: float | None
    sample_count: int
    expected_count: int | None = None
    missing_count: int | None = None


class EnergyOut(BaseModel):
    asset_id: str
    quantity: str = Field(description="series the energy comes from: energy, energy_total or power")
    timezone: str
    bucket: str
    total_energy_kwh: float
    buckets: list[EnergyBucketOut]


class BatchIn(BaseModel):
    timezone: str | None = Field(None, description="IANA zone for timestamps without UTC offset")
    readings: list[Any]


class ItemResultOut(BaseModel):
    index: int
    status: str = Field(description="accepted or rejected")
    readings: int = 0
    field: str | None = None
    reason: str | None = None


class BatchOut(BaseModel):
    accepted: int
    rejected: int
    stored: int = Field(description="readings newly stored; duplicates of stored readings are not counted")
    items: list[ItemResultOut]


class ForecastPoint(BaseModel):
    ts: datetime = Field(description="interval start, UTC")
    value: float | None


class ForecastOut(BaseModel):
    asset_id: str
    algorithm: str
    model_id: str | None
    model_version: str | None
    unit: str = Field(description="unit of value: kWh per interval")
    interval_seconds: int
    issued_at: datetime
    points: list[ForecastPoint]
