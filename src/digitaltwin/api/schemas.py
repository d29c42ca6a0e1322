"""Request and response bodies (kept apart from tables and domain types)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from digitaltwin.domain.assets import AssetKind
from digitaltwin.domain.errors import ValidationError
from digitaltwin.ingest.nul import nul_field


_SITE_ATTRIBUTES_DOC = (
    "co2_factor_g_per_kwh (constant grid factor, gCO2/kWh), carbon_intensity_asset_id (an asset whose "
    "carbon_intensity series applies; wins over the factor), connection_capacity_kw, latitude, longitude; "
    "other keys are free-form"
)


class RequestModel(BaseModel):
    """Base of request bodies: unknown keys are refused (422 naming the key), and so is a NUL
    character (U+0000) in any key or text at any depth (422 naming its dotted path, e.g.
    ``comment`` or ``attributes.tags.1``). PostgreSQL text cannot hold NUL while SQLite stores
    it, so refusing it here keeps both backends alike and names the request's field, not a column.
    """

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        bad = nul_field(data) if isinstance(data, dict) else None
        if bad is not None:
            # a domain error passes through pydantic unchanged and is answered by the API's handler
            raise ValidationError(f"{bad} contains a NUL character (U+0000), which cannot be stored", field=bad)
        return data


class SiteIn(RequestModel):
    """A site to register; an unknown field is a 422 naming it (as for PATCH), so a misspelt
    ``country`` is not silently dropped."""

    id: str = Field(description="slug, 1-64 of letters, digits, '.', '_', '-'")
    name: str = Field(min_length=1, max_length=200)
    timezone: str = Field(description="IANA timezone of the site's calendar, e.g. Europe/Berlin")
    country: str | None = Field(None, description="ISO 3166-1 alpha-2 country code for public holidays, e.g. DE")
    attributes: dict[str, Any] = Field(default_factory=dict, description=_SITE_ATTRIBUTES_DOC)


class SiteOut(SiteIn):
    pass


class AssetIn(RequestModel):
    """An asset to register; an unknown field is a 422 naming it (as for PATCH)."""

    id: str = Field(description="slug, 1-64 of letters, digits, '.', '_', '-'")
    site_id: str
    name: str = Field(min_length=1, max_length=200)
    kind: AssetKind
    parent_id: str | None = None
    rated_power_kw: float | None = Field(None, ge=0, le=1e7, allow_inf_nan=False, description="nameplate power in kW")
    attributes: dict[str, Any] = Field(default_factory=dict)


class SitePatch(RequestModel):
    """Changes to a site: only the fields sent are changed (its id cannot change)."""

    name: str | None = Field(None, min_length=1, max_length=200)
    timezone: str | None = Field(None, description="IANA timezone; stored readings stay UTC, later days follow the new zone")
    country: str | None = Field(None, description="ISO 3166-1 alpha-2 country code, or null for no public holidays")
    attributes: dict[str, Any] | None = Field(None, description="replaced as a whole; " + _SITE_ATTRIBUTES_DOC)


class AssetPatch(RequestModel):
    """Changes to an asset: only the fields sent are changed; ``null`` clears ``parent_id`` or
    ``rated_power_kw``. Its id and site cannot change; ``attributes`` is replaced as a whole."""

    name: str | None = Field(None, min_length=1, max_length=200)
    kind: AssetKind | None = None
    parent_id: str | None = None
    rated_power_kw: float | None = Field(None, ge=0, le=1e7, allow_inf_nan=False, description="nameplate power in kW")
    attributes: dict[str, Any] | None = None


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
    attributes: dict[str, Any] = Field(default_factory=dict, description="what the series declares (docs/accounting.md)")


class AssetOut(AssetIn):
    series: list[SeriesOut] | None = Field(None, description="the asset's series (detail route only; null in lists)")
    latest: list[LatestReading] | None = Field(
        None, description="latest reading of each series, by timestamp (detail route only; null in lists)"
    )


class ReadingOut(BaseModel):
    ts: datetime = Field(description="UTC; for interval quantities the interval start")
    quantity: str
    unit: str
    value: float


class ReadingsPage(BaseModel):
    asset_id: str
    readings: list[ReadingOut]
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next page; null on the last page")


class DeletedOut(BaseModel):
    asset_id: str
    deleted: int = Field(description="readings deleted")


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
    co2_kg: float | None = Field(None, description="with=co2: energy x grid carbon intensity per interval (kg); null without one")
    avoided_co2_kg: float | None = Field(None, description="with=co2: exported energy x intensity (kg), credited apart")
    co2_uncovered_kwh: float | None = Field(None, description="with=co2: energy in the bucket without a known intensity")
    import_kwh: float | None = Field(None, description="energy drawn from the grid (consumed); null where not metered")
    export_kwh: float | None = Field(None, description="energy delivered to the grid (produced); null where not metered")
    net_kwh: float | None = Field(None, description="import_kwh - export_kwh, each split per interval before netting")
    events: list[str] = Field(
        default_factory=list, description="meter events in the bucket: reset, rollover, replacement, glitch, quarantined"
    )
    cost: float | None = Field(None, description="with=cost: energy charges minus export credits of the bucket (unrounded)")


class MeterEventOut(BaseModel):
    kind: str = Field(description="reset, rollover, replacement, glitch or quarantined")
    start: datetime = Field(description="start of the span it affects, UTC")
    end: datetime = Field(description="end of the span it affects, UTC (equal to start for an instant)")
    reason: str


class EnergyOut(BaseModel):
    asset_id: str
    quantity: str = Field(description="series the energy comes from: energy, energy_total or power")
    timezone: str
    bucket: str
    total_energy_kwh: float
    total_co2_kg: float | None = Field(None, description="with=co2: sum of the buckets' co2_kg")
    total_avoided_co2_kg: float | None = Field(None, description="with=co2: sum of the buckets' avoided_co2_kg")
    co2_source: str | None = Field(None, description="with=co2: asset:<id> of the intensity series, or the site factor; null if none")
    total_import_kwh: float = 0.0
    total_export_kwh: float = 0.0
    buckets: list[EnergyBucketOut]
    events: list[MeterEventOut] = Field(
        default_factory=list, description="why buckets are marked, oldest first (at most the first 1000)"
    )
    events_total: int = Field(0, description="meter events in the range, also those beyond the first 1000 listed")
    currency: str | None = Field(None, description="with=cost: currency of every bucket's cost")
    cost_basis: str | None = Field(None, description="with=cost: what the costs include")


class SeriesPatch(RequestModel):
    """The declared attributes of a series, replaced as a whole (docs/accounting.md)."""

    attributes: dict[str, Any]


class MeterReadingIn(RequestModel):

    ts: str = Field(description="RFC 3339 with offset")
    value: float = Field(allow_inf_nan=False, description="register value")
    unit: str = Field("kWh", description="unit of value: Wh, kWh, MWh")


class MeterReplacementIn(RequestModel):
    """A meter swap: the old meter's final reading and the new meter's first reading."""

    quantity: str = Field("energy_total", description="the counter register: energy_total or energy_export_total")
    old_final: MeterReadingIn
    new_first: MeterReadingIn
    old_serial: str | None = None
    new_serial: str | None = None


class MeterReplacementOut(BaseModel):
    id: int
    asset_id: str
    quantity: str
    old_ts: datetime
    old_value_kwh: float
    new_ts: datetime
    new_value_kwh: float
    old_serial: str | None
    new_serial: str | None
    source: str
    created_by: str | None
    created_at: datetime


class BatchIn(BaseModel):
    timezone: str | None = Field(None, description="IANA zone for timestamps without UTC offset")
    readings: list[Any]


class ConflictOut(BaseModel):
    """A reading whose series and timestamp were already stored with another value (which stays)."""

    quantity: str
    ts: datetime
    stored_value: float
    value: float = Field(description="the item's value, not stored")


class ItemResultOut(BaseModel):
    index: int
    status: str = Field(description="accepted or rejected")
    readings: int = 0
    field: str | None = None
    reason: str | None = None
    conflicts: list[ConflictOut] = Field(default_factory=list, description="readings already stored with another value")


class BatchOut(BaseModel):
    accepted: int
    rejected: int
    stored: int = Field(description="readings newly stored; duplicates of stored readings are not counted")
    duplicates: int = Field(0, description="readings already stored with the same value")
    conflicts: int = Field(0, description="readings already stored with another value (listed on their items)")
    items: list[ItemResultOut]


# Forecast, model, backtest and legacy /predict bodies live in api/forecast_schemas.py.


class DeadLetterOut(BaseModel):
    """A rejected MQTT message or array item (see ``digitaltwin.domain.dead_letters.DeadLetter``)."""

    id: int
    received_at: datetime
    topic: str
    payload: str = Field(description="the first 1 KiB of the payload as UTF-8 (invalid bytes as U+FFFD, NUL as U+2400)")
    payload_bytes: int
    item_index: int | None = Field(description="position of the rejected item in an array payload; null for the whole message")
    field: str | None = Field(description="the offending field, e.g. power_w, ts, payload")
    reason: str
    reason_code: str

