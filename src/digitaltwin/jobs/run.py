"""Running jobs: what each kind does, and the runner that takes queued jobs from the table.

:class:`JobRunner` runs in ``digitaltwin serve`` (the embedded default, ``JOBS_IN_PROCESS``)
and in ``digitaltwin worker`` processes (production). Each of its ``concurrency`` threads
claims the oldest queued job (:meth:`JobStore.claim`, which also keeps the host under
``JOBS_MAX_CONCURRENT`` running jobs) and runs it through :class:`ForecastService`, whose
training keeps its per-asset lock. Between fits the job's checkpoint records progress and a
heartbeat, and stops the work when its cancellation was requested or the runner is stopping.

Lost jobs (policy): a running job whose heartbeat is older than ``JOBS_STALE_SECONDS``, or
whose process on this host is gone, is queued again from the start while it has run fewer than
``JOBS_MAX_ATTEMPTS`` times, else failed. Training and backtests may run again safely: a rerun
stores a new model (the champion rule decides on it) or a new backtest. A runner stopped
gracefully (SIGTERM) queues its interrupted jobs again at once, without counting the attempt.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from datetime import date, timedelta
from typing import Any

from digitaltwin.domain.errors import DomainError
from digitaltwin.forecasting.errors import (
    ForecastError,
    InsufficientHistoryError,
    MissingExogenousError,
    NotCalibratedError,
    OptionalDependencyError,
    UnknownAlgorithmError,
)
from digitaltwin.jobs.store import Job, JobKind, JobState, JobStore
from digitaltwin.services.forecasting import ForecastService

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised at a checkpoint of a job whose cancellation was requested."""


class RunnerStopping(Exception):
    """Raised at a checkpoint of a job whose runner is shutting down."""


def error_body(exc: BaseException) -> dict[str, Any]:
    """The API's error shape ``{"detail", "field"}`` of what stopped a job (fields as ``api/errors.py`` names them)."""
    if isinstance(exc, DomainError):
        return {"detail": exc.message, "field": exc.field}
    if isinstance(exc, ForecastError):
        field = None
        if isinstance(exc, InsufficientHistoryError):
            field = "history"
        elif isinstance(exc, UnknownAlgorithmError | OptionalDependencyError):
            field = "algorithm"
        elif isinstance(exc, NotCalibratedError):
            field = "quantiles"
        elif isinstance(exc, MissingExogenousError):
            field = "exog"
        return {"detail": str(exc), "field": field}
    return {"detail": f"internal error ({type(exc).__name__})", "field": None}


def execute(job: Job, forecasts: ForecastService, checkpoint: Any) -> dict[str, Any]:
    """Do the work of ``job`` and return its result (ids of what it stored).

    ``train``: :meth:`ForecastService.train` -> ``model_id``, ``promoted``, ``reason``,
    ``previous_champion``, ``backtest_id``. ``backtest``: :meth:`ForecastService.backtest`
    (stored, with its plot) -> ``backtest_id``, ``skipped_origins``.
    """
    p = job.params
    horizon = timedelta(seconds=int(p["horizon_seconds"]))
    if job.kind is JobKind.TRAIN:
        trained = forecasts.train(job.asset_id, p["algorithm"], horizon=horizon, checkpoint=checkpoint)
        return {
            "model_id": trained.manifest.model_id,
            "promoted": trained.promoted,
            "reason": trained.reason,
            "previous_champion": trained.previous_champion,
            "backtest_id": trained.backtest.backtest_id if trained.backtest else None,
        }
    result, record = forecasts.backtest(
        job.asset_id, list(p["algorithms"]), start=date.fromisoformat(p["start"]), end=date.fromisoformat(p["end"]),
        horizon=horizon, retrain_every=int(p["retrain_every"]), store=True, checkpoint=checkpoint,
    )
    assert record is not None
    return {"backtest_id": record.backtest_id, "skipped_origins": len(result.skipped_origins)}


class JobsCollector:
    """``jobs{kind, state}``: queued and running jobs, read from the jobs table at scrape time
    (the same figure from every process; 0 for the pairs without jobs)."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    @staticmethod
    def _family() -> Any:
        from prometheus_client.core import GaugeMetricFamily

        return GaugeMetricFamily("jobs", "Queued and running jobs (trainings, backtests)", labels=["kind", "state"])

    def describe(self) -> Any:
        return [self._family()]  # the registry learns the name without a query

    def collect(self) -> Any:
        family = self._family()
        try:
            counts = self.store.counts()
        except Exception:  # noqa: BLE001 - a scrape must not fail with the database (/readyz reports it)
            return
        for kind in JobKind:
            for state in (JobState.QUEUED, JobState.RUNNING):
                family.add_metric([kind.value, state.value], counts.get((kind.value, state.value), 0))
        yield family


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobRunner:
    """Threads taking queued jobs from the table and running them.

    Args:
        store: the jobs table.
        forecasts: the service the jobs run through.
        concurrency: jobs this process runs at once (the host-wide limit is the store's).
        heartbeat_s: period of heartbeats and of the lost-job check.
        stale_s: a running job without a heartbeat for this long lost its process.
        max_attempts: runs of one job before a lost one is failed instead of re-queued.
        poll_s: period of an idle thread's look for queued jobs.
    """

    def __init__(
        self, store: JobStore, forecasts: ForecastService, *, concurrency: int = 2, heartbeat_s: float = 5.0,
        stale_s: float = 60.0, max_attempts: int = 2, poll_s: float = 1.0,
    ) -> None:
        self.store = store
        self.forecasts = forecasts
        self.concurrency = concurrency
        self.heartbeat_s = heartbeat_s
        self.stale_s = stale_s
        self.max_attempts = max_attempts
        self.poll_s = poll_s
        self.host = socket.gethostname()
        # host/pid/random: a restarted container may have the same host name and pid 1 again
        self.worker_id = f"{self.host}/{os.getpid()}/{secrets.token_hex(3)}"
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._running: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Recover lost jobs, then start the claim threads and the heartbeat thread.

        A database that is down now does not stop the process (``/readyz`` reports it): the
        heartbeat thread recovers lost jobs and the claim threads poll once it is back.
        """
        try:
            self.recover()
        except Exception as exc:  # noqa: BLE001
            log.warning("lost jobs not recovered at start (retried every %s s): %s", self.heartbeat_s, str(exc).splitlines()[0])
        for n in range(self.concurrency):
            thread = threading.Thread(target=self._claim_loop, name=f"job-runner-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        beat = threading.Thread(target=self._heartbeat_loop, name="job-heartbeat", daemon=True)
        beat.start()
        self._threads.append(beat)
        log.info("job runner %s started (%d at once)", self.worker_id, self.concurrency)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop: running jobs stop at their next checkpoint and are queued again; waits up to ``timeout_s``.

        A job still inside one fit after that keeps its row as running; once its heartbeat is
        stale another runner queues it again (see the module's policy).
        """
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=timeout_s)
        self._threads.clear()

    def wake(self) -> None:
        """Look for queued jobs now (after a submission in this process) instead of at the next poll."""
        self._wake.set()

    def recover(self) -> None:
        """Apply the lost-job policy: stale heartbeats, and jobs of processes of this host that are gone
        (or an earlier run of this process's pid, e.g. a restarted container)."""
        dead = []
        for _job_id, worker in self.store.running_on(self.host):
            if worker == self.worker_id:
                continue
            try:
                pid = int(worker.split("/")[1])
            except (IndexError, ValueError):
                continue
            if pid == os.getpid() or not _pid_alive(pid):
                dead.append(worker)
        requeued, ended = self.store.recover_stale(timedelta(seconds=self.stale_s), self.max_attempts, dead_workers=dead)
        for job_id in requeued:
            log.warning("job %s lost its worker: queued again", job_id)
        for job_id in ended:
            log.error("job %s lost its worker: failed (or cancelled as requested)", job_id)
        if requeued:
            self.wake()

    # ------------------------------------------------------------------ threads
    def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                job = self.store.claim(self.worker_id, self.host)
            except Exception as exc:  # noqa: BLE001 - a database hiccup must not end the runner
                log.warning("claiming a job failed: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                job = None
            if job is None:
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            self.run(job)

    def _heartbeat_loop(self) -> None:
        while not self._stopping.wait(self.heartbeat_s):
            try:
                with self._lock:
                    ids = list(self._running)
                self.store.heartbeat(ids, self.worker_id)
                self.recover()
            except Exception:  # noqa: BLE001
                log.exception("job heartbeat failed")

    # ------------------------------------------------------------------ one job
    def run(self, job: Job) -> None:
        """Run a claimed job to its end and record the outcome."""
        with self._lock:
            self._running[job.id] = job

        def checkpoint(done: float) -> None:
            if self._stopping.is_set():
                raise RunnerStopping
            if self.store.checkpoint(job.id, done):
                raise JobCancelled

        log.info("job %s (%s of %s) started by %s, attempt %d", job.id, job.kind, job.asset_id, self.worker_id, job.attempts)
        try:
            checkpoint(0.0)
            result = execute(job, self.forecasts, checkpoint)
        except JobCancelled:
            self.store.finish(job.id, self.worker_id, JobState.CANCELLED)
            log.info("job %s cancelled", job.id)
        except RunnerStopping:
            self.store.requeue(job.id, self.worker_id)
            log.info("job %s interrupted by shutdown: queued again", job.id)
        except Exception as exc:  # noqa: BLE001 - every failure is the job's outcome, not the runner's
            body = error_body(exc)
            if body["detail"].startswith("internal error"):
                log.exception("job %s failed", job.id)
            self.store.finish(job.id, self.worker_id, JobState.FAILED, error=body)
        else:
            self.store.finish(job.id, self.worker_id, JobState.SUCCEEDED, result=result)
            log.info("job %s succeeded: %s", job.id, result)
        finally:
            with self._lock:
                self._running.pop(job.id, None)

    def run_forever(self, stop: threading.Event) -> None:
        """:meth:`start`, wait for ``stop``, :meth:`stop` (the ``worker`` command)."""
        self.start()
        stop.wait()
        self.stop()
