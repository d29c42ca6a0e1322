"""JSON batches of telemetry items (``POST /api/v1/readings``), answered item by item."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from digitaltwin.domain.errors import ValidationError
from digitaltwin.domain.readings import Reading, item_interval_seconds, parse_item
from digitaltwin.domain.units import SeriesKind, quantity_spec
from digitaltwin.domain.timestamps import zone
from digitaltwin.storage.repository import Repository


@dataclass(frozen=True, slots=True)
class ItemResult:
    """Outcome of one item: accepted with its reading count, or rejected naming a field."""

    index: int
    accepted: bool
    readings: int = 0
    field: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Per-item results and how many readings were newly stored (duplicates are not).

    ``readings`` are those of the accepted items, committed when this is returned (duplicates of
    stored ones included): what the live twin state and its stream hear of.
    """

    items: list[ItemResult]
    stored: int
    readings: list[Reading] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(1 for i in self.items if i.accepted)

    @property
    def rejected(self) -> int:
        return len(self.items) - self.accepted


def ingest_batch(
    repo: Repository, items: Sequence[object], *, timezone: str | None = None, site_id: str | None = None
) -> BatchResult:
    """Validate every item and store the readings of the valid ones in one transaction.

    Args:
        repo: storage.
        items: telemetry items (see :func:`digitaltwin.domain.readings.parse_item`).
        timezone: IANA zone of offset-less timestamps; without it they are rejected.
        site_id: when given (an API key limited to one site), items of assets of other
            sites are rejected naming ``asset_id``.

    Raises:
        ValidationError: naming ``timezone`` when it is not a known zone.
    """
    tz = zone(timezone) if timezone else None
    parsed: list[tuple[int, list[Reading]]] = []
    results: dict[int, ItemResult] = {}
    intervals: dict[tuple[str, str], int] = {}
    for index, item in enumerate(items):
        try:
            readings = parse_item(item, tz=tz)
            declared = item_interval_seconds(item)
        except ValidationError as exc:
            results[index] = ItemResult(index, False, field=exc.field, reason=exc.message)
            continue
        parsed.append((index, readings))
        if declared is not None:
            for r in readings:
                if quantity_spec(r.quantity).kind is SeriesKind.INTERVAL:
                    intervals[(r.asset_id, r.quantity)] = declared
    known = repo.known_asset_ids(r.asset_id for _, rs in parsed for r in rs)
    allowed = None if site_id is None else {a.id for a in repo.list_assets(site_id=site_id)}
    to_store: list[Reading] = []
    for index, readings in parsed:
        unknown = next((r.asset_id for r in readings if r.asset_id not in known), None)
        if unknown is not None:
            results[index] = ItemResult(index, False, field="asset_id", reason=f"unknown asset {unknown!r}")
            continue
        foreign = None if allowed is None else next((r.asset_id for r in readings if r.asset_id not in allowed), None)
        if foreign is not None:
            results[index] = ItemResult(index, False, field="asset_id", reason=f"asset {foreign!r} is not on site {site_id!r} of this API key")
            continue
        to_store.extend(readings)
        results[index] = ItemResult(index, True, readings=len(readings))
    for (asset_id, quantity), seconds in intervals.items():
        if asset_id in known and (allowed is None or asset_id in allowed):
            repo.ensure_series(asset_id, quantity, interval_seconds=seconds)
    stored = repo.write_readings(to_store)
    return BatchResult([results[i] for i in range(len(items))], stored, to_store)
