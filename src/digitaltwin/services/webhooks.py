"""Alarm notifications to webhooks: signed, retried with backoff, recorded, never blocking detection.

Detection only puts a delivery on a bounded in-process queue (:meth:`WebhookNotifier.notify`);
``threads`` worker threads record it (``alarm_notifications``, result ``pending``), POST it and
record the outcome. A delivery that fails (connection error, timeout, a non-2xx answer) is
retried after ``backoff_s``, doubling each time, up to ``max_attempts`` attempts in all; then
it is recorded as ``failed``. Retries wait on a timer heap, so one slow or dead receiver never
holds up the deliveries to others. When the queue is full a delivery is dropped, logged and
counted as ``failed`` rather than making detection wait.

Signing (the scheme of Stripe's and GitHub's webhooks, HMAC-SHA256 of RFC 2104 / FIPS 198-1)::

    X-DT-Timestamp: <unix seconds of this attempt>
    X-DT-Signature: t=<same timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>

A receiver recomputes the HMAC over the raw body bytes with its copy of the secret, compares
in constant time and rejects timestamps older than a few minutes (replays). Each delivery also
carries ``X-DT-Event`` (``alarm.raised`` ...) and ``X-DT-Delivery`` (the notification id).

Before each attempt the URL's host is checked against the target policy
(:mod:`.webhook_targets`): an address webhooks may not reach fails the delivery at once, without
retries, and the record says why.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import orjson

from digitaltwin.monitoring.alarms import Alarm
from digitaltwin.observability.metrics import Metrics
from digitaltwin.services.webhook_targets import ForbiddenTarget, TargetPolicy
from digitaltwin.storage.monitoring_store import MonitoringStore, Webhook

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-DT-Signature"
TIMESTAMP_HEADER = "X-DT-Timestamp"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-DT-Signature`` value of ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, *, now: float | None = None, tolerance_s: float = 300.0) -> bool:
    """True when ``header`` (an ``X-DT-Signature``) signs ``body`` with ``secret`` within ``tolerance_s`` of ``now``;
    what a receiver does (and what the tests check)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


def alarm_payload(alarm: Alarm, event: str) -> dict[str, object]:
    """The JSON body of an alarm notification and of its stream event: the alarm plus ``event``."""

    def ts(value: datetime | None) -> str | None:
        return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")

    return {
        "event": event, "alarm_id": alarm.id, "asset_id": alarm.asset_id, "site_id": alarm.site_id, "type": alarm.type,
        "severity": alarm.severity.value, "state": alarm.state.value, "started_at": ts(alarm.started_at),
        "last_seen_at": ts(alarm.last_seen_at), "score": alarm.score, "evidence": alarm.evidence,
        "acknowledged_at": ts(alarm.acknowledged_at), "acknowledged_by": alarm.acknowledged_by,
        "acknowledged_comment": alarm.acknowledged_comment, "cleared_at": ts(alarm.cleared_at),
        "cleared_by": alarm.cleared_by, "cleared_comment": alarm.cleared_comment,
    }


@dataclass(slots=True)
class _Delivery:
    webhook: Webhook
    alarm_id: int
    event: str
    body: bytes
    notification_id: int | None = None
    attempts: int = 0


class WebhookNotifier:
    """Delivers alarm events to the matching webhooks from worker threads (see the module docstring).

    Args:
        store: where webhooks and delivery records live.
        metrics: ``alarm_notifications_total{result}`` (delivered, retried, failed).
        max_attempts: attempts per delivery (>= 1).
        backoff_s: wait before the first retry; doubles after each.
        timeout_s: per attempt.
        targets: which addresses deliveries may reach; public addresses only by default.
        webhooks_ttl_s: how long the list of webhooks is cached.
    """

    def __init__(self, store: MonitoringStore, *, metrics: Metrics | None = None, max_attempts: int = 5,
                 backoff_s: float = 1.0, timeout_s: float = 5.0, threads: int = 2, queue_size: int = 10_000,
                 webhooks_ttl_s: float = 10.0, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 targets: TargetPolicy | None = None) -> None:
        self.store, self.metrics, self.clock = store, metrics, clock
        self.targets = targets or TargetPolicy()
        self.max_attempts, self.backoff_s, self.timeout_s = max(1, max_attempts), backoff_s, timeout_s
        self._incoming: queue.Queue[_Delivery] = queue.Queue(queue_size)
        self._retries: list[tuple[float, int, _Delivery]] = []
        self._seq = itertools.count()
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, name=f"webhooks-{i}", daemon=True) for i in range(threads)]
        self._hooks: list[Webhook] = []
        self._hooks_at = -1e9
        self._ttl = webhooks_ttl_s
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False)
        self._busy = 0

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, *, timeout_s: float = 5.0) -> None:
        """Stop the workers (pending retries are dropped; their records stay ``pending``)."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout_s)
        self._client.close()

    def invalidate(self) -> None:
        """Re-read the webhooks on the next notification (after one was added or deleted)."""
        self._hooks_at = -1e9

    def _webhooks(self) -> list[Webhook]:
        if time.monotonic() - self._hooks_at > self._ttl:
            self._hooks = self.store.list_webhooks()
            self._hooks_at = time.monotonic()
        return self._hooks

    def notify(self, alarm: Alarm, event: str) -> int:
        """Queue ``event`` (raised, escalated, acknowledged, cleared) of ``alarm`` for every matching
        webhook; returns how many were queued. Never raises, never waits."""
        try:
            hooks = [h for h in self._webhooks() if h.wants(alarm)]
        except Exception:  # noqa: BLE001 - storage down: detection goes on, the notification is lost and logged
            log.exception("cannot read webhooks; alarm %s %s not notified", alarm.id, event)
            return 0
        if not hooks or alarm.id is None:
            return 0
        body = orjson.dumps(alarm_payload(alarm, event))
        queued = 0
        for hook in hooks:
            try:
                self._incoming.put_nowait(_Delivery(hook, alarm.id, event, body))
                queued += 1
            except queue.Full:
                log.error("webhook queue full: alarm %s %s to webhook %s dropped", alarm.id, event, hook.id)
                self._count("failed")
        with self._wake:
            self._wake.notify()
        return queued

    def idle(self) -> bool:
        """Nothing queued, waiting for a retry or being delivered (for tests and benchmarks)."""
        with self._wake:
            return self._incoming.empty() and not self._retries and self._busy == 0

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.alarm_notifications.labels(result).inc()

    def _next(self) -> _Delivery | None:
        with self._wake:
            while not self._stop.is_set():
                try:
                    delivery = self._incoming.get_nowait()
                    self._busy += 1
                    return delivery
                except queue.Empty:
                    pass
                now = time.monotonic()
                if self._retries and self._retries[0][0] <= now:
                    self._busy += 1
                    return heapq.heappop(self._retries)[2]
                wait = min(self._retries[0][0] - now, 0.5) if self._retries else 0.5
                self._wake.wait(wait)
        return None

    def _run(self) -> None:
        while (delivery := self._next()) is not None:
            try:
                self._attempt(delivery)
            except Exception:  # noqa: BLE001 - a worker never dies
                log.exception("webhook delivery %s failed unexpectedly", delivery.notification_id)
            finally:
                with self._wake:
                    self._busy -= 1

    def _attempt(self, d: _Delivery) -> None:
        if d.notification_id is None:
            d.notification_id = self.store.add_notification(d.alarm_id, d.webhook.id, d.event, self.clock())
        d.attempts += 1
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json", "User-Agent": "digitaltwin-webhooks",
            "X-DT-Event": f"alarm.{d.event}", "X-DT-Delivery": str(d.notification_id),
            TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(d.webhook.secret, timestamp, d.body),
        }
        status: int | None = None
        try:
            self.targets.check(d.webhook.url)
        except ForbiddenTarget as exc:  # not a transient failure: no retry
            log.warning("webhook %s: alarm %s %s refused: %s", d.webhook.id, d.alarm_id, d.event, exc)
            self.store.finish_notification(d.notification_id, result="failed", attempts=d.attempts, status_code=None,
                                           error=str(exc)[:500], finished_at=self.clock())
            self._count("failed")
            return
        try:
            response = self._client.post(d.webhook.url, content=d.body, headers=headers)
            status = response.status_code
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        if error is None:
            self.store.finish_notification(d.notification_id, result="delivered", attempts=d.attempts, status_code=status,
                                           error=None, finished_at=self.clock())
            self._count("delivered")
            return
        if d.attempts >= self.max_attempts or self._stop.is_set():
            log.warning("webhook %s: alarm %s %s failed after %d attempt(s): %s", d.webhook.id, d.alarm_id, d.event,
                        d.attempts, error)
            self.store.finish_notification(d.notification_id, result="failed", attempts=d.attempts, status_code=status,
                                           error=error, finished_at=self.clock())
            self._count("failed")
            return
        self.store.finish_notification(d.notification_id, result="pending", attempts=d.attempts, status_code=status,
                                       error=error, finished_at=None)
        self._count("retried")
        due = time.monotonic() + self.backoff_s * 2 ** (d.attempts - 1)
        with self._wake:
            heapq.heappush(self._retries, (due, next(self._seq), d))
            self._wake.notify()
