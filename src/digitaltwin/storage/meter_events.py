"""Meter replacements of counter series (table ``meter_events``) and fresh series attributes.

Kept apart from :mod:`digitaltwin.storage.repository` (one aggregate per module); reads go to the
database every time, so a replacement or declaration made through one API worker is seen by all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from digitaltwin.storage.db import read_engine
from digitaltwin.storage.tables import meter_events, series


@dataclass(frozen=True, slots=True)
class StoredReplacement:
    """A meter replacement as stored: the old meter's final and the new meter's first reading (kWh, UTC)."""

    id: int
    series_id: int
    old_ts: datetime
    old_value_kwh: float
    new_ts: datetime
    new_value_kwh: float
    old_serial: str | None
    new_serial: str | None
    source: str
    created_by: str | None
    created_at: datetime


class MeterEventStore:
    """Reads and writes ``meter_events`` and the ``attributes`` of series.

    Args:
        engine: a SQLAlchemy engine migrated to head.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.reads = read_engine(engine)  # the one-statement reads below: no BEGIN/ROLLBACK round trips

    def add_replacement(
        self,
        series_id: int,
        *,
        old: tuple[datetime, float],
        new: tuple[datetime, float],
        old_serial: str | None = None,
        new_serial: str | None = None,
        source: str = "api",
        created_by: str | None = None,
        serial_attribute: str | None = None,
    ) -> StoredReplacement:
        """Store a replacement; with ``serial_attribute`` the series' ``meter_serial`` is set in the same transaction."""
        values = {
            "series_id": series_id, "kind": "replacement", "old_ts": old[0], "old_value_kwh": old[1],
            "new_ts": new[0], "new_value_kwh": new[1], "old_serial": old_serial, "new_serial": new_serial,
            "source": source, "created_by": created_by, "created_at": datetime.now(UTC),
        }
        with self.engine.begin() as conn:
            new_id = conn.execute(meter_events.insert().values(**values)).inserted_primary_key[0]
            if serial_attribute is not None:
                current = conn.execute(select(series.c.attributes).where(series.c.id == series_id)).scalar()
                attributes = dict(current or {}) | {"meter_serial": serial_attribute}
                conn.execute(series.update().where(series.c.id == series_id).values(attributes=attributes))
        del values["kind"]
        return StoredReplacement(id=int(new_id), **values)  # type: ignore[arg-type]

    def replacements(self, series_id: int) -> list[StoredReplacement]:
        """Replacements of a series, oldest first (by the old meter's final reading)."""
        query = select(meter_events).where(meter_events.c.series_id == series_id, meter_events.c.kind == "replacement")
        with self.reads.connect() as conn:
            rows = conn.execute(query.order_by(meter_events.c.old_ts, meter_events.c.id)).all()
        return [
            StoredReplacement(
                r.id, r.series_id, r.old_ts, r.old_value_kwh, r.new_ts, r.new_value_kwh,
                r.old_serial, r.new_serial, r.source, r.created_by, r.created_at,
            )
            for r in rows
        ]

    def replacements_many(self, series_ids: Iterable[int]) -> dict[int, list[StoredReplacement]]:
        """:meth:`replacements` of many series in one query (series without any map to an empty list)."""
        wanted = sorted(set(series_ids))
        out: dict[int, list[StoredReplacement]] = {sid: [] for sid in wanted}
        if not wanted:
            return out
        query = select(meter_events).where(meter_events.c.series_id.in_(wanted), meter_events.c.kind == "replacement")
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(meter_events.c.series_id, meter_events.c.old_ts, meter_events.c.id)).all()
        for r in rows:
            out[r.series_id].append(StoredReplacement(
                r.id, r.series_id, r.old_ts, r.old_value_kwh, r.new_ts, r.new_value_kwh,
                r.old_serial, r.new_serial, r.source, r.created_by, r.created_at,
            ))
        return out

    def series_attributes_many(self, series_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """:meth:`series_attributes` of many series in one query (unknown ids are left out)."""
        wanted = sorted(set(series_ids))
        if not wanted:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(series.c.id, series.c.attributes).where(series.c.id.in_(wanted))).all()
        return {r.id: dict(r.attributes or {}) for r in rows}

    def series_attributes(self, series_id: int) -> dict[str, Any]:
        """The declared attributes of a series, read now (not from a cache)."""
        with self.reads.connect() as conn:
            value = conn.execute(select(series.c.attributes).where(series.c.id == series_id)).scalar()
        return dict(value or {})
