"""Running detectors: on each stored batch (MQTT and HTTP) and on timers (the stale-device check).

* :class:`DetectionRunner` is the post-commit hook of ingestion. The MQTT writer calls
  :meth:`DetectionRunner.on_flush` as a listener after each commit, ``POST /api/v1/readings``
  calls :meth:`DetectionRunner.submit` after its commit. Both only reduce the batch to the
  UTC timestamp range touched per ``(asset, quantity)`` and put it on a bounded queue (a full
  queue drops the batch with a log line and ``detector_failures_total{detector="queue"}``), so
  ingestion never waits on detection and nothing raises into it. A worker thread runs every
  registered :class:`BatchDetector` (rule detectors) on those ranges, and every
  :class:`IntervalDetector` (model detectors) on each interval that closed: late data re-evaluates
  exactly the intervals it touches. A detector that fails on one asset is logged and counted
  (``detector_failures_total{detector}``) and the others go on.
* :class:`StaleDeviceChecker` runs on a timer (:func:`start_periodic`): a device that stopped
  sending produces no batch to react to.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from digitaltwin.domain.readings import Reading
from digitaltwin.monitoring.alarms import Detection
from digitaltwin.monitoring.alarm_settings import merged
from digitaltwin.monitoring.stale_device import StaleSettings, check_stale
from digitaltwin.observability.metrics import Metrics
from digitaltwin.services.alarms import AlarmService
from digitaltwin.storage.monitoring_store import MonitoringStore
from digitaltwin.storage.repository import Repository

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Touched:
    """The readings of one stored batch for one series: UTC timestamps ``start`` to ``end`` (inclusive)."""

    asset_id: str
    quantity: str
    start: datetime
    end: datetime
    count: int


class CommittedBatch(Protocol):
    """What the hook needs of the MQTT writer's ``Flush``: its committed readings."""

    readings: list[Reading]


class BatchDetector(Protocol):
    """What the runner calls for each batch: ``name`` (for logs and metrics) and :meth:`detect`,
    which reads what it needs through ``repo`` and returns a detection per asset and type it
    evaluated (inactive ones included, so alarms clear)."""

    name: str

    def detect(self, touched: Touched, repo: Repository) -> Iterable[Detection]: ...


def touched_ranges(readings: Iterable[Reading]) -> list[Touched]:
    """The batch reduced to one :class:`Touched` per ``(asset, quantity)``, in one pass."""
    spans: dict[tuple[str, str], list] = {}
    for r in readings:
        span = spans.get((r.asset_id, r.quantity))
        if span is None:
            spans[(r.asset_id, r.quantity)] = [r.ts, r.ts, 1]
        else:
            if r.ts < span[0]:
                span[0] = r.ts
            elif r.ts > span[1]:
                span[1] = r.ts
            span[2] += 1
    return [Touched(a, q, s, e, n) for (a, q), (s, e, n) in spans.items()]


class IntervalDetector(Protocol):
    """A model detector: evaluates whole intervals of ``interval_s`` seconds (aligned on the Unix
    epoch, so on UTC quarter hours and hours) once they closed, i.e. once a reading of a later
    interval was stored; late readings re-evaluate the closed intervals they fall in."""

    name: str
    interval_s: int

    def detect_interval(self, asset_id: str, quantity: str, start: datetime, end: datetime,
                        repo: Repository) -> Iterable[Detection]: ...


@dataclass(frozen=True, slots=True)
class IntervalRequest:
    """One closed interval ``[start, end)`` (UTC) of one series to evaluate."""

    asset_id: str
    quantity: str
    start: datetime
    end: datetime


class BatchIntervalDetector(IntervalDetector, Protocol):
    """An interval detector that evaluates all the closed intervals of a committed batch at once
    (e.g. reading what it needs of every series in a few queries instead of a few per series)."""

    def detect_intervals(self, requests: Sequence[IntervalRequest], repo: Repository) -> list[list[Detection] | Exception]:
        """One result per request, in order: its detections, or the exception that stopped its
        evaluation (the others still evaluated). Requests of one series come in time order."""
        ...


def closed_intervals(touched: Touched, interval_s: int, newest_start: datetime | None) -> tuple[list[datetime], datetime]:
    """Starts of the intervals of ``interval_s`` to evaluate after ``touched``, given the start of the
    newest interval seen so far of the series (None: none yet), and the new newest start.

    The intervals the batch touched that are closed (before the newest one) are re-evaluated (late
    data); when the batch opens a newer interval, the previously newest one closes and is evaluated.
    """
    step = timedelta(seconds=interval_s)

    def floor(ts: datetime) -> datetime:
        return datetime.fromtimestamp(int(ts.timestamp()) // interval_s * interval_s, UTC)

    latest = floor(touched.end)
    newest = latest if newest_start is None or latest > newest_start else newest_start
    starts: set[datetime] = set()
    first = floor(touched.start)
    current, last = first, min(latest, newest - step)
    while current <= last and len(starts) < 10_000:  # bounded: a batch spanning years stops here
        starts.add(current)
        current += step
    if newest_start is not None and newest > newest_start:
        starts.add(newest_start)
    return sorted(s for s in starts if s < newest), newest


class DetectionRunner:
    """The ingestion hook and its worker (see the module docstring)."""

    def __init__(self, alarms: AlarmService, repo: Repository, detectors: Sequence[BatchDetector] = (), *,
                 metrics: Metrics | None = None, queue_size: int = 1000,
                 interval_detectors: Sequence[IntervalDetector] = ()) -> None:
        self.alarms, self.repo, self.metrics = alarms, repo, metrics
        self.detectors = list(detectors)
        self.interval_detectors = list(interval_detectors)
        self._newest: dict[tuple[str, str, int], datetime] = {}
        self._queue: queue.Queue[list[Touched]] = queue.Queue(queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending = 0
        self._count = threading.Lock()

    # -- the hook (ingestion threads) -------------------------------------------------------
    def on_flush(self, flush: CommittedBatch) -> None:
        """Writer listener: queue the committed batch's touched ranges."""
        self.submit(flush.readings)

    def submit(self, readings: Sequence[Reading]) -> None:
        """Queue the touched ranges of committed ``readings``; never blocks, never raises."""
        if not readings or not (self.detectors or self.interval_detectors):
            return
        try:
            touched = touched_ranges(readings)
            with self._count:
                self._pending += 1
            self._queue.put_nowait(touched)
        except queue.Full:
            with self._count:
                self._pending -= 1
            log.error("detection queue full: a batch of %d reading(s) is not evaluated", len(readings))
            self._failed("queue")
        except Exception:  # noqa: BLE001 - never into ingestion
            log.exception("detection hook failed")

    # -- the worker -------------------------------------------------------------------------
    def evaluate(self, touched: Sequence[Touched]) -> list[Detection]:
        """Run every detector on every touched range (failures isolated per detector and asset),
        then apply the detections; returns them."""
        detections: list[Detection] = []
        requests: list[list[IntervalRequest]] = [[] for _ in self.interval_detectors]
        for t in touched:
            for detector in self.detectors:
                try:
                    detections.extend(detector.detect(t, self.repo))
                except Exception:  # noqa: BLE001 - one detector failing on one asset never stops the others
                    log.exception("detector %s failed on %s/%s", detector.name, t.asset_id, t.quantity)
                    self._failed(detector.name)
            for model, wanted in zip(self.interval_detectors, requests, strict=True):
                key = (t.asset_id, t.quantity, model.interval_s)
                starts, self._newest[key] = closed_intervals(t, model.interval_s, self._newest.get(key))
                step = timedelta(seconds=model.interval_s)
                wanted.extend(IntervalRequest(t.asset_id, t.quantity, start, start + step) for start in starts)
        for model, wanted in zip(self.interval_detectors, requests, strict=True):
            if wanted:
                detections.extend(self._evaluate_intervals(model, wanted))
        self.alarms.apply(detections)
        return detections

    def _evaluate_intervals(self, model: IntervalDetector, requests: list[IntervalRequest]) -> list[Detection]:
        """The detections of ``model`` for the closed intervals of one batch: all at once when it
        can (:class:`BatchIntervalDetector`), else one by one; failures logged and counted per interval."""
        out: list[Detection] = []
        batch = getattr(model, "detect_intervals", None)
        if batch is None:
            for r in requests:
                try:
                    out.extend(model.detect_interval(r.asset_id, r.quantity, r.start, r.end, self.repo))
                except Exception:  # noqa: BLE001 - one detector failing on one asset never stops the others
                    log.exception("detector %s failed on %s/%s at %s", model.name, r.asset_id, r.quantity, r.start)
                    self._failed(model.name)
            return out
        try:
            results = batch(requests, self.repo)
        except Exception:  # noqa: BLE001 - e.g. storage down: the batch's intervals are not evaluated
            log.exception("detector %s failed on a batch of %d interval(s)", model.name, len(requests))
            self._failed(model.name)
            return out
        for r, result in zip(requests, results, strict=True):
            if isinstance(result, Exception):
                log.error("detector %s failed on %s/%s at %s", model.name, r.asset_id, r.quantity, r.start, exc_info=result)
                self._failed(model.name)
            else:
                out.extend(result)
        return out

    def _failed(self, name: str) -> None:
        if self.metrics is not None:
            self.metrics.detector_failures.labels(name).inc()

    def idle(self) -> bool:
        """No batch waiting or being evaluated (for tests and benchmarks)."""
        with self._count:
            return self._pending == 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="detection", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                touched = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self.evaluate(touched)
            except Exception:  # noqa: BLE001 - e.g. storage down while applying: the worker survives
                log.exception("detection round failed")
                self._failed("apply")
            finally:
                with self._count:
                    self._pending -= 1


class StaleDeviceChecker:
    """The timer detector: every series' newest reading against its cadence
    (:func:`~digitaltwin.monitoring.stale_device.check_stale`); one detection per asset, its
    stalest series (an asset is stale when any of its series is).

    Settings per asset (``detector_settings``, detector ``stale_device``) override the defaults.
    The cadence is the series' declared interval, else the median spacing of its latest
    readings (cached per series for ``cadence_ttl_s``); series with neither are skipped.
    """

    name = "stale_device"

    def __init__(self, store: MonitoringStore, repo: Repository, alarms: AlarmService, *,
                 settings: StaleSettings = StaleSettings(), metrics: Metrics | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), cadence_ttl_s: float = 3600.0) -> None:
        self.store, self.repo, self.alarms, self.settings, self.metrics, self.clock = store, repo, alarms, settings, metrics, clock
        self._cadence: dict[int, tuple[float, float | None]] = {}
        self._ttl = cadence_ttl_s

    def _cadence_s(self, series_id: int, declared: int | None) -> float | None:
        if declared:
            return float(declared)
        cached = self._cadence.get(series_id)
        if cached is None or time.monotonic() - cached[0] > self._ttl:
            cached = (time.monotonic(), self.repo.recent_spacing_seconds(series_id))
            self._cadence[series_id] = cached
        return cached[1]

    def detections(self, now: datetime | None = None) -> list[Detection]:
        """One detection per asset with at least one series of known cadence and a reading."""
        now = now or self.clock()
        worst: dict[str, Detection] = {}
        overrides = {a: o for (a, _), o in self.store.detector_settings(detector=self.name).items()}
        per_asset: dict[str, StaleSettings] = {}
        for s in self.store.series_freshness():
            if s.last_ts is None:
                continue
            try:
                cadence = self._cadence_s(s.series_id, s.interval_seconds)
                if not cadence:
                    continue
                if s.asset_id not in per_asset:
                    per_asset[s.asset_id] = merged(self.name, self.settings, overrides.get(s.asset_id))
                detection = check_stale(s.asset_id, s.quantity, last_ts=s.last_ts, cadence_s=cadence, now=now,
                                        settings=per_asset[s.asset_id])
            except Exception:  # noqa: BLE001 - one series never stops the check of the others
                log.exception("stale check failed on %s/%s", s.asset_id, s.quantity)
                if self.metrics is not None:
                    self.metrics.detector_failures.labels(self.name).inc()
                continue
            kept = worst.get(s.asset_id)
            if kept is None or (detection.active, detection.score) > (kept.active, kept.score):
                worst[s.asset_id] = detection
        return list(worst.values())

    def run_once(self, now: datetime | None = None) -> list[Detection]:
        """Check every series and apply the detections."""
        detections = self.detections(now)
        self.alarms.apply(detections)
        return detections


def start_periodic(name: str, seconds: float, action: Callable[[], object]) -> tuple[threading.Thread, threading.Event]:
    """Run ``action`` every ``seconds`` in a daemon thread until the returned event is set; failures are logged."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(seconds):
            try:
                action()
            except Exception:  # noqa: BLE001 - a timer survives anything
                log.exception("%s failed", name)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread, stop
