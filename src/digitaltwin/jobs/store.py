"""The ``jobs`` table: the persisted state of every job and, at the same time, the queue.

A job is a row. Workers claim the oldest queued row in one statement; on PostgreSQL the row
is picked with ``SELECT ... FOR UPDATE SKIP LOCKED`` so concurrent workers never wait on one
another, and the host-wide limit (:attr:`JobStore.max_running_per_host`) is checked under a
transaction-scoped advisory lock. On SQLite the whole claim is one ``UPDATE`` statement, which
SQLite runs under its single writer lock. Nothing but this module reads or writes the table.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, func, select, text, update

from digitaltwin.domain.errors import NotFoundError
from digitaltwin.storage.tables import jobs

#: Advisory lock key of the claim on PostgreSQL (any constant shared by every worker).
_CLAIM_LOCK = 0x6A6F6273  # "jobs"


class JobState(StrEnum):
    """Where a job is: ``queued`` -> ``running`` -> ``succeeded`` | ``failed`` | ``cancelled``."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


ACTIVE = (JobState.QUEUED.value, JobState.RUNNING.value)


class JobKind(StrEnum):
    """What a job does (see :mod:`digitaltwin.jobs.run`)."""

    TRAIN = "train"
    BACKTEST = "backtest"


@dataclass(frozen=True, slots=True)
class Job:
    """One job as stored.

    Attributes:
        progress: fraction of the work done, 0..1 (fits done over fits planned).
        params: what the job was asked to do (the request's body, validated).
        result: what it produced (ids of the stored model or backtest ...) once succeeded.
        error: ``{"detail": ..., "field": ...}`` once failed (the API's error shape).
        attempts: how many times a worker started it (a job lost with its process runs again).
        worker_id: ``host/pid`` of the process running (or last running) it.
    """

    id: str
    kind: JobKind
    asset_id: str
    requested_by: str | None
    state: JobState
    progress: float
    params: dict[str, Any]
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    cancel_requested: bool
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    worker_id: str | None
    worker_host: str | None


def _job(row: Any) -> Job:
    data = dict(row._mapping)
    data["kind"] = JobKind(data["kind"])
    data["state"] = JobState(data["state"])
    data["cancel_requested"] = bool(data["cancel_requested"])
    return Job(**data)


def _now() -> datetime:
    return datetime.now(UTC)


class JobStore:
    """Reads and writes of the ``jobs`` table.

    Args:
        engine: the product's database.
        max_running_per_host: jobs running at once on one host (``JOBS_MAX_CONCURRENT``); a
            claim on a host already running that many returns nothing.
    """

    def __init__(self, engine: Engine, *, max_running_per_host: int = 2) -> None:
        self.engine = engine
        self.max_running_per_host = max_running_per_host

    # ------------------------------------------------------------------ create / read
    def insert(self, kind: JobKind, asset_id: str, params: dict[str, Any], *, requested_by: str | None) -> Job:
        """Store a new queued job and return it."""
        values = {
            "id": uuid.uuid4().hex, "kind": kind.value, "asset_id": asset_id, "requested_by": requested_by,
            "state": JobState.QUEUED.value, "progress": 0.0, "params": params, "result": None, "error": None,
            "cancel_requested": False, "attempts": 0, "created_at": _now(),
            "started_at": None, "finished_at": None, "heartbeat_at": None, "worker_id": None, "worker_host": None,
        }
        with self.engine.begin() as conn:
            conn.execute(jobs.insert().values(**values))
        return self.get(values["id"])

    def get(self, job_id: str) -> Job:
        """The job ``job_id``.

        Raises:
            NotFoundError: naming ``job_id``.
        """
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
        if row is None:
            raise NotFoundError(f"no job {job_id!r}", field="job_id")
        return _job(row)

    def list(
        self, *, asset_id: str | None = None, state: JobState | None = None, requested_by: str | None = None, limit: int = 100
    ) -> list[Job]:
        """Jobs, newest first, filtered by asset, state and requester when given."""
        query = select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id).limit(limit)
        if asset_id is not None:
            query = query.where(jobs.c.asset_id == asset_id)
        if state is not None:
            query = query.where(jobs.c.state == state.value)
        if requested_by is not None:
            query = query.where(jobs.c.requested_by == requested_by)
        with self.engine.connect() as conn:
            return [_job(row) for row in conn.execute(query)]

    def count_active(self, *, asset_id: str | None = None, requested_by: str | None = None, kind: JobKind | None = None) -> int:
        """Queued or running jobs of an asset, a requester and/or a kind."""
        query = select(func.count()).select_from(jobs).where(jobs.c.state.in_(ACTIVE))
        if asset_id is not None:
            query = query.where(jobs.c.asset_id == asset_id)
        if requested_by is not None:
            query = query.where(jobs.c.requested_by == requested_by)
        if kind is not None:
            query = query.where(jobs.c.kind == kind.value)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def counts(self) -> dict[tuple[str, str], int]:
        """Queued and running jobs by ``(kind, state)``."""
        query = (
            select(jobs.c.kind, jobs.c.state, func.count()).where(jobs.c.state.in_(ACTIVE)).group_by(jobs.c.kind, jobs.c.state)
        )
        with self.engine.connect() as conn:
            return {(kind, state): int(n) for kind, state, n in conn.execute(query)}

    # ------------------------------------------------------------------ the queue
    def claim(self, worker_id: str, host: str, *, kinds: Sequence[JobKind] | None = None) -> Job | None:
        """Take the oldest queued job for ``worker_id`` (state running, attempts + 1), or None.

        None also when ``host`` already runs :attr:`max_running_per_host` jobs.
        """
        now = _now()
        queued = select(jobs.c.id).where(jobs.c.state == JobState.QUEUED.value)
        if kinds:
            queued = queued.where(jobs.c.kind.in_([k.value for k in kinds]))
        queued = queued.order_by(jobs.c.created_at, jobs.c.id).limit(1)
        running_here = (
            select(func.count()).select_from(jobs)
            .where(jobs.c.state == JobState.RUNNING.value, jobs.c.worker_host == host)
            .scalar_subquery()
        )
        with self.engine.connect() as conn:  # idle runners poll: a read first, no write lock when nothing waits
            if conn.execute(queued).first() is None:
                return None
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CLAIM_LOCK})
                queued = queued.with_for_update(skip_locked=True)
            statement = (
                update(jobs)
                .where(jobs.c.id == queued.scalar_subquery(), jobs.c.state == JobState.QUEUED.value)
                .where(running_here < self.max_running_per_host)
                .values(
                    state=JobState.RUNNING.value, started_at=now, heartbeat_at=now, worker_id=worker_id,
                    worker_host=host, attempts=jobs.c.attempts + 1,
                )
                .returning(jobs.c.id)
            )
            job_id = conn.execute(statement).scalar()
        return None if job_id is None else self.get(job_id)

    def checkpoint(self, job_id: str, progress: float) -> bool:
        """Record ``progress`` (0..1) and a heartbeat of a running job; True when its cancellation is requested.

        Also True when the job is no longer running (cancelled, or taken over after being lost):
        its worker must stop.
        """
        with self.engine.begin() as conn:
            conn.execute(
                update(jobs).where(jobs.c.id == job_id, jobs.c.state == JobState.RUNNING.value)
                .values(progress=max(0.0, min(1.0, progress)), heartbeat_at=_now())
            )
            row = conn.execute(select(jobs.c.state, jobs.c.cancel_requested).where(jobs.c.id == job_id)).first()
        return row is None or row.state != JobState.RUNNING.value or bool(row.cancel_requested)

    def heartbeat(self, job_ids: Sequence[str], worker_id: str) -> None:
        """Mark the running jobs ``job_ids`` of ``worker_id`` alive."""
        if not job_ids:
            return
        with self.engine.begin() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.id.in_(list(job_ids)), jobs.c.worker_id == worker_id, jobs.c.state == JobState.RUNNING.value)
                .values(heartbeat_at=_now())
            )

    def finish(
        self, job_id: str, worker_id: str, state: JobState, *, result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> bool:
        """Record the end of a job run by ``worker_id``; False when it was no longer its job."""
        values: dict[str, Any] = {"state": state.value, "finished_at": _now(), "result": result, "error": error}
        if state is JobState.SUCCEEDED:
            values["progress"] = 1.0
        with self.engine.begin() as conn:
            done = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.worker_id == worker_id, jobs.c.state == JobState.RUNNING.value)
                .values(**values)
            )
        return done.rowcount == 1

    def requeue(self, job_id: str, worker_id: str) -> bool:
        """Put a job that ``worker_id`` stopped without finishing (a shutdown) back in the queue;
        the interrupted run does not count as an attempt."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.worker_id == worker_id, jobs.c.state == JobState.RUNNING.value)
                .values(state=JobState.QUEUED.value, progress=0.0, heartbeat_at=None, attempts=jobs.c.attempts - 1)
            )
        return done.rowcount == 1

    def request_cancel(self, job_id: str) -> Job:
        """Cancel a job: a queued one at once; a running one is asked to stop (its worker sees the
        request at its next checkpoint and marks it cancelled); a finished one is left as it is."""
        now = _now()
        with self.engine.begin() as conn:
            conn.execute(
                update(jobs).where(jobs.c.id == job_id, jobs.c.state == JobState.QUEUED.value)
                .values(state=JobState.CANCELLED.value, cancel_requested=True, finished_at=now)
            )
            conn.execute(
                update(jobs).where(jobs.c.id == job_id, jobs.c.state == JobState.RUNNING.value).values(cancel_requested=True)
            )
        return self.get(job_id)

    def running_on(self, host: str) -> list[tuple[str, str]]:
        """``(job id, worker id)`` of the jobs running on ``host``."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(jobs.c.id, jobs.c.worker_id).where(jobs.c.state == JobState.RUNNING.value, jobs.c.worker_host == host)
            ).all()
        return [(row.id, row.worker_id) for row in rows]

    def recover_stale(
        self, stale_after: timedelta, max_attempts: int, *, dead_workers: Sequence[str] = ()
    ) -> tuple[list[str], list[str]]:
        """Running jobs whose heartbeat is older than ``stale_after``, or whose worker is one of
        ``dead_workers``, lost their process (killed, host down): queue those run fewer than
        ``max_attempts`` times again and fail the others. A lost job whose cancellation was
        requested is cancelled.

        Returns:
            The ids re-queued and the ids failed or cancelled.
        """
        limit = _now() - stale_after
        lost = (jobs.c.state == JobState.RUNNING.value) & (
            (jobs.c.heartbeat_at < limit) | jobs.c.worker_id.in_(list(dead_workers))
        )
        with self.engine.begin() as conn:
            rows = conn.execute(select(jobs.c.id, jobs.c.attempts, jobs.c.cancel_requested).where(lost)).all()
            requeued, ended = [], []
            for row in rows:
                this = (jobs.c.id == row.id) & lost  # unchanged since read (another runner may recover it too)
                if row.cancel_requested:
                    values: dict[str, Any] = {"state": JobState.CANCELLED.value, "finished_at": _now()}
                elif row.attempts < max_attempts:
                    values = {"state": JobState.QUEUED.value, "progress": 0.0, "heartbeat_at": None}
                else:
                    values = {
                        "state": JobState.FAILED.value, "finished_at": _now(),
                        "error": {"detail": f"the worker running it stopped ({row.attempts} attempts)", "field": None},
                    }
                if conn.execute(update(jobs).where(this).values(**values)).rowcount == 1:
                    (requeued if values["state"] == JobState.QUEUED.value else ended).append(row.id)
        return requeued, ended
