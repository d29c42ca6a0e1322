"""The batching writer: validated MQTT messages in, committed readings and dead letters out, then acknowledged.

At-least-once end to end: a message's acknowledgement (``ack``, the MQTT PUBACK) is sent only
after its readings are committed or it is dead-lettered. Storage is idempotent on
``(series, ts)``, so a redelivered or duplicated message is stored once.

* Batches are flushed when they hold ``max_batch_readings`` readings or ``max_batch_messages``
  messages, or ``max_age_s`` after their first message, so latency stays bounded.
* ``threads`` writer threads (2 by default), so that one batch is gathered and committed while
  another waits for PostgreSQL or Redis. Batches are gathered one at a time, in queue order,
  and the listeners (live state, stream) hear of them in that order, so the stream keeps the
  order of arrival; commits themselves may overlap (storage is idempotent).
* The queue is bounded (``queue_size`` messages): :meth:`BatchingWriter.submit` blocks when it
  is full, which stops the MQTT network loop from reading and pushes back on the broker. With
  MQTT v5 the broker also never has more than the client's *receive maximum* unacknowledged
  messages out, so memory stays flat under a burst; the backlog waits at the broker.
* A storage failure that looks transient (connection refused or lost, database locked) is
  retried with exponential backoff (0.2 s doubling to 10 s) while messages wait unacknowledged;
  nothing is lost or acknowledged early. Any other failure of a batch is narrowed down message
  by message, and a message that still fails is dead-lettered (``storage_error``): the consumer
  never dies on one bad message.
* Machine states of ``factory/`` messages (RUN/IDLE/STOP) are stored with the batch, the latest
  per asset by event time (:meth:`~digitaltwin.storage.repository.Repository.write_machine_statuses`),
  so they survive a restart without Redis.
* Dead letters are stored after the readings; if the batch's dead letters cannot be stored
  (other than transiently), they are stored one by one and one that still fails is logged and
  counted (``mqtt_dead_letters_unsaved_total``), never blocking the batch's acknowledgement.
  Text is stored with NUL characters replaced (see
  :meth:`~digitaltwin.storage.repository.Repository.write_dead_letters`).
* An item declaring an ``interval`` other than its series', or than the spacing of the stored
  readings of a series that has none recorded, or declaring one without interval energy, is
  dead-lettered naming ``interval`` (as over HTTP); a declared interval is recorded on a series
  that has none yet (:func:`~digitaltwin.ingest.batch.check_declared_interval`).
* Messages of unknown assets are dead-lettered (``unknown_asset``) unless ``auto_register``,
  which registers the asset (and a ``dt/`` topic's site, with timezone UTC) first.
* Per-message work is kept off the hot path (the throughput measured by ``bench/mqtt_ingest.py``):
  acknowledgements go out as one call per batch (``acknowledge``), and metrics are updated
  once per batch, not per message or reading: received messages and the queue depth from a
  plain counter, the ingest lag histogram with the bucket counts of the whole batch
  (:func:`observe_many`).
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

import numpy as np
import psycopg
from prometheus_client import Histogram
from sqlalchemy import exc as sa_exc

from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.domain.dead_letters import DeadLetter
from digitaltwin.domain.errors import ConflictError, ValidationError
from digitaltwin.domain.readings import Reading
from digitaltwin.ingest.batch import check_declared_interval
from digitaltwin.ingest.mqtt_payload import DecodedMessage, MachineStatus
from digitaltwin.ingest.mqtt_topics import Route, TopicKind
from digitaltwin.observability.metrics import Metrics
from digitaltwin.services.meter import apply_serials
from digitaltwin.storage.batch_write import Conflict
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
    """A decoded message waiting for its commit, and the key under which the subscriber
    acknowledges it after the commit (None for QoS 0)."""

    message: DecodedMessage
    ack_key: int | None = None


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
        acknowledge: called after each commit with the ``ack_key`` of the batch's QoS 1 and 2
            messages (the subscriber acknowledges them); may also be set after construction.
        threads: writer threads (see the module docstring).
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
        acknowledge: Callable[[list[int]], None] | None = None,
        threads: int = 2,
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
        self.threads = max(1, threads)
        self._threads: list[threading.Thread] = []
        self._counts = threading.Lock()
        self._gather = threading.Lock()  # one thread gathers a batch at a time
        self._turn = threading.Condition()  # listeners run in the order batches were gathered
        self._tickets = 0
        self._heard = 0
        self.acknowledge = acknowledge
        self.flushes = 0
        self._submitted = 0  # written by the submitting thread only; read by the writer for metrics
        self._reported = 0
        self._committed = 0

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer threads."""
        self._threads = [
            threading.Thread(target=self._run, name=f"ingest-writer-{i}", daemon=True) for i in range(self.threads)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, *, timeout_s: float = 30.0) -> None:
        """Commit and acknowledge what is queued, then stop; after ``timeout_s`` give up
        without acknowledging (those messages are redelivered to the next consumer)."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        if any(t.is_alive() for t in self._threads):
            self._abort.set()
            for thread in self._threads:
                thread.join(RETRY_MAX_S + 5)

    def submit(self, envelope: Envelope) -> None:
        """Queue a message for the next batch; blocks while the queue is full (backpressure).

        Call from one thread (the MQTT network loop)."""
        self._submitted += 1
        self._queue.put(envelope)

    @property
    def depth(self) -> int:
        """Messages queued and not yet taken into a batch."""
        return self._queue.qsize()

    # -- the loop -----------------------------------------------------------------------
    def _run(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            with self._gather:
                batch = self._gather_batch()
                if batch is None:
                    continue
                self._tickets += 1
                ticket = self._tickets
            self._report_received()
            try:
                self._flush(batch, ticket)
            except _Aborted:
                log.warning("writer stopped with %d message(s) uncommitted; the broker redelivers them", len(batch))
                self._pass_turn(ticket)
                return
            except Exception:  # noqa: BLE001 - the consumer must not die
                log.exception("unexpected failure flushing %d message(s); they stay unacknowledged", len(batch))
                self._pass_turn(ticket)

    def _gather_batch(self) -> list[Envelope] | None:
        """The next batch (see the module docstring), or None when nothing came within 0.1 s."""
        try:
            first = self._queue.get(timeout=0.1)
        except queue.Empty:
            self._report_received()
            return None
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
        return batch

    def _wait_turn(self, ticket: int) -> None:
        """Wait until the listeners of every batch gathered before this one have run (or the writer aborts)."""
        with self._turn:
            while self._heard < ticket - 1 and not self._abort.is_set():
                self._turn.wait(0.5)

    def _pass_turn(self, ticket: int) -> None:
        """Let the batch gathered after this one have its turn (in order, also after a failure)."""
        self._wait_turn(ticket)
        with self._turn:
            self._heard = max(self._heard, ticket)
            self._turn.notify_all()

    def _flush(self, batch: list[Envelope], ticket: int) -> None:
        started = time.perf_counter()
        messages = [e.message for e in batch]
        self._resolve_assets(messages)
        self._check_intervals(messages)
        readings = [r for m in messages for r in m.readings]
        stored, letters = self._write(messages, readings)
        committed_at = datetime.now(UTC)
        acks = [e.ack_key for e in batch if e.ack_key is not None]
        if acks and self.acknowledge is not None:
            self.acknowledge(acks)
        with self._counts:
            self.flushes += 1
            self._committed += len(batch)
        statuses = [s for m in messages for s in m.statuses]
        flush = Flush(readings, stored, statuses, letters, len(batch), committed_at)
        self._observe(flush, time.perf_counter() - started)
        self._wait_turn(ticket)
        try:
            for listener in self.listeners:
                try:
                    listener(flush)
                except Exception:  # noqa: BLE001 - a listener (e.g. Redis down) never stops ingestion
                    log.exception("flush listener %r failed", listener)
        finally:
            self._pass_turn(ticket)

    def _report_received(self) -> None:
        """Bring ``mqtt_messages_received_total`` and ``ingest_queue_depth`` up to date (writer thread)."""
        if self.metrics is None:
            return
        with self._counts:  # two writer threads report: the count only moves forward
            submitted = self._submitted
            delta = submitted - self._reported
            if delta > 0:
                self._reported = submitted
        if delta > 0:
            self.metrics.mqtt_messages_received.inc(delta)
        self.metrics.ingest_queue_depth.set(submitted - self._committed)

    def _observe(self, flush: Flush, duration_s: float) -> None:
        if self.metrics is None:
            return
        m = self.metrics
        m.ingest_flush_duration.observe(duration_s)
        m.mqtt_messages_stored.inc(flush.messages)
        m.ingest_queue_depth.set(self._submitted - self._committed)
        m.readings_stored.labels("mqtt").inc(flush.stored)
        codes: dict[str, int] = {}
        for letter in flush.dead_letters:
            codes[letter.reason_code] = codes.get(letter.reason_code, 0) + 1
        for code, count in codes.items():
            m.mqtt_dead_letters.labels(code).inc(count)
        if flush.dead_letters:
            m.readings_rejected.labels("mqtt").inc(len(flush.dead_letters))
        if flush.readings:
            now = flush.committed_at.timestamp()
            ts = np.fromiter((r.ts.timestamp() for r in flush.readings), dtype=np.float64, count=len(flush.readings))
            observe_many(m.ingest_lag, np.maximum(now - ts, 0.0))

    # -- assets -------------------------------------------------------------------------
    def _resolve_assets(self, messages: list[DecodedMessage]) -> None:
        """Dead-letter (or register) the readings of unknown assets and of a site that does not match."""
        wanted = {m.route.asset_id for m in messages if m.route is not None and (m.readings or m.statuses)}
        missing = wanted - self._asset_sites.keys()
        if missing:
            self._asset_sites.update(self._retry(lambda: self.repo.asset_sites(missing)))
        for m in messages:
            if m.route is None or not (m.readings or m.statuses):
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
            m.readings, m.statuses, m.declared = [], [], []

    def _check_intervals(self, messages: list[DecodedMessage]) -> None:
        """Dead-letter items whose declared ``interval`` conflicts with their series' (or an earlier
        item's of this batch, or the spacing of its stored readings), naming ``interval``; record it
        on series that have none yet.

        Same rule as HTTP (:func:`~digitaltwin.ingest.batch.check_declared_interval`).
        """
        pending: dict[tuple[str, str], int] = {}
        for m in messages:
            for declared in m.declared:
                try:
                    wanted = self._retry(
                        lambda d=declared: check_declared_interval(self.repo, d.readings, d.seconds, pending)
                    )
                except ValidationError as exc:
                    m.reject(field=exc.field, reason=exc.message, code="invalid_item", item_index=declared.item_index)
                    dropped = {id(r) for r in declared.readings}
                    m.readings = [r for r in m.readings if id(r) not in dropped]
                    continue
                pending.update(wanted)
            m.declared = []
        for (asset_id, quantity), seconds in pending.items():
            self._retry(lambda a=asset_id, q=quantity, s=seconds: self.repo.ensure_series(a, q, interval_seconds=s))

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
            outcome = self._retry(lambda: self.repo.store_readings(readings))
            stored = outcome.stored
            _reject_conflicts(messages, outcome.conflicts)
        except _Aborted:
            raise
        except Exception as exc:  # noqa: BLE001 - narrow the failure down to the messages causing it
            log.warning("batch write failed (%s); writing its %d message(s) one by one", exc, len(messages))
            stored = 0
            for m in messages:
                try:
                    one_outcome = self._retry(lambda m=m: self.repo.store_readings(m.readings))
                    stored += one_outcome.stored
                    _reject_conflicts([m], one_outcome.conflicts)
                except _Aborted:
                    raise
                except Exception as one:  # noqa: BLE001
                    m.reject(field=None, reason=f"storage error: {type(one).__name__}: {one}"[:500], code="storage_error")
                    m.readings, m.statuses = [], []
        kept = {(r.asset_id, r.quantity, r.ts) for m in messages if m.serials for r in m.readings}
        sightings = [s for m in messages for s in m.serials if (s.asset_id, s.quantity, s.ts) in kept]
        if sightings:  # meter serials that changed: replacements (after the readings are committed)
            try:
                self._retry(lambda: apply_serials(self.repo, sightings))
            except _Aborted:
                raise
            except Exception:  # noqa: BLE001 - the readings are committed; a replacement can be posted by hand
                log.exception("recording meter replacements from %d serial(s) failed", len(sightings))
        states = [(s.asset_id, s.status, s.ts) for m in messages for s in m.statuses]
        if states:
            try:
                self._retry(lambda: self.repo.write_machine_statuses(states))
            except _Aborted:
                raise
            except Exception:  # noqa: BLE001 - the readings are committed; the live state still gets the states
                log.exception("storing %d machine state(s) failed", len(states))
        letters = [d for m in messages for d in m.dead_letters]
        self._write_dead_letters(letters)
        return stored, letters

    def _write_dead_letters(self, letters: list[DeadLetter]) -> None:
        """Store the batch's dead letters; one that cannot be stored never blocks the others.

        Transient failures are retried (the batch waits unacknowledged). Any other failure of
        the batch insert is narrowed down letter by letter; a letter that still fails is logged
        (topic, reason, the error) and counted in ``mqtt_dead_letters_unsaved_total``, and its
        message is acknowledged like the others: redelivering it would fail the same way forever.
        """
        try:
            self._retry(lambda: self.repo.write_dead_letters(letters))
            return
        except _Aborted:
            raise
        except Exception as exc:  # noqa: BLE001 - isolate the letter that cannot be stored
            log.warning("storing %d dead letter(s) failed (%s); storing them one by one", len(letters), exc)
        for letter in letters:
            try:
                self._retry(lambda d=letter: self.repo.write_dead_letters([d]))
            except _Aborted:
                raise
            except Exception as one:  # noqa: BLE001
                log.error(
                    "dead letter not stored (%s: %s): topic %r, field %r, reason %r, %d payload bytes",
                    type(one).__name__, str(one)[:300], letter.topic[:200], letter.field, letter.reason[:300],
                    letter.payload_bytes,
                )
                if self.metrics is not None:
                    self.metrics.mqtt_dead_letters_unsaved.inc()


def _reject_conflicts(messages: list[DecodedMessage], conflicts: Sequence[Conflict]) -> None:
    """Dead-letter each reading that was stored before with another value (the stored one stays:
    first write wins), naming its quantity, instant and both values, as HTTP and CSV report them.

    ``conflicts`` index the concatenation of the messages' readings, in order.
    """
    if not conflicts:
        return
    owners = [(m, r) for m in messages for r in m.readings]
    for c in conflicts:
        message, reading = owners[c.position]
        message.reject(
            field=reading.quantity,
            reason=(f"{reading.quantity} of {reading.asset_id} at {reading.ts.isoformat()} is stored as {c.stored_value!r}; "
                    f"{c.new_value!r} was not stored (first write wins: delete the range, then send it again)"),
            code="conflict",
        )


def observe_many(histogram: Histogram, values: np.ndarray) -> None:
    """Observe every value of ``values`` (1-D floats) in an unlabelled prometheus_client histogram.

    Leaves the histogram exactly as ``for v in values: histogram.observe(v)`` would (same
    bucket counts, same sum), with one increment per bucket instead of one locked update per
    value. prometheus_client has no bulk observe, so this adds to its per-bucket values
    (``_buckets``: each observation counts in the first bucket whose upper bound is >= it;
    ``_sum``); ``tests/unit/test_ingest_writer.py`` checks it against ``observe``, so a change of
    those internals fails the tests rather than the metric.
    """
    if values.size == 0:
        return
    bounds = np.asarray(histogram._upper_bounds, dtype=np.float64)  # noqa: SLF001 - see the docstring
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    histogram._sum.inc(float(values.sum()))  # noqa: SLF001
    for bucket, count in zip(histogram._buckets, counts.tolist(), strict=False):  # noqa: SLF001
        if count:
            bucket.inc(count)


class _Aborted(Exception):
    """The writer was told to stop while storage was unavailable."""
