"""The batching writer: validated MQTT messages in, committed readings and dead letters out, then acknowledged.

At-least-once end to end: a message's acknowledgement (``ack``, the MQTT PUBACK) is sent only
after its readings are committed or it is dead-lettered. Storage is idempotent on
``(series, ts)``, so a redelivered or duplicated message is stored once.

* Batches are flushed when they hold ``max_batch_readings`` readings or ``max_batch_messages``
  messages, or ``max_age_s`` after their first message, so latency stays bounded.
* The queue is bounded (``queue_size`` messages): :meth:`BatchingWriter.submit` blocks when it
  is full, which stops the MQTT network loop from reading and pushes back on the broker. With
  MQTT v5 the broker also never has more than the client's *receive maximum* unacknowledged
  messages out, so memory stays flat under a burst; the backlog waits at the broker.
* A storage failure that looks transient (connection refused or lost, database locked) is
  retried with exponential backoff (0.2 s doubling to 10 s) while messages wait unacknowledged;
  nothing is lost or acknowledged early. Any other failure of a batch is narrowed down message
  by message, and a message that still fails is dead-lettered (``storage_error``): the consumer
  never dies on one bad message.
* Messages of unknown assets are dead-lettered (``unknown_asset``) unless ``auto_register``,
  which registers the asset (and a ``dt/`` topic's site, with timezone UTC) first.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import psycopg
from sqlalchemy import exc as sa_exc

from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.domain.dead_letters import DeadLetter
from digitaltwin.domain.errors import ConflictError
from digitaltwin.domain.readings import Reading
from digitaltwin.ingest.mqtt_payload import DecodedMessage, MachineStatus
from digitaltwin.ingest.mqtt_topics import Route, TopicKind
from digitaltwin.observability.metrics import Metrics
from digitaltwin.storage.repository import Repository

log = logging.getLogger(__name__)

#: Storage errors worth retrying: the database is unreachable or busy, not the data wrong.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sqlite3.OperationalError,
    ConnectionError,
    TimeoutError,
)
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 10.0

_T = TypeVar("_T")


@dataclass(slots=True)
class Envelope:
    """A decoded message waiting for its commit, and how to acknowledge it (None for QoS 0)."""

    message: DecodedMessage
    ack: Callable[[], None] | None = None


@dataclass(frozen=True, slots=True)
class Flush:
    """One committed batch, handed to listeners (the live state, benchmarks).

    Attributes:
        readings: readings of the batch (duplicates of stored ones included).
        stored: how many were new.
        statuses: machine states reported in the batch.
        dead_letters: what was rejected.
        messages: messages acknowledged.
        committed_at: UTC instant of the commit.
    """

    readings: list[Reading]
    stored: int
    statuses: list[MachineStatus]
    dead_letters: list[DeadLetter]
    messages: int
    committed_at: datetime


class BatchingWriter:
    """Writes validated messages in batches on its own thread (see the module docstring).

    Args:
        repo: storage.
        metrics: where to count (optional).
        auto_register: register unknown assets instead of dead-lettering their messages.
        listeners: called with each :class:`Flush` after the commit (exceptions are logged).
        max_batch_readings, max_batch_messages: flush when a batch reaches either.
        max_age_s: flush at the latest this many seconds after the batch's first message.
        queue_size: messages held before :meth:`submit` blocks.
    """

    def __init__(
        self,
        repo: Repository,
        *,
        metrics: Metrics | None = None,
        auto_register: bool = False,
        listeners: Sequence[Callable[[Flush], None]] = (),
        max_batch_readings: int = 10_000,
        max_batch_messages: int = 2_000,
        max_age_s: float = 0.05,
        queue_size: int = 10_000,
    ) -> None:
        self.repo = repo
        self.metrics = metrics
        self.auto_register = auto_register
        self.listeners = list(listeners)
        self.max_batch_readings = max_batch_readings
        self.max_batch_messages = max_batch_messages
        self.max_age_s = max_age_s
        self._queue: queue.Queue[Envelope] = queue.Queue(queue_size)
        self._asset_sites: dict[str, str] = {}
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        self.flushes = 0

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer thread."""
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self._thread.start()

    def stop(self, *, timeout_s: float = 30.0) -> None:
        """Commit and acknowledge what is queued, then stop; after ``timeout_s`` give up
        without acknowledging (those messages are redelivered to the next consumer)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                self._abort.set()
                self._thread.join(RETRY_MAX_S + 5)

    def submit(self, envelope: Envelope) -> None:
        """Queue a message for the next batch; blocks while the queue is full (backpressure)."""
        if self.metrics is not None:
            self.metrics.mqtt_messages_received.inc()
            self.metrics.ingest_queue_depth.inc()
        self._queue.put(envelope)

    @property
    def depth(self) -> int:
        """Messages queued and not yet taken into a batch."""
        return self._queue.qsize()

    # -- the loop -----------------------------------------------------------------------
    def _run(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            try:
                first = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            batch = [first]
            readings = len(first.message.readings)
            deadline = time.monotonic() + self.max_age_s
            while readings < self.max_batch_readings and len(batch) < self.max_batch_messages:
                remaining = deadline - time.monotonic()
                try:
                    envelope = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(envelope)
                readings += len(envelope.message.readings)
            try:
                self._flush(batch)
            except _Aborted:
                log.warning("writer stopped with %d message(s) uncommitted; the broker redelivers them", len(batch))
                return
            except Exception:  # noqa: BLE001 - the consumer must not die
                log.exception("unexpected failure flushing %d message(s); they stay unacknowledged", len(batch))

    def _flush(self, batch: list[Envelope]) -> None:
        started = time.perf_counter()
        messages = [e.message for e in batch]
        self._resolve_assets(messages)
        readings = [r for m in messages for r in m.readings]
        stored, letters = self._write(messages, readings)
        committed_at = datetime.now(UTC)
        for envelope in batch:
            if envelope.ack is not None:
                envelope.ack()
        self.flushes += 1
        statuses = [s for m in messages for s in m.statuses]
        flush = Flush(readings, stored, statuses, letters, len(batch), committed_at)
        self._observe(flush, time.perf_counter() - started)
        for listener in self.listeners:
            try:
                listener(flush)
            except Exception:  # noqa: BLE001 - a listener (e.g. Redis down) never stops ingestion
                log.exception("flush listener %r failed", listener)

    def _observe(self, flush: Flush, duration_s: float) -> None:
        if self.metrics is None:
            return
        m = self.metrics
        m.ingest_flush_duration.observe(duration_s)
        m.mqtt_messages_stored.inc(flush.messages)
        m.ingest_queue_depth.dec(flush.messages)
        m.readings_stored.labels("mqtt").inc(flush.stored)
        for letter in flush.dead_letters:
            m.mqtt_dead_letters.labels(letter.reason_code).inc()
        if flush.dead_letters:
            m.readings_rejected.labels("mqtt").inc(len(flush.dead_letters))
        now = flush.committed_at
        for reading in flush.readings:
            m.ingest_lag.observe(max((now - reading.ts).total_seconds(), 0.0))

    # -- assets -------------------------------------------------------------------------
    def _resolve_assets(self, messages: list[DecodedMessage]) -> None:
        """Dead-letter (or register) the readings of unknown assets and of a site that does not match."""
        wanted = {m.route.asset_id for m in messages if m.route is not None and m.readings}
        missing = wanted - self._asset_sites.keys()
        if missing:
            self._asset_sites.update(self._retry(lambda: self.repo.asset_sites(missing)))
        for m in messages:
            if m.route is None or not m.readings:
                continue
            asset_id = m.route.asset_id
            if asset_id not in self._asset_sites and self.auto_register:
                self._retry(lambda route=m.route: self._register(route))
            site_id = self._asset_sites.get(asset_id)
            if site_id is None:
                m.reject(field="asset_id", reason=f"unknown asset {asset_id!r} (auto-registration is off)", code="unknown_asset")
            elif m.route.kind is TopicKind.TELEMETRY and m.route.site_id != site_id:
                m.reject(
                    field="site_id", reason=f"asset {asset_id!r} belongs to site {site_id!r}, not {m.route.site_id!r}",
                    code="site_mismatch",
                )
            else:
                continue
            m.readings, m.statuses = [], []

    def _register(self, route: Route) -> None:
        site_id = route.site_id if route.kind is TopicKind.TELEMETRY else route.line
        assert site_id is not None
        known_sites = {s.id for s in self.repo.list_sites()}
        if site_id not in known_sites:
            try:
                self.repo.create_site(Site(site_id, site_id, "UTC"))
                log.warning("registered site %r from MQTT with timezone UTC; set its timezone", site_id)
            except ConflictError:
                pass
        kind = AssetKind.MACHINE if route.kind is TopicKind.FACTORY_POWER else AssetKind.METER
        attributes = {"registered_by": "mqtt"} | ({"line": route.line} if route.line else {})
        try:
            self.repo.create_asset(Asset(route.asset_id, site_id, route.asset_id, kind, attributes=attributes))
            log.info("registered asset %r (%s) on site %r from MQTT", route.asset_id, kind.value, site_id)
        except ConflictError:
            pass
        self._asset_sites.update(self.repo.asset_sites([route.asset_id]))

    # -- storage ------------------------------------------------------------------------
    def _retry(self, action: Callable[[], _T]) -> _T:
        """Run ``action``, retrying transient storage failures with backoff until it succeeds or the writer aborts."""
        delay = RETRY_FIRST_S
        while True:
            try:
                return action()
            except TRANSIENT_ERRORS as exc:
                if self._abort.is_set():
                    raise _Aborted from exc
                log.warning("storage unavailable (%s: %s); retrying in %.1f s", type(exc).__name__, str(exc)[:200], delay)
                if self.metrics is not None:
                    self.metrics.ingest_retries.inc()
                if self._abort.wait(delay):
                    raise _Aborted from exc
                delay = min(delay * 2, RETRY_MAX_S)

    def _write(self, messages: list[DecodedMessage], readings: list[Reading]) -> tuple[int, list[DeadLetter]]:
        """Store the readings, then the dead letters; returns (new readings, dead letters)."""
        try:
            stored = self._retry(lambda: self.repo.write_readings(readings))
        except _Aborted:
            raise
        except Exception as exc:  # noqa: BLE001 - narrow the failure down to the messages causing it
            log.warning("batch write failed (%s); writing its %d message(s) one by one", exc, len(messages))
            stored = 0
            for m in messages:
                try:
                    stored += self._retry(lambda m=m: self.repo.write_readings(m.readings))
                except _Aborted:
                    raise
                except Exception as one:  # noqa: BLE001
                    m.reject(field=None, reason=f"storage error: {type(one).__name__}: {one}"[:500], code="storage_error")
                    m.readings, m.statuses = [], []
        letters = [d for m in messages for d in m.dead_letters]
        self._retry(lambda: self.repo.write_dead_letters(letters))
        return stored, letters


class _Aborted(Exception):
    """The writer was told to stop while storage was unavailable."""
