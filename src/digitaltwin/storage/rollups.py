"""Storage of energy rollups: per series and 15-minute UTC cell, the totals of its segments.

The numbers are computed by :mod:`digitaltwin.services.energy_rollups` from the same segments as
the raw energy path; this module only reads and writes the four tables of ``tables.py``:

* ``energy_rollups``: one row per (series, cell) with energy, covered seconds, import and export
  (the energy of the positive and of the negative segments), sample count and peak power;
* ``energy_rollup_state``: per series, the key of the rules the rows were computed under and the
  *frontier*, the end of the cells that are stored and final;
* ``energy_rollup_dirty``: time spans of readings written or deleted since, marked by
  :class:`~digitaltwin.storage.repository.Repository` before it writes; processed at query time;
* ``energy_rollup_events``: the meter events found while computing the cells.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import BigInteger, and_, delete, func, insert, literal, select, union_all, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from digitaltwin.storage.db import read_engine
from digitaltwin.storage.tables import (
    energy_rollup_dirty,
    energy_rollup_events,
    energy_rollup_state,
    energy_rollups,
)

#: Length of a rollup cell in seconds. Every UTC offset in use (+05:45 included) is a multiple of
#: 15 minutes, so every local 15-minute, hour, day, week and month edge is a cell edge.
CELL_SECONDS = 900


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


def mark_changed(conn: Connection, spans: Iterable[tuple[int, datetime, datetime]]) -> None:
    """Record that readings of series changed in ``[low, high]`` (series id, UTC instants).

    Called inside the writer's transaction or just before it, so rollups are never stale: a
    mark whose write then fails only costs a recomputation.
    """
    rows = [{"series_id": sid, "lo_s": low.timestamp(), "hi_s": high.timestamp()} for sid, low, high in spans]
    if rows:
        conn.execute(insert(energy_rollup_dirty), rows)


class RollupStore:
    """Reads and writes the rollup tables of one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.reads = read_engine(engine)  # the one-statement reads below: no BEGIN/ROLLBACK round trips

    def state(self, series_id: int) -> tuple[str, int] | None:
        """(rules key, frontier epoch seconds) of a series, or None when it has no rollups."""
        with self.reads.connect() as conn:
            row = conn.execute(
                select(energy_rollup_state.c.rules_key, energy_rollup_state.c.frontier_s).where(energy_rollup_state.c.series_id == series_id)
            ).first()
        return (row.rules_key, int(row.frontier_s)) if row else None

    def dirty(self, series_id: int) -> tuple[int, list[tuple[float, float]]]:
        """The highest mark id and the changed spans (epoch seconds) of a series; (0, []) when clean."""
        with self.reads.connect() as conn:
            rows = conn.execute(
                select(energy_rollup_dirty.c.id, energy_rollup_dirty.c.lo_s, energy_rollup_dirty.c.hi_s)
                .where(energy_rollup_dirty.c.series_id == series_id)
            ).all()
        if not rows:
            return 0, []
        return max(int(r.id) for r in rows), [(float(r.lo_s), float(r.hi_s)) for r in rows]

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
        clear_marks_upto: int = 0,
        reset: bool = False,
    ) -> None:
        """Replace the cells and events of ``[lo_s, hi_s)`` and set the state, in one transaction.

        Two queries refreshing the same series at once compute the same cells; the second to
        commit fails on the primary key and is dropped (the first one's rows stand).

        Args:
            reset: drop every stored cell and event of the series first (rules changed).
            clear_marks_upto: dirty marks with an id up to this are processed and deleted.
        """
        try:
            self._write(series_id, lo_s, hi_s, cells, events, rules_key=rules_key, frontier_s=frontier_s, clear_marks_upto=clear_marks_upto, reset=reset)
        except IntegrityError:
            pass

    def _write(
        self, series_id: int, lo_s: int, hi_s: int, cells: Cells, events: list[StoredEvent], *,
        rules_key: str, frontier_s: int, clear_marks_upto: int, reset: bool,
    ) -> None:
        cell_of = energy_rollups.c.series_id == series_id
        event_of = energy_rollup_events.c.series_id == series_id
        with self.engine.begin() as conn:
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
            if events:
                conn.execute(
                    insert(energy_rollup_events),
                    [{"series_id": series_id, "start_s": e.start_s, "end_s": e.end_s, "kind": e.kind, "reason": e.reason} for e in events],
                )
            if clear_marks_upto:
                conn.execute(delete(energy_rollup_dirty).where(energy_rollup_dirty.c.series_id == series_id, energy_rollup_dirty.c.id <= clear_marks_upto))
            values = {"rules_key": rules_key, "frontier_s": frontier_s}
            if conn.execute(update(energy_rollup_state).where(energy_rollup_state.c.series_id == series_id).values(**values)).rowcount == 0:
                conn.execute(insert(energy_rollup_state).values(series_id=series_id, **values))

    def cells(self, series_id: int, lo_s: int, hi_s: int) -> Cells:
        """Stored cells of a series with ``lo_s <= cell_s < hi_s`` (cells without data are absent)."""
        c = energy_rollups.c
        query = (
            select(c.cell_s, c.energy_kwh, c.covered_s, c.import_kwh, c.export_kwh, c.sample_count, c.peak_power_kw)
            .where(c.series_id == series_id, c.cell_s >= lo_s, c.cell_s < hi_s)
            .order_by(c.cell_s)
        )
        with self.reads.connect() as conn:
            rows = conn.execute(query).all()
        return _cells(rows)


    def cells_grouped(self, series_id: int, edges_s: list[int]) -> Cells:
        """Cells summed per group ``[edges_s[g], edges_s[g + 1])`` in the database (energy, coverage,
        import, export and counts summed, peak the maximum), each group as one cell at its first
        edge; groups without rows are absent. For a few buckets (a year by month) this sends 12
        rows instead of 35,040."""
        c = energy_rollups.c
        # One range scan of the primary key per group (a CASE per row costs more on SQLite).
        parts = [
            select(literal(lo, BigInteger()).label("g"), func.sum(c.energy_kwh), func.sum(c.covered_s), func.sum(c.import_kwh),
                   func.sum(c.export_kwh), func.sum(c.sample_count), func.max(c.peak_power_kw), func.count().label("n"))
            .where(c.series_id == series_id, c.cell_s >= lo, c.cell_s < hi)
            for lo, hi in zip(edges_s[:-1], edges_s[1:], strict=True)
        ]
        query = union_all(*parts)
        with self.reads.connect() as conn:
            rows = [r[:7] for r in conn.execute(query).all() if r[7]]
        return _cells(rows)

    def events(self, series_id: int, lo_s: float, hi_s: float) -> list[StoredEvent]:
        """Stored events of a series starting before ``hi_s`` and not ending before ``lo_s``."""
        e = energy_rollup_events.c
        query = select(e.start_s, e.end_s, e.kind, e.reason).where(
            e.series_id == series_id, e.start_s < hi_s, func.coalesce(e.end_s, e.start_s) >= lo_s
        ).order_by(e.start_s, e.end_s)
        with self.reads.connect() as conn:
            return [StoredEvent(float(r.start_s), float(r.end_s), r.kind, r.reason) for r in conn.execute(query)]

    def count(self, series_id: int) -> int:
        """Number of stored cells of a series (for tests and the benchmark)."""
        with self.reads.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(energy_rollups).where(and_(energy_rollups.c.series_id == series_id))).scalar() or 0)


def _cells(rows: list) -> Cells:  # type: ignore[type-arg]
    """Cells from rows of (cell_s, energy, covered, import, export, count, peak or None)."""
    cols = list(zip(*rows, strict=True)) if rows else [()] * 7
    return Cells(
        np.array(cols[0], dtype=np.int64),
        *(np.array(col, dtype=np.float64) for col in cols[1:5]),
        np.array(cols[5], dtype=np.int64),
        np.array([np.nan if v is None else v for v in cols[6]], dtype=np.float64),
    )
