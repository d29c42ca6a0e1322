"""Versioned schedules of a site's flexible assets (the ``schedules`` table).

A schedule is written once and never changed, except for the record of its publication;
each new solve for a site gets the next version, and the newest version is the one in force.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError

from digitaltwin.domain.errors import NotFoundError
from digitaltwin.storage.tables import schedules

#: Attempts at taking the next version when two solves of one site commit at once.
_VERSION_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    """A stored schedule.

    Attributes:
        plan: per-step arrays and the cost breakdown (see ``services.scheduling``).
        published: what was published where (MQTT topics and their outcome).
    """

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
    plan: dict[str, Any]
    published: dict[str, Any]


def _record(row: Any) -> ScheduleRecord:
    return ScheduleRecord(
        id=row.id, site_id=row.site_id, version=row.version, created_at=row.created_at, created_by=row.created_by,
        start=row.start, step_seconds=row.step_seconds, steps=row.steps, mode=row.mode, request=row.request,
        plan=row.plan, published=row.published,
    )


class ScheduleStore:
    """Reads and writes ``schedules`` on the engine's database (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, *, site_id: str, created_by: str | None, start: datetime, step_seconds: int, steps: int,
            mode: str, request: dict[str, Any], plan: dict[str, Any]) -> ScheduleRecord:
        """Store a new version of ``site_id``'s schedule and return it."""
        for _ in range(_VERSION_ATTEMPTS):
            try:
                with self.engine.begin() as conn:
                    latest = conn.execute(
                        select(func.max(schedules.c.version)).where(schedules.c.site_id == site_id)
                    ).scalar()
                    values = {
                        "id": uuid.uuid4().hex, "site_id": site_id, "version": int(latest or 0) + 1,
                        "created_at": datetime.now(UTC), "created_by": created_by, "start": start,
                        "step_seconds": step_seconds, "steps": steps, "mode": mode, "request": request,
                        "plan": plan, "published": {},
                    }
                    conn.execute(schedules.insert().values(**values))
                return self.get(values["id"])
            except IntegrityError:
                continue  # another solve took this version; take the next
        raise RuntimeError(f"could not store a schedule version for site {site_id!r}")

    def mark_published(self, schedule_id: str, published: dict[str, Any]) -> None:
        """Record where the schedule was published and with what outcome."""
        with self.engine.begin() as conn:
            conn.execute(schedules.update().where(schedules.c.id == schedule_id).values(published=published))

    def get(self, schedule_id: str) -> ScheduleRecord:
        """Raises NotFoundError naming ``schedule_id``."""
        with self.engine.connect() as conn:
            row = conn.execute(select(schedules).where(schedules.c.id == schedule_id)).first()
        if row is None:
            raise NotFoundError("schedule not found", field="schedule_id")
        return _record(row)

    def list(self, site_id: str, *, limit: int = 50) -> list[ScheduleRecord]:
        """The site's schedules, newest version first."""
        query = (select(schedules).where(schedules.c.site_id == site_id)
                 .order_by(schedules.c.version.desc()).limit(limit))
        with self.engine.connect() as conn:
            return [_record(row) for row in conn.execute(query)]

    def latest(self, site_id: str) -> ScheduleRecord | None:
        """The schedule in force for ``site_id`` (its newest version), or None."""
        found = self.list(site_id, limit=1)
        return found[0] if found else None

    def sites_with_schedules(self) -> list[str]:
        """Ids of the sites that have at least one schedule (the re-planning loop's work list)."""
        with self.engine.connect() as conn:
            return [row[0] for row in conn.execute(select(schedules.c.site_id).distinct())]
