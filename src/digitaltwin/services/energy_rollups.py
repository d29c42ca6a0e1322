"""Energy rollups: whole 15-minute UTC cells from stored totals, raw readings only at the edges.

A year by month from raw readings reads and spreads every reading of the year; from rollups it
reads one row per 15-minute cell (35,040 a year, whatever the reading rate or the length of the
history) and the few readings of a partial first and last cell.

What is stored (:mod:`digitaltwin.storage.rollups`): per series and cell, the totals that
:func:`digitaltwin.analytics.energy.aggregate` gives for that cell from the segments of
:func:`digitaltwin.services.energy.metered_series` — the same functions, meter rules and events
as the raw path, so every later sum over cells is the raw path's sum in another order.

How the cells are kept exact:

* **Frontier.** Only cells that no later reading can change are stored: those before the last
  reading (power, interval energy) or before the fifth-from-last reading (counters: a glitch is
  recognised with up to four readings of look-ahead). Cells after the frontier come from raw
  readings at query time, as do the partial first and last cells of a range.
* **Changed readings.** :class:`~digitaltwin.storage.repository.Repository` marks the time span
  of every written or deleted batch (``energy_rollup_dirty``) before it writes. Before a query
  reads the cells of a series it recomputes the cells of each marked span, widened to the
  readings whose segments the change touches (the previous and next reading; five on each side
  for counters).
* **Rules.** The cells depend on the series' kind, interval, meter rules (modulus, power limit)
  and the power hold; their hash is stored, and a series whose rules changed is recomputed whole
  before it is read. Meter replacements are stored beside the hash: one added or removed later
  recomputes only the cells around its swap window (five readings each side).

Not covered (those series take the raw path): interval series without a recorded interval (the
interval is then the median spacing of the range read, which depends on the range), ranges
shorter than a whole cell, and calendars with an edge off the 15-minute grid (historic offsets).
Counter arithmetic carries the highest total since the last reset (its *baseline*) forward; the
raw path starts it five readings before the range, the rollups five readings before each
recomputed span, so for a register that dips and never recovers the two can differ after the
dip. Real registers (and the test data) do not do that.

Concurrency: API workers, the ingest worker and the anomaly detector's thread may refresh one
series at once, while readings are written and meter rules change.

* A writer's mark is committed with its readings (same transaction), so a refresh that reads a
  mark reads the readings too; a mark committed after the refresh read the marks stays, because a
  refresh deletes only the marks it read (by id), in the transaction that stores their cells.
* The rules are read once per refresh; the cells are computed under exactly those rules and
  stored under their key, so a rule changed meanwhile is a changed key for the next refresh.
  Until its last write a refresh stores the key it started from, so one that stops half way (or
  loses a race) leaves the changed rules to be found again.
* Every write of a series' cells is a compare and set on the version of its state
  (:class:`~digitaltwin.storage.rollups.RollupStore`): a refresh that finds another's write
  stores nothing and starts again from the new state; in one process refreshes of a series
  also wait for each other instead of computing the same cells twice.
* A reader reads the cells and events in one statement together with the state's version
  (:meth:`~digitaltwin.storage.rollups.RollupStore.read`); when that is not the version its
  refresh left (the series was recomputed meanwhile) it reads again, and after :data:`_ATTEMPTS`
  tries the raw path answers. The version is bumped in the transaction of every write of the
  cells, so cells read in the snapshot that shows the version are exactly those of that version.
* A series with nothing to do (a state, no mark, the same rules key, the frontier at its target)
  is recognised from one statement (:meth:`~digitaltwin.storage.rollups.RollupStore.refresh_inputs`),
  without the process lock: the state, marks, attributes and readings it reads are of one
  snapshot, a case of "the state first, the rest at least as new" in which the refresh would
  write nothing. The partial cells read from raw readings use the meter rules and attributes
  that refresh read, as the cells do.

Whether reads use the cells is one switch, :data:`settings` (``ENERGY_ROLLUPS``, on by default);
the cells are kept either way (every write marks its span). ``use_rollups=False`` asks for the
raw path explicitly (tests, bench).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from digitaltwin.analytics.energy import BucketTotals, aggregate
from digitaltwin.analytics.meter import CounterRules, EventKind, MeterEvent, Metered, split_import_export
from digitaltwin.analytics.segments import Segments
from digitaltwin.domain.assets import Asset
from digitaltwin.domain.series_attributes import EXPORT_QUANTITIES, energy_flow, export_positive
from digitaltwin.domain.units import SeriesKind
from digitaltwin.services.meter import counter_rules
from digitaltwin.storage.meter_events import MeterEventStore
from digitaltwin.storage.repository import Repository, SeriesInfo
from digitaltwin.storage.rollups import CELL_SECONDS, Cells, ReadingsWindow, RollupStore, StaleState, StoredEvent


class _Switch:
    """Whether energy reads use the rollups by default (set once from ``ENERGY_ROLLUPS`` at start-up)."""

    enabled = True


settings = _Switch()


def configure(*, enabled: bool) -> None:
    """Turn reading the rollups on or off for this process (``Settings.energy_rollups``)."""
    settings.enabled = enabled


#: Readings read on each side of a changed span: the one whose hold or interval reaches into it,
#: and for counters the glitch look-ahead plus the closing reading.
_POWER_CONTEXT, _COUNTER_CONTEXT = 1, 5
#: Cells recomputed per pass when a series is built whole (about 90 days), to bound memory.
_BUILD_CELLS = 96 * 90
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
_EARLIEST_S, _LATEST_S = datetime(1900, 1, 1, tzinfo=UTC).timestamp(), datetime(9998, 1, 1, tzinfo=UTC).timestamp()
#: Up to this many buckets the cells are summed per bucket in the database.
GROUPED_BUCKETS = 100
#: Tries of a refresh, and of a read of the cells, when another process wrote the same series'
#: cells meanwhile; after them the raw path answers.
_ATTEMPTS = 4


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _floor(seconds: float) -> int:
    return int(math.floor(seconds / CELL_SECONDS)) * CELL_SECONDS


def _ceil(seconds: float) -> int:
    return int(math.ceil(seconds / CELL_SECONDS)) * CELL_SECONDS


def _context(info: SeriesInfo) -> int:
    return _COUNTER_CONTEXT if info.kind is SeriesKind.CUMULATIVE else _POWER_CONTEXT


def rules_key(repo: Repository, asset: Asset, info: SeriesInfo, max_hold: timedelta) -> str | None:
    """What a series' cells depend on besides its readings: a hash of its kind, interval, meter
    rules and the power hold, then ``|`` and its meter replacements as JSON (kept apart, so a
    replacement recorded later recomputes only the cells around its swap). None when its cells
    would depend on the range read (an interval series without a recorded interval)."""
    if info.kind is SeriesKind.INTERVAL and not info.interval_seconds:
        return None
    attributes = MeterEventStore(repo.engine).series_attributes(info.id)
    return rules_key_of(info, counter_rules(repo, asset, info, attributes=attributes), max_hold)


def rules_key_of(info: SeriesInfo, rules: CounterRules, max_hold: timedelta) -> str | None:
    """:func:`rules_key` from a series' meter rules already read (:func:`digitaltwin.services.meter.counter_rules`)."""
    if info.kind is SeriesKind.INTERVAL and not info.interval_seconds:
        return None
    swaps = sorted([r.old_ts_s, r.old_final_kwh, r.new_ts_s, r.new_first_kwh] for r in rules.replacements)
    payload = repr((info.kind.value, info.interval_seconds, replace(rules, replacements=()), max_hold.total_seconds()))
    return hashlib.sha256(payload.encode()).hexdigest()[:32] + "|" + json.dumps(swaps)


def _changed_swaps(old_key: str, new_key: str) -> list[tuple[float, float]] | None:
    """The swap windows of replacements added or removed between two keys; None when more than
    the replacements changed (the series is then recomputed whole)."""
    old_hash, _, old_swaps = old_key.partition("|")
    new_hash, _, new_swaps = new_key.partition("|")
    if old_hash != new_hash:
        return None
    before = {tuple(s) for s in json.loads(old_swaps or "[]")}
    after = {tuple(s) for s in json.loads(new_swaps or "[]")}
    return [(float(s[0]), float(s[2])) for s in sorted(before ^ after)]


def _target_frontier(repo: Repository, info: SeriesInfo) -> int | None:
    """End of the cells no later reading can change (see the module docstring); None with too few readings."""
    k = _context(info)
    earlier, _ = repo.readings_around(info.id, before=_FAR_FUTURE, at_or_after=_FAR_FUTURE, count=k)
    if len(earlier) < k:
        return None
    return _floor(earlier[0][0].timestamp())


def compute_cells(
    repo: Repository, asset: Asset, info: SeriesInfo, lo_s: int, hi_s: int, *, max_hold: timedelta, rules: CounterRules | None = None
) -> tuple[Cells, list[StoredEvent]]:
    """Totals of the cells in ``[lo_s, hi_s)`` (cell edges, epoch seconds) and the events starting there.

    The segments are those of the raw path (:func:`digitaltwin.services.energy.metered_series`),
    spread by :func:`digitaltwin.analytics.energy.aggregate` over the cell edges, under ``rules``
    (the series' meter rules as read for the key the cells are stored under; default: read now).
    """
    from digitaltwin.services.energy import metered_series  # services.energy uses this module

    readings, metered, _ = metered_series(
        repo, asset, info, _utc(lo_s), _utc(hi_s), max_hold=max_hold, until_us=hi_s * 1_000_000, rules=rules
    )
    edges = np.arange(lo_s, hi_s + CELL_SECONDS, CELL_SECONDS, dtype=np.int64)
    stats = _piece_stats(metered.segments, edges.astype(np.float64), readings.ts_s)
    keep = (stats.covered_s > 0) | (stats.sample_count > 0)
    cells = Cells(edges[:-1][keep], *(getattr(stats, name)[keep] for name in ("energy_kwh", "covered_s", "import_kwh", "export_kwh", "sample_count", "peak_power_kw")))
    events = [StoredEvent(e.start_s, e.end_s, e.kind.value, e.reason) for e in metered.events if lo_s <= e.start_s < hi_s]
    return cells, events


@dataclass(frozen=True, slots=True)
class _Pieces:
    """Totals of one series over consecutive pieces (cells or partial cells); NaN peak where none."""

    energy_kwh: np.ndarray
    covered_s: np.ndarray
    import_kwh: np.ndarray
    export_kwh: np.ndarray
    sample_count: np.ndarray
    peak_power_kw: np.ndarray


def _piece_stats(seg: Segments, edges_s: np.ndarray, sample_ts_s: np.ndarray) -> _Pieces:
    """Totals of segments per piece between ``edges_s`` (epoch seconds), as stored in a cell."""
    totals = aggregate(seg, edges_s, sample_ts_s)
    positive, negative = split_import_export(seg, export_positive=False)
    imported = np.nan_to_num(aggregate(positive, edges_s, np.empty(0)).energy_kwh)
    exported = np.nan_to_num(aggregate(negative, edges_s, np.empty(0)).energy_kwh)
    return _Pieces(
        np.nan_to_num(totals.energy_kwh), totals.covered_hours * 3600.0, imported, exported,
        totals.sample_count.astype(np.int64), totals.peak_power_kw,
    )


@dataclass(frozen=True, slots=True)
class Refreshed:
    """A series whose stored cells are up to date: its frontier (epoch seconds), the version of its
    rollup state after the refresh, and the meter rules and declared attributes it read (the rules
    the cells are stored under)."""

    frontier_s: int
    version: int
    rules: CounterRules
    attributes: dict[str, Any]


class _SeriesLock:
    """A lock of one series in this process (weakly kept: gone when no refresh holds it)."""

    __slots__ = ("lock", "__weakref__")

    def __init__(self) -> None:
        self.lock = threading.Lock()


_locks_guard = threading.Lock()
_locks: weakref.WeakValueDictionary[tuple[int, int], _SeriesLock] = weakref.WeakValueDictionary()


@contextmanager
def _process_lock(engine: Engine, series_id: int) -> Iterator[None]:
    """Refreshes of one series in this process run one after the other: the second finds the
    cells the first stored instead of computing them again. Correctness does not depend on it
    (other processes do not share it): that is the version check of every write."""
    with _locks_guard:
        holder = _locks.get((id(engine), series_id))
        if holder is None:
            holder = _locks[(id(engine), series_id)] = _SeriesLock()
    with holder.lock:
        yield


def refresh(repo: Repository, asset: Asset, info: SeriesInfo, *, max_hold: timedelta, store: RollupStore | None = None) -> Refreshed | None:
    """Bring the stored cells of a series up to date (``store``: the rollup store of ``repo`` if
    the caller has one; building one builds its read engine).

    Returns:
        Its frontier and state version, or None when the series takes the raw path (see the
        module docstring) or other processes kept writing its cells for :data:`_ATTEMPTS` tries.
    """
    if info.kind is SeriesKind.INTERVAL and not info.interval_seconds:
        return None
    store = store or RollupStore(repo.engine)
    current = _unchanged(repo, store, asset, info, max_hold=max_hold)
    if current is not None:
        return current
    with _process_lock(repo.engine, info.id):
        for _ in range(_ATTEMPTS):
            try:
                return _refresh_once(repo, store, asset, info, max_hold=max_hold)
            except StaleState:  # another process stored cells of the series meanwhile: start from its state
                continue
    return None


def _unchanged(repo: Repository, store: RollupStore, asset: Asset, info: SeriesInfo, *, max_hold: timedelta) -> Refreshed | None:
    """The series' state when a refresh would write nothing (the common case), from one statement
    (plus the replacements of a counter); None when :func:`_refresh_once` must look closer.

    The state, marks, attributes and last readings come from one snapshot: the state is read no
    later than the rest, as :func:`_refresh_once` requires, and with no mark, the same rules key and
    the frontier at its target that refresh would store nothing and answer this version.
    """
    inputs = store.refresh_inputs(info.id, count=_context(info), before=_FAR_FUTURE)
    if inputs is None or inputs.state is None or inputs.marked or inputs.last_ts is None:
        return None
    if _floor(inputs.last_ts.timestamp()) != inputs.state.frontier_s:
        return None
    rules = counter_rules(repo, asset, info, attributes=inputs.attributes)
    if rules_key_of(info, rules, max_hold) != inputs.state.rules_key:
        return None
    return Refreshed(inputs.state.frontier_s, inputs.state.version, rules, inputs.attributes)


def _refresh_once(repo: Repository, store: RollupStore, asset: Asset, info: SeriesInfo, *, max_hold: timedelta) -> Refreshed | None:
    """One try of :func:`refresh`; raises :class:`~digitaltwin.storage.rollups.StaleState`
    when another write of the series' cells came first."""
    # The state first: the marks, rules and readings read next are at least as new, and every
    # write below stores only if the state is still this version.
    state = store.state(info.id)
    marks = store.dirty(info.id)
    attributes = MeterEventStore(repo.engine).series_attributes(info.id)
    rules = counter_rules(repo, asset, info, attributes=attributes)
    key = rules_key_of(info, rules, max_hold)
    target = _target_frontier(repo, info)
    if target is None:
        return None
    version = state.version if state is not None else None
    swaps = _changed_swaps(state.rules_key, key) if state is not None else None
    if state is None or swaps is None:
        extent = repo.series_extent(info.id)
        lo = _floor(extent[0].timestamp()) if extent else target
        version = _build(store, repo, asset, info, lo, target, rules, key=key, interim_key=key, max_hold=max_hold,
                         version=version, reset=True, consumed=marks.ids)
        return Refreshed(target, version, rules, attributes)
    assert version is not None
    frontier = state.frontier_s
    final = min(frontier, target)
    # Until the last write the state keeps the key it had: cells computed under new rules but
    # stored under the old key are recomputed once more if this refresh goes no further.
    for lo, hi in _widened(repo, info, marks.spans + swaps, final):
        cells, events = compute_cells(repo, asset, info, lo, hi, max_hold=max_hold, rules=rules)
        version = store.write(info.id, lo, hi, cells, events, rules_key=state.rules_key, frontier_s=frontier, version=version)
    if target > frontier:
        version = _build(store, repo, asset, info, frontier, target, rules, key=key, interim_key=state.rules_key, max_hold=max_hold,
                         version=version, reset=False, consumed=marks.ids)
    elif target < frontier or marks.ids or state.rules_key != key:
        # Marks processed; when the end of the series was deleted, cells past the new frontier
        # are no longer final and go.
        version = store.write(info.id, target, frontier, _no_cells(), [], rules_key=key, frontier_s=target, version=version, consumed=marks.ids)
    return Refreshed(target, version, rules, attributes)


def _no_cells() -> Cells:
    empty = np.empty(0)
    return Cells(np.empty(0, dtype=np.int64), empty, empty, empty, empty, np.empty(0, dtype=np.int64), empty)


def _build(
    store: RollupStore, repo: Repository, asset: Asset, info: SeriesInfo, lo: int, hi: int, rules: CounterRules, *,
    key: str, interim_key: str, max_hold: timedelta, version: int | None, reset: bool, consumed: Sequence[int],
) -> int:
    """Compute and store the cells of ``[lo, hi)`` in passes, moving the frontier with each; the
    last pass stores ``key`` and deletes the ``consumed`` marks. Returns the state's version."""
    step = _BUILD_CELLS * CELL_SECONDS
    first = True
    for a in range(lo, max(hi, lo + 1), step):
        b = min(a + step, hi)
        last = b >= hi
        cells, events = compute_cells(repo, asset, info, a, b, max_hold=max_hold, rules=rules)
        version = store.write(info.id, a, b, cells, events, rules_key=key if last else interim_key, frontier_s=b, version=version,
                              reset=reset and first, consumed=consumed if last else ())
        first = False
    assert version is not None
    return version


def _widened(repo: Repository, info: SeriesInfo, spans: list[tuple[float, float]], frontier: int) -> list[tuple[int, int]]:
    """Cell ranges to recompute for changed spans: each widened to the readings around it, merged,
    and cut at the frontier."""
    k = _context(info)
    margin = float(info.interval_seconds or 0)
    ranges: list[tuple[int, int]] = []
    for a, b in spans:
        a, b = max(a, _EARLIEST_S), min(b, _LATEST_S)  # a deletion may name any range
        earlier, later = repo.readings_around(info.id, before=_utc(a), at_or_after=_utc(b) + timedelta(microseconds=1), count=k)
        lo = _floor(earlier[0][0].timestamp() if earlier else a)
        hi = min(_ceil(later[-1][0].timestamp() + margin) if len(later) == k else frontier, frontier)
        hi = max(hi, min(_ceil(b + margin + 1e-6), frontier))
        if lo < hi:
            ranges.append((lo, hi))
    ranges.sort()
    merged: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


@dataclass(frozen=True, slots=True)
class RollupTotals:
    """What :func:`digitaltwin.services.energy.energy_report` needs per bucket, from rollups."""

    totals: BucketTotals
    imported_kwh: np.ndarray  # NaN where the side is not metered
    exported_kwh: np.ndarray
    events: tuple[MeterEvent, ...]
    import_hours: np.ndarray  # hours of each bucket the side's meter covers
    export_hours: np.ndarray


def rollup_totals(
    repo: Repository, asset: Asset, info: SeriesInfo, pair: SeriesInfo | None, edges_us: np.ndarray, *, max_hold: timedelta, until_us: int
) -> RollupTotals | None:
    """Per-bucket totals over ``edges_us`` from whole cells, raw readings only for partial cells
    and past the frontier; None when the raw path must answer (see the module docstring).

    Args:
        info, pair: the series and the one metering the other direction (as
            :func:`digitaltwin.services.energy.flow_segments` pairs them).
        edges_us: bucket edges (epoch microseconds) from :func:`digitaltwin.services.energy.window_edges_us`.
        until_us: power samples are not held past this instant.
    """
    cell_us = CELL_SECONDS * 1_000_000
    if np.any(edges_us[1:-1] % cell_us != 0):
        return None
    for _ in range(_ATTEMPTS):
        totals = _read_totals(repo, asset, info, pair, edges_us, max_hold=max_hold, until_us=until_us)
        if totals is not _CHANGED:
            return totals  # type: ignore[return-value]
    return None


#: What :func:`_read_totals` returns when the cells changed while it read them.
_CHANGED = object()


def _read_totals(
    repo: Repository, asset: Asset, info: SeriesInfo, pair: SeriesInfo | None, edges_us: np.ndarray, *, max_hold: timedelta, until_us: int
) -> RollupTotals | None | object:
    """One try of :func:`rollup_totals`: refresh, then read the cells of the version the refresh
    left (:data:`_CHANGED` if another write of the cells came in between)."""
    cell_us = CELL_SECONDS * 1_000_000
    a_us, b_us = int(edges_us[0]), int(edges_us[-1])
    c1, c2 = -(-a_us // cell_us) * CELL_SECONDS, (b_us // cell_us) * CELL_SECONDS
    series = [info] + ([pair] if pair is not None else [])
    store = RollupStore(repo.engine)
    refreshed = [refresh(repo, asset, s, max_hold=max_hold, store=store) for s in series]
    if any(r is None for r in refreshed):
        return None
    # Not past ``until`` either: a power sample held at the end of the range stops there (raw
    # path), which a stored cell cannot know (only readings stamped after ``now`` make it matter).
    f = min(c2, (until_us // cell_us) * CELL_SECONDS, *(r.frontier_s for r in refreshed if r is not None))
    if f <= c1:
        return None
    a_s, b_s = a_us / 1e6, b_us / 1e6
    head, tail = a_s < c1, b_s > f
    # Pieces: the partial first cell, every whole cell, the partial last cell.
    piece_edges = np.concatenate(([a_s] if head else [], np.arange(c1, c2 + 1, CELL_SECONDS, dtype=np.float64), [b_s] if b_s > c2 else []))
    stats: dict[int, tuple[_Pieces, list[MeterEvent]]] = {}
    for s, r in zip(series, refreshed, strict=True):
        assert r is not None
        pieces = _series_pieces(repo, store, asset, s, r, piece_edges, c1, f, head, tail, max_hold, until_us, edges_us / 1e6)
        if pieces is None:
            # A write in between (another process recomputing the series) may have left cells
            # of another state, or none yet past its first pass: read again.
            return _CHANGED
        stats[s.id] = pieces
    idx = np.searchsorted(piece_edges, edges_us / 1e6)
    own = stats[info.id][0]
    totals = _reduce(own, idx)
    attributes = {s.id: r.attributes for s, r in zip(series, refreshed, strict=True) if r is not None}
    (imported, import_h), (exported, export_h), pair_used = _sides(asset, info, pair, {k: v[0] for k, v in stats.items()}, attributes, idx)
    chosen = [e for s in series if s.id == info.id or pair_used for e in stats[s.id][1]]
    merged = sorted({(e.kind, e.start_s, e.end_s, e.reason): e for e in chosen}.values(), key=lambda e: (e.start_s, e.end_s))
    lo, hi = float(edges_us[0] / 1e6), float(edges_us[-1] / 1e6)
    in_range = tuple(e for e in merged if e.start_s < hi and max(e.end_s, e.start_s) >= lo)
    return RollupTotals(totals, imported, exported, in_range, import_h, export_h)


def _series_pieces(
    repo: Repository, store: RollupStore, asset: Asset, info: SeriesInfo, refreshed: Refreshed, piece_edges: np.ndarray,
    c1: int, f: int, head: bool, tail: bool, max_hold: timedelta, until_us: int, bucket_edges_s: np.ndarray,
) -> tuple[_Pieces, list[MeterEvent]] | None:
    """Totals of one series per piece: stored cells inside ``[c1, f)``, raw readings for the rest;
    None when the stored cells are no longer those of the version ``refreshed`` left. The raw
    readings past ``f`` come in the statement that reads the cells."""
    from digitaltwin.services.energy import WindowReadings, meter_window, metered_series, window_context

    n = piece_edges.size - 1
    energy, covered, imp, exp = (np.zeros(n) for _ in range(4))
    counts = np.zeros(n, dtype=np.int64)
    peak = np.full(n, np.nan)
    # Few buckets: summed in the database, each bucket's sum placed on its first cell (the sums
    # per bucket below are unchanged); many: one row per cell.
    inner = [int(e) for e in bucket_edges_s if c1 < e < f]
    end_s = float(piece_edges[-1])
    window = ReadingsWindow(_utc(f), _utc(end_s), *window_context(info)) if tail else None  # as read_window reads it
    read = store.read(
        info.id, c1, f, groups=[c1, *inner, f] if len(inner) < GROUPED_BUCKETS else None,
        events_lo_s=float(piece_edges[0]), events_hi_s=end_s, window=window,
    )
    if read.version != refreshed.version:
        return None
    cells = read.cells
    at = (cells.cell_s - c1) // CELL_SECONDS + (1 if head else 0)
    energy[at], covered[at], imp[at], exp[at] = cells.energy_kwh, cells.covered_s, cells.import_kwh, cells.export_kwh
    counts[at], peak[at] = cells.sample_count, cells.peak_power_kw
    events = [MeterEvent(EventKind(e.kind), e.start_s, e.end_s, e.reason) for e in read.events]
    raw: list[tuple[slice, WindowReadings, Metered]] = []  # pieces from raw readings
    if head:  # read one cell further, so the last reading of the piece sees what follows it as the raw path does
        readings, metered, _ = metered_series(
            repo, asset, info, _utc(piece_edges[0]), _utc(min(c1 + CELL_SECONDS, end_s)), max_hold=max_hold, until_us=until_us,
            rules=refreshed.rules, attributes=refreshed.attributes,
        )
        raw.append((slice(0, 1), readings, metered))
    if tail:  # from the frontier (or the last whole cell) to the end
        readings = WindowReadings(read.ts_s, read.values)
        metered = meter_window(info, readings, refreshed.rules, max_hold=max_hold, until_us=until_us)
        raw.append((slice(int(np.searchsorted(piece_edges, float(f))), n), readings, metered))
    for part_of, readings, metered in raw:
        edges = piece_edges[part_of.start : part_of.stop + 1]
        part = _piece_stats(metered.segments, edges, readings.ts_s)
        energy[part_of], covered[part_of], imp[part_of], exp[part_of] = part.energy_kwh, part.covered_s, part.import_kwh, part.export_kwh
        counts[part_of], peak[part_of] = part.sample_count, part.peak_power_kw
        events.extend(metered.events)
    return _Pieces(energy, covered, imp, exp, counts, peak), events


def _reduce(p: _Pieces, idx: np.ndarray) -> BucketTotals:
    """Sum pieces into buckets whose edges are the pieces at ``idx`` (as :func:`aggregate` would)."""
    starts = idx[:-1]
    covered_s = np.add.reduceat(p.covered_s, starts)
    has = covered_s > 1e-9
    energy = np.where(has, np.add.reduceat(p.energy_kwh, starts), np.nan)
    covered_h = covered_s / 3600.0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(has, energy / np.where(has, covered_h, 1.0), np.nan)
    peak = np.fmax.reduceat(p.peak_power_kw, starts)
    return BucketTotals(energy, covered_h, mean, peak, np.add.reduceat(p.sample_count, starts))


def _sides(
    asset: Asset, info: SeriesInfo, pair: SeriesInfo | None, pieces: dict[int, _Pieces], attributes: dict[int, dict[str, Any]], idx: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], bool]:
    """(kWh, covered hours) of import and of export per bucket, by the rules of :func:`digitaltwin.services.energy.flow_segments`,
    and whether the pair series counts (its events are then reported too). ``attributes``: the
    declared attributes of each series by id, as its refresh read them."""
    starts = idx[:-1]
    flow = energy_flow(asset.kind.value, asset.attributes)
    to_export = export_positive(info.quantity, attributes[info.id], flow)
    own = pieces[info.id]
    sides: dict[bool, list[tuple[np.ndarray, np.ndarray]]] = {True: [], False: []}  # export? -> (energy, covered)
    if info.kind is SeriesKind.CUMULATIVE or info.quantity in EXPORT_QUANTITIES:
        sides[to_export].append((own.energy_kwh, own.covered_s))
    else:  # a signed series: positive segments are import unless the series counts export positive
        sides[False].append((own.export_kwh if to_export else own.import_kwh, own.covered_s))
        sides[True].append((own.import_kwh if to_export else own.export_kwh, own.covered_s))
    pair_used = False
    if pair is not None:
        pair_export = export_positive(pair.quantity, attributes[pair.id], flow)
        if pair_export != to_export or info.kind is not SeriesKind.CUMULATIVE:
            pair_used = True
            sides[pair_export].append((pieces[pair.id].energy_kwh, pieces[pair.id].covered_s))
    out: list[tuple[np.ndarray, np.ndarray]] = []
    n = starts.size
    for side in (False, True):
        if sides[side]:
            energy = sum(e for e, _ in sides[side])
            covered = sum(c for _, c in sides[side])
        elif flow != "both":
            covered = sides[not side][0][1]
            energy = np.zeros_like(covered)
        else:
            out.append((np.full(n, np.nan), np.zeros(n)))
            continue
        covered_b = np.add.reduceat(covered, starts)
        out.append((np.where(covered_b > 1e-9, np.add.reduceat(energy, starts), np.nan), covered_b / 3600.0))
    return out[0], out[1], pair_used
