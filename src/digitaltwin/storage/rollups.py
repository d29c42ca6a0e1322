"""Storage of energy rollups: per series and 15-minute UTC cell, the totals of its segments.

The numbers are computed by :mod:`digitaltwin.services.energy_rollups` from the same segments as
the raw energy path; this module only reads and writes the five tables of ``tables.py``:

* ``energy_rollups``: one row per (series, cell) with energy, covered seconds, import and export
  (the energy of the positive and of the negative segments), sample count and peak power;
* ``energy_rollup_state``: per series, the key of the rules the rows were computed under, the
  *frontier* (the end of the cells that are stored and final) and a *version* that every write
  of the series' cells bumps;
* ``energy_rollup_dirty``: time spans of readings written or deleted since, marked in the
  writer's own transaction (:func:`mark_changed`, :func:`mark_changed_raw`); processed at query
  time;
* ``energy_rollup_events``: the meter events found while computing the cells;
* ``energy_rollup_days``: the cells summed per UTC day, rewritten with the cells of the days a
  write touches (same transaction), read for the whole days of long groups.

Reads of one statement see one snapshot (PostgreSQL's READ COMMITTED takes one per statement,
SQLite one per statement outside a transaction): :meth:`RollupStore.refresh_inputs` reads all a
refresh decides on at once, and :meth:`RollupStore.read` returns the cells and events together
with the version they belong to.

Concurrency. Several processes (API workers, the ingest worker, the anomaly detector's thread)
may refresh one series at once. A write of cells is a compare and set on the version: it is the
transaction's first statement, so on PostgreSQL it locks the state row until commit (a second
writer waits, then finds another version), and on SQLite it takes the database's write lock.
A refresh whose version is no longer the stored one stores nothing (:class:`StaleState`) and
starts again from the new state. A refresh deletes only the marks it read, by id: a mark
committed meanwhile (PostgreSQL commits need not follow id order) stays for the next refresh.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy as np
from sqlalchemy import TextClause, and_, bindparam, delete, func, insert, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from digitaltwin.storage.db import read_engine
from digitaltwin.storage.tables import (
    UTCDateTime,
    energy_rollup_days,
    energy_rollup_dirty,
    energy_rollup_events,
    energy_rollup_state,
    energy_rollups,
    readings,
    series,
)

#: Length of a rollup cell in seconds. Every UTC offset in use (+05:45 included) is a multiple of
#: 15 minutes, so every local 15-minute, hour, day, week and month edge is a cell edge.
CELL_SECONDS = 900
#: Length of a UTC day in seconds: the unit of ``energy_rollup_days``.
DAY_SECONDS = 86_400
#: Mark ids deleted per statement (SQLite's older builds allow 999 bound parameters).
_IDS_PER_DELETE = 500


@dataclass(frozen=True, slots=True)
class Cells:
    """Stored cells of one series, arrays of equal length sorted by ``cell_s`` (epoch seconds)."""

    cell_s: np.ndarray
    energy_kwh: np.ndarray
    covered_s: np.ndarray
    import_kwh: np.ndarray
    export_kwh: np.ndarray
    sample_count: np.ndarray
    peak_power_kw: np.ndarray  # NaN where no segment starts in the cell


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A meter event stored with the cells (epoch seconds, kind value, reason)."""

    start_s: float
    end_s: float
    kind: str
    reason: str


@dataclass(frozen=True, slots=True)
class RollupState:
    """What the stored cells of a series were computed under: the rules key, the frontier (epoch
    seconds) and the version of the last write."""

    rules_key: str
    frontier_s: int
    version: int


@dataclass(frozen=True, slots=True)
class Marks:
    """Change marks of a series as read: their ids and spans (epoch seconds, ``lo <= hi``)."""

    ids: tuple[int, ...]
    spans: list[tuple[float, float]]


@dataclass(frozen=True, slots=True)
class RefreshInputs:
    """What decides whether a series' cells are up to date, as of one snapshot: its rollup state
    (None without rollups), whether it has change marks, its declared attributes (the meter rules'
    inputs besides the asset and the replacements) and the time of its ``count``-th last reading
    (None with fewer readings)."""

    state: RollupState | None
    marked: bool
    attributes: dict[str, Any]
    last_ts: datetime | None


@dataclass(frozen=True, slots=True)
class ReadingsWindow:
    """Raw readings of a series to read with its cells: those in ``[start, end)``, the ``before``
    last ones before ``start`` and the ``after`` first ones at or after ``end``."""

    start: datetime
    end: datetime
    before: int
    after: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Cells, events and raw readings of a series as of one version of its state (None: it has no
    state). ``ts_s`` and ``values``: the readings of the :class:`ReadingsWindow` asked for, sorted
    (epoch seconds, ``us / 1e6`` as :meth:`~digitaltwin.storage.repository.Repository.series_arrays`
    gives them; float64), empty when none was asked for."""

    version: int | None
    cells: Cells
    events: list[StoredEvent]
    ts_s: np.ndarray
    values: np.ndarray


class StaleState(Exception):
    """The series' rollups were written by someone else since their state was read: nothing was
    stored; read the state again."""


def mark_changed(conn: Connection, spans: Iterable[tuple[int, datetime, datetime]]) -> None:
    """Record that readings of series changed in ``[low, high]`` (series id, UTC instants).

    Called inside the writer's transaction: the mark becomes visible together with the change,
    so a refresh that sees the mark also sees the readings, and one that does not leaves the
    mark for the next. A mark that sees no change only costs a recomputation.
    """
    rows = [{"series_id": sid, "lo_s": low.timestamp(), "hi_s": high.timestamp()} for sid, low, high in spans]
    if rows:
        conn.execute(insert(energy_rollup_dirty), rows)


def mark_changed_raw(cursor: Any, dialect: str, series_ids: Sequence[int], lows_us: Sequence[int], highs_us: Sequence[int]) -> None:
    """:func:`mark_changed` on a DBAPI cursor inside the batch writer's transaction
    (:mod:`digitaltwin.storage.batch_write`), spans in epoch microseconds."""
    rows = [(int(sid), lo / 1e6, hi / 1e6) for sid, lo, hi in zip(series_ids, lows_us, highs_us, strict=True)]
    if not rows:
        return
    marker = "%s" if dialect == "postgresql" else "?"
    cursor.executemany(f"INSERT INTO energy_rollup_dirty (series_id, lo_s, hi_s) VALUES ({marker}, {marker}, {marker})", rows)


class RollupStore:
    """Reads and writes the rollup tables of one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.reads = read_engine(engine)  # the one-statement reads below: no BEGIN/ROLLBACK round trips

    def state(self, series_id: int) -> RollupState | None:
        """The rollup state of a series, or None when it has no rollups."""
        s = energy_rollup_state.c
        with self.reads.connect() as conn:
            row = conn.execute(select(s.rules_key, s.frontier_s, s.version).where(s.series_id == series_id)).first()
        return RollupState(row.rules_key, int(row.frontier_s), int(row.version)) if row else None

    def dirty(self, series_id: int) -> Marks:
        """The change marks of a series (no ids and no spans when it is clean)."""
        with self.reads.connect() as conn:
            rows = conn.execute(
                select(energy_rollup_dirty.c.id, energy_rollup_dirty.c.lo_s, energy_rollup_dirty.c.hi_s)
                .where(energy_rollup_dirty.c.series_id == series_id)
            ).all()
        return Marks(tuple(int(r.id) for r in rows), [(float(r.lo_s), float(r.hi_s)) for r in rows])

    def refresh_inputs(self, series_id: int, *, count: int, before: datetime) -> RefreshInputs | None:
        """:class:`RefreshInputs` of a series in one statement (one snapshot); None when the series
        does not exist. ``last_ts`` is that of the ``count``-th last reading strictly before ``before``."""
        s, d, r = energy_rollup_state.c, energy_rollup_dirty.c, readings.c
        marked = select(d.id).where(d.series_id == series_id).exists()
        last = select(r.ts).where(r.series_id == series_id, r.ts < before).order_by(r.ts.desc()).offset(count - 1).limit(1).scalar_subquery()
        query = (
            select(series.c.attributes, s.rules_key, s.frontier_s, s.version, marked.label("marked"), last.label("last_ts"))
            .select_from(series.outerjoin(energy_rollup_state, s.series_id == series.c.id))
            .where(series.c.id == series_id)
        )
        with self.reads.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        state = RollupState(row.rules_key, int(row.frontier_s), int(row.version)) if row.version is not None else None
        return RefreshInputs(state, bool(row.marked), dict(row.attributes or {}), row.last_ts)

    def read(
        self, series_id: int, lo_s: int, hi_s: int, *, groups: list[int] | None, events_lo_s: float, events_hi_s: float,
        window: ReadingsWindow | None = None,
    ) -> Snapshot:
        """The cells of ``[lo_s, hi_s)``, the events of ``[events_lo_s, events_hi_s]``, the raw
        readings of ``window`` and the state's version, in one statement: the cells and events are
        those of that version.

        Args:
            groups: None for one row per cell; else edges (cell edges from ``lo_s`` to ``hi_s``)
                of groups summed in the database (energy, coverage, import, export and counts
                summed, peak the maximum), each group returned as one cell at its first edge;
                groups without cells are absent. For a few buckets (a year by month) this sends
                12 rows instead of 35,040, summed from the day sums of the whole UTC days of
                each group and the cells of its partial days.
        Events: those starting before ``events_hi_s`` and not ending before ``events_lo_s``.
        """
        params: dict[str, Any] = {"sid": series_id, "lo": lo_s, "hi": hi_s, "ev_lo": events_lo_s, "ev_hi": events_hi_s}
        with_window = window is not None
        if groups is None:
            query = _read_query(self.engine.dialect.name, None, with_window)
        else:
            query = _read_query(self.engine.dialect.name, len(groups) - 1, with_window)
            # Whole UTC days [day_lo, day_hi) of each group; none (both at its end) when it has none.
            los, his = groups[:-1], groups[1:]
            day_los, day_his = [-(-lo // DAY_SECONDS) * DAY_SECONDS for lo in los], [hi - hi % DAY_SECONDS for hi in his]
            for i, (a, b) in enumerate(zip(day_los, day_his, strict=True)):
                if a >= b:
                    day_los[i] = day_his[i] = his[i]
            if self.engine.dialect.name == "postgresql":
                params |= {"los": los, "his": his, "day_los": day_los, "day_his": day_his}
            else:
                for name, values in (("lo", los), ("hi", his), ("day_lo", day_los), ("day_hi", day_his)):
                    params |= {f"{name}{i}": v for i, v in enumerate(values)}
        if window is not None:
            params |= {"r_lo": window.start, "r_hi": window.end, "r_before": window.before, "r_after": window.after}
        with self.reads.connect() as conn:
            rows = conn.execute(query, params).all()
        version = next((int(r[1]) for r in rows if r[0] == 0), None)
        # A group without cells sums to NULL (energy_kwh is never NULL in a row).
        cell_rows = sorted((r[1:8] for r in rows if r[0] == 1 and r[2] is not None), key=lambda r: r[0])
        events = sorted(
            (StoredEvent(float(r[2]), float(r[3]), r[8], r[9]) for r in rows if r[0] == 2), key=lambda e: (e.start_s, e.end_s)
        )
        raw = sorted((int(r[1]), float(r[2])) for r in rows if r[0] == 3)
        ts_s = np.fromiter((t for t, _ in raw), dtype=np.int64, count=len(raw)) / 1e6
        values = np.fromiter((v for _, v in raw), dtype=np.float64, count=len(raw))
        return Snapshot(version, _cells(cell_rows), events, ts_s, values)

    def write(
        self,
        series_id: int,
        lo_s: int,
        hi_s: int,
        cells: Cells,
        events: list[StoredEvent],
        *,
        rules_key: str,
        frontier_s: int,
        version: int | None,
        consumed: Sequence[int] = (),
        reset: bool = False,
    ) -> int:
        """Replace the cells and events of ``[lo_s, hi_s)`` and set the state, in one transaction,
        if the state's version is still ``version``.

        Args:
            version: the version read with the state; None when the series had no state.
            reset: drop every stored cell and event of the series first (rules changed).
            consumed: ids of the marks these cells account for; they are deleted.

        Returns:
            The new version.

        Raises:
            StaleState: another write came first; nothing was stored.
        """
        try:
            return self._write(series_id, lo_s, hi_s, cells, events, rules_key=rules_key, frontier_s=frontier_s, version=version, consumed=consumed, reset=reset)
        except IntegrityError as exc:  # a first state inserted by another writer (or the series deleted meanwhile)
            raise StaleState(series_id) from exc

    def _write(
        self, series_id: int, lo_s: int, hi_s: int, cells: Cells, events: list[StoredEvent], *,
        rules_key: str, frontier_s: int, version: int | None, consumed: Sequence[int], reset: bool,
    ) -> int:
        cell_of = energy_rollups.c.series_id == series_id
        event_of = energy_rollup_events.c.series_id == series_id
        state = energy_rollup_state.c
        values = {"rules_key": rules_key, "frontier_s": frontier_s}
        with self.engine.begin() as conn:
            # The compare and set comes first: it takes the row's lock (PostgreSQL) or the write lock (SQLite).
            if version is None:
                conn.execute(insert(energy_rollup_state).values(series_id=series_id, version=1, **values))
                new_version = 1
            else:
                new_version = version + 1
                swapped = conn.execute(
                    update(energy_rollup_state).where(state.series_id == series_id, state.version == version).values(version=new_version, **values)
                ).rowcount
                if swapped != 1:
                    raise StaleState(series_id)  # leaving the block rolls the transaction back
            if reset:
                conn.execute(delete(energy_rollups).where(cell_of))
                conn.execute(delete(energy_rollup_events).where(event_of))
            else:
                conn.execute(delete(energy_rollups).where(cell_of, energy_rollups.c.cell_s >= lo_s, energy_rollups.c.cell_s < hi_s))
                conn.execute(
                    delete(energy_rollup_events).where(event_of, energy_rollup_events.c.start_s >= lo_s, energy_rollup_events.c.start_s < hi_s)
                )
            if cells.cell_s.size:
                conn.execute(
                    insert(energy_rollups),
                    [
                        {
                            "series_id": series_id, "cell_s": c, "energy_kwh": e, "covered_s": cov, "import_kwh": i,
                            "export_kwh": x, "sample_count": n, "peak_power_kw": None if p != p else p,
                        }
                        for c, e, cov, i, x, n, p in zip(
                            cells.cell_s.tolist(), cells.energy_kwh.tolist(), cells.covered_s.tolist(), cells.import_kwh.tolist(),
                            cells.export_kwh.tolist(), cells.sample_count.tolist(), cells.peak_power_kw.tolist(), strict=True,
                        )
                    ],
                )
            # The day sums of every day the write touched, from the cells now stored.
            day_lo, day_hi = lo_s - lo_s % DAY_SECONDS, -(-hi_s // DAY_SECONDS) * DAY_SECONDS
            days = energy_rollup_days.c
            if reset:
                conn.execute(delete(energy_rollup_days).where(days.series_id == series_id))
            else:
                conn.execute(delete(energy_rollup_days).where(days.series_id == series_id, days.day_s >= day_lo, days.day_s < day_hi))
            conn.execute(_DAY_SUMS, {"sid": series_id, "lo": day_lo, "hi": day_hi})
            if events:
                conn.execute(
                    insert(energy_rollup_events),
                    [{"series_id": series_id, "start_s": e.start_s, "end_s": e.end_s, "kind": e.kind, "reason": e.reason} for e in events],
                )
            ids = sorted(set(consumed))
            for at in range(0, len(ids), _IDS_PER_DELETE):
                chunk = ids[at : at + _IDS_PER_DELETE]
                conn.execute(delete(energy_rollup_dirty).where(energy_rollup_dirty.c.series_id == series_id, energy_rollup_dirty.c.id.in_(chunk)))
        return new_version

    def count(self, series_id: int) -> int:
        """Number of stored cells of a series (for tests and the benchmark)."""
        with self.reads.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(energy_rollups).where(and_(energy_rollups.c.series_id == series_id))).scalar() or 0)


_DAY = "cell_s - ((cell_s % 86400) + 86400) % 86400"  # the start of a cell's UTC day, also before 1970
#: The day sums of one series' cells in ``[lo, hi)`` (whole days).
_DAY_SUMS = text(
    "INSERT INTO energy_rollup_days (series_id, day_s, energy_kwh, covered_s, import_kwh, export_kwh, sample_count, peak_power_kw)"
    f" SELECT series_id, {_DAY}, sum(energy_kwh), sum(covered_s), sum(import_kwh), sum(export_kwh), sum(sample_count), max(peak_power_kw)"
    f" FROM energy_rollups WHERE series_id = :sid AND cell_s >= :lo AND cell_s < :hi GROUP BY series_id, {_DAY}"
)
_ROWS = "energy_kwh AS e, covered_s AS c, import_kwh AS i, export_kwh AS x, sample_count AS n, peak_power_kw AS p"
_SUMS = "sum(e), sum(c), sum(i), sum(x), CAST(sum(n) AS BIGINT), max(p)"


def _group_rows(lo: str, hi: str, day_lo: str, day_hi: str) -> str:
    """The rows a group sums: the day sums of its whole days and the cells of its partial days."""
    return " UNION ALL ".join([
        f"SELECT {_ROWS} FROM energy_rollup_days WHERE series_id = :sid AND day_s >= {day_lo} AND day_s < {day_hi}",
        f"SELECT {_ROWS} FROM energy_rollups WHERE series_id = :sid AND cell_s >= {lo} AND cell_s < {day_lo}",
        f"SELECT {_ROWS} FROM energy_rollups WHERE series_id = :sid AND cell_s >= {day_hi} AND cell_s < {hi}",
    ])


@lru_cache(maxsize=256)
def _read_query(dialect: str, groups: int | None, window: bool) -> TextClause:
    """The statement of :meth:`RollupStore.read`: rows tagged 0 (the version), 1 (a cell or group:
    start, energy, covered, import, export, count, peak), 2 (an event: start, end, kind, reason)
    and 3 (a raw reading: epoch microseconds, value)."""
    state = "SELECT 0, version, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM energy_rollup_state WHERE series_id = :sid"
    events = (
        "SELECT 2, NULL, start_s, end_s, NULL, NULL, NULL, NULL, kind, reason FROM energy_rollup_events"
        " WHERE series_id = :sid AND start_s < :ev_hi AND COALESCE(end_s, start_s) >= :ev_lo"
    )
    if groups is None:
        cells = [
            "SELECT 1, cell_s, energy_kwh, covered_s, import_kwh, export_kwh, sample_count, peak_power_kw, NULL, NULL"
            " FROM energy_rollups WHERE series_id = :sid AND cell_s >= :lo AND cell_s < :hi"
        ]
    elif dialect == "postgresql":
        # One statement text whatever the number of groups; range scans of the primary keys per group.
        cells = [
            "SELECT 1, g.lo, s.* FROM unnest(CAST(:los AS BIGINT[]), CAST(:his AS BIGINT[]), CAST(:day_los AS BIGINT[]),"
            " CAST(:day_his AS BIGINT[])) AS g(lo, hi, day_lo, day_hi)"
            f" CROSS JOIN LATERAL (SELECT {_SUMS}, NULL, NULL FROM ({_group_rows('g.lo', 'g.hi', 'g.day_lo', 'g.day_hi')}) AS r) AS s"
        ]
    else:  # range scans of the primary keys per group (a CASE per row costs more on SQLite)
        cells = [
            f"SELECT 1, :lo{i}, {_SUMS}, NULL, NULL FROM ({_group_rows(f':lo{i}', f':hi{i}', f':day_lo{i}', f':day_hi{i}')})"
            for i in range(groups)
        ]
    parts = [state, *cells, events]
    if window:
        # Typed NULLs: PostgreSQL types a bare NULL of a subquery as text.
        us = "CAST(extract(epoch FROM ts) * 1000000 AS BIGINT)" if dialect == "postgresql" else "ts"
        reading = f"SELECT 3, {us}, value, CAST(NULL AS FLOAT), CAST(NULL AS FLOAT), CAST(NULL AS FLOAT), CAST(NULL AS BIGINT), CAST(NULL AS FLOAT), NULL, NULL FROM readings WHERE series_id = :sid"
        parts += [
            f"{reading} AND ts >= :r_lo AND ts < :r_hi",
            f"SELECT * FROM ({reading} AND ts < :r_lo ORDER BY ts DESC LIMIT :r_before) AS before_range",
            f"SELECT * FROM ({reading} AND ts >= :r_hi ORDER BY ts LIMIT :r_after) AS after_range",
        ]
    query = text(" UNION ALL ".join(parts))
    if window:
        query = query.bindparams(bindparam("r_lo", type_=UTCDateTime()), bindparam("r_hi", type_=UTCDateTime()))
    return query


def _cells(rows: list) -> Cells:  # type: ignore[type-arg]
    """Cells from rows of (cell_s, energy, covered, import, export, count, peak or None)."""
    cols = list(zip(*rows, strict=True)) if rows else [()] * 7
    return Cells(
        np.array(cols[0], dtype=np.int64),
        *(np.array(col, dtype=np.float64) for col in cols[1:5]),
        np.array(cols[5], dtype=np.int64),
        np.array([np.nan if v is None else v for v in cols[6]], dtype=np.float64),
    )
