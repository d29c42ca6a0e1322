"""JSON batches of telemetry items (``POST /api/v1/readings``), answered item by item."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from digitaltwin.domain.errors import ValidationError
from digitaltwin.domain.readings import Reading, item_interval_seconds, item_meter_serial, parse_item
from digitaltwin.domain.timestamps import zone
from digitaltwin.domain.units import SeriesKind, quantity_spec
from digitaltwin.ingest.nul import nul_field, nul_reason
from digitaltwin.services.meter import SerialSighting, apply_serials
from digitaltwin.storage.repository import SPACING_READINGS, Repository


@dataclass(frozen=True, slots=True)
class ReadingConflict:
    """A reading of an item whose series and timestamp were already stored with another value
    (``stored_value``, which stays: first write wins); ``value`` is the item's."""

    quantity: str
    ts: datetime
    stored_value: float
    value: float


@dataclass(frozen=True, slots=True)
class ItemResult:
    """Outcome of one item: accepted with its reading count, or rejected naming a field.

    An accepted item's ``conflicts`` are its readings whose series and timestamp were already
    stored with another value (reported with both values, not stored)."""

    index: int
    accepted: bool
    readings: int = 0
    field: str | None = None
    reason: str | None = None
    conflicts: tuple[ReadingConflict, ...] = ()


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Per-item results, how many readings were newly stored and how many were ``duplicates``
    (already stored with the same value); conflicts are listed on their items.

    ``readings`` are those of the accepted items, committed when this is returned (duplicates of
    stored ones included): what the live twin state and its stream hear of.
    """

    items: list[ItemResult]
    stored: int
    readings: list[Reading] = field(default_factory=list)
    duplicates: int = 0

    @property
    def conflicts(self) -> int:
        """Readings of accepted items already stored with another value."""
        return sum(len(i.conflicts) for i in self.items)

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
            sites are rejected naming ``asset_id``, with the same reason as assets that do not
            exist (the key learns nothing about other sites).

    Items are rejected (naming the field, the good items still stored) when a key or string
    holds a NUL character (:mod:`digitaltwin.ingest.nul`), and when they declare an
    ``interval`` other than the one their series already has, or than an earlier item of the
    batch declared for it, or than the spacing of a series' stored readings when it has no
    recorded interval, or an ``interval`` on an item without interval energy (see
    :func:`check_declared_interval`). A ``meter_serial`` on counter items records a meter
    replacement when it changes (:func:`~digitaltwin.services.meter.apply_serials`).

    Raises:
        ValidationError: naming ``timezone`` when it is not a known zone.
    """
    tz = zone(timezone) if timezone else None
    parsed: list[tuple[int, list[Reading], int | None]] = []
    serials: dict[int, str] = {}
    results: dict[int, ItemResult] = {}
    for index, item in enumerate(items):
        bad = nul_field(item)
        if bad is not None:
            results[index] = ItemResult(index, False, field=bad, reason=nul_reason(bad))
            continue
        try:
            readings = parse_item(item, tz=tz)
            declared = item_interval_seconds(item)
            serial = item_meter_serial(item)
        except ValidationError as exc:
            results[index] = ItemResult(index, False, field=exc.field, reason=exc.message)
            continue
        parsed.append((index, readings, declared))
        if serial is not None:
            serials[index] = serial
    known = repo.known_asset_ids(r.asset_id for _, rs, _ in parsed for r in rs)
    allowed = None if site_id is None else {a.id for a in repo.list_assets(site_id=site_id)}
    to_store: list[Reading] = []
    sightings: list[SerialSighting] = []
    owners: list[int] = []  # item index of each reading of to_store
    intervals: dict[tuple[str, str], int] = {}
    for index, readings, declared in parsed:
        if allowed is not None:
            # One answer for an asset that does not exist and one of another site, so that a
            # site-limited key cannot learn which asset ids other sites have.
            foreign = next((r.asset_id for r in readings if r.asset_id not in allowed), None)
            if foreign is not None:
                results[index] = ItemResult(index, False, field="asset_id", reason=f"unknown asset {foreign!r} on this API key's site")
                continue
        unknown = next((r.asset_id for r in readings if r.asset_id not in known), None)
        if unknown is not None:
            results[index] = ItemResult(index, False, field="asset_id", reason=f"unknown asset {unknown!r}")
            continue
        if declared is not None:
            try:
                wanted = check_declared_interval(repo, readings, declared, intervals)
            except ValidationError as exc:
                results[index] = ItemResult(index, False, field=exc.field, reason=exc.message)
                continue
            intervals.update(wanted)
        to_store.extend(readings)
        owners.extend([index] * len(readings))
        results[index] = ItemResult(index, True, readings=len(readings))
        if index in serials:
            sightings.extend(SerialSighting(r.asset_id, r.quantity, r.ts, r.value, serials[index]) for r in readings)
    for (asset_id, quantity), seconds in intervals.items():
        repo.ensure_series(asset_id, quantity, interval_seconds=seconds)
    outcome = repo.store_readings(to_store)
    if sightings:
        apply_serials(repo, sightings)
    conflicts: dict[int, list[ReadingConflict]] = {}
    for c in outcome.conflicts:
        r = to_store[c.position]
        conflicts.setdefault(owners[c.position], []).append(ReadingConflict(r.quantity, r.ts, c.stored_value, c.new_value))
    for index, found in conflicts.items():
        results[index] = replace(results[index], conflicts=tuple(found))
    return BatchResult([results[i] for i in range(len(items))], outcome.stored, to_store, outcome.duplicates)


def check_declared_interval(
    repo: Repository, readings: Sequence[Reading], declared: int, pending: Mapping[tuple[str, str], int]
) -> dict[tuple[str, str], int]:
    """The series intervals an item declares, checked against what its series already have.

    Args:
        repo: storage (the series' recorded ``interval_seconds`` and the spacing of its readings).
        readings: the item's readings; only those of interval quantities (``energy``) take the interval.
        declared: the item's ``interval`` in seconds (:func:`~digitaltwin.domain.readings.item_interval_seconds`).
        pending: intervals declared by earlier items of the same batch or MQTT flush, not stored yet.

    Returns:
        ``{(asset_id, quantity): seconds}`` to record for series that do not know their interval yet
        (empty when every series already has this interval).

    Raises:
        ValidationError: naming ``interval`` when

        * the item has no interval quantity (``"interval"`` on a ``power`` or counter item means
          nothing; it is rejected rather than silently ignored);
        * a series has (or an earlier item declared) another interval; the reason names both, e.g.
          ``interval PT1H conflicts with the series' interval PT15M (energy of m-1)``. A series
          keeps one interval: totals of interval energy assume it;
        * a series without a recorded interval already has readings whose spacing disagrees
          (:func:`spacing_agrees`): the median spacing of its latest
          :data:`~digitaltwin.storage.repository.SPACING_READINGS` readings, the rule
          :func:`digitaltwin.analytics.energy.interval_segments` uses to infer the interval of such
          a series. Without this check one item could rewrite the meaning of the whole history.
    """
    wanted: dict[tuple[str, str], int] = {}
    keys = list(dict.fromkeys((r.asset_id, r.quantity) for r in readings))
    if not keys:
        return wanted
    if not any(quantity_spec(q).kind is SeriesKind.INTERVAL for _, q in keys):
        asset_id, quantity = keys[0]
        raise ValidationError(
            f"interval applies to interval energy only; {quantity} of {asset_id} is "
            f"{quantity_spec(quantity).kind.value}, remove \"interval\"",
            field="interval",
        )
    for asset_id, quantity in keys:
        if quantity_spec(quantity).kind is not SeriesKind.INTERVAL:
            continue
        key = (asset_id, quantity)
        current = pending.get(key)
        if current is None:
            info = repo.find_series(asset_id, quantity)
            if info is not None and info.interval_seconds != declared:
                info = repo.find_series(asset_id, quantity, fresh=True)  # recorded or cleared by another process?
            current = info.interval_seconds if info is not None else None
            if info is not None and current is None:
                spacing = repo.recent_spacing_seconds(info.id)
                if spacing is not None and not spacing_agrees(spacing, declared):
                    raise ValidationError(
                        f"interval {iso_duration(declared)} does not match the spacing of the stored readings "
                        f"({iso_duration(round(spacing))}, median of the latest {SPACING_READINGS}) "
                        f"({quantity} of {asset_id}); the series has no recorded interval",
                        field="interval",
                    )
        if current is not None and current != declared:
            raise ValidationError(
                f"interval {iso_duration(declared)} conflicts with the series' interval {iso_duration(current)} "
                f"({quantity} of {asset_id})",
                field="interval",
            )
        if current is None:
            wanted[key] = declared
    return wanted


#: Relative tolerance between a declared interval and the observed spacing of readings.
SPACING_TOLERANCE = 0.01


def spacing_agrees(spacing_s: float, declared_s: int) -> bool:
    """Whether an observed median spacing (seconds) agrees with a declared interval (seconds):
    within :data:`SPACING_TOLERANCE` (1 %) of it, or 1 s, whichever is larger (clock jitter of
    stamps; interval starts themselves are exact)."""
    return abs(spacing_s - declared_s) <= max(1.0, SPACING_TOLERANCE * declared_s)


def iso_duration(seconds: int) -> str:
    """``seconds`` as an ISO 8601 duration: 900 -> ``PT15M``, 3600 -> ``PT1H``, 5400 -> ``PT1H30M``, 86400 -> ``PT24H``."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{v}{u}" for v, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if v]
    return "PT" + ("".join(parts) or "0S")
