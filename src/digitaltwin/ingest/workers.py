"""Ingest worker processes: ``digitaltwin ingest [--workers N]``.

One worker is one :class:`~digitaltwin.ingest.mqtt_subscriber.MqttSubscriber` with its writer
and the live state, in its own process. ``N`` workers are N processes of one command, each a
replica in the same MQTT v5 shared-subscription group (``MQTT_SHARED_GROUP``): the broker
splits the stream between them, and each has its own GIL, so ingestion can use more than one
core. Worker ``i`` has the client id ``<MQTT_CLIENT_ID>-<i>`` (:func:`worker_client_id`), stable
across restarts, so each resumes its own persistent session. The parent only supervises: it
restarts a worker that died (after :data:`RESTART_DELAY_S`) and stops all of them on
SIGINT/SIGTERM, each committing and acknowledging what it received. With ``metrics_port`` the
parent serves the metrics of all workers (prometheus_client multiprocess mode).
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path

from digitaltwin.config import Settings
from digitaltwin.ingest.mqtt_subscriber import build_subscriber, default_client_id
from digitaltwin.ingest.writer import Flush
from digitaltwin.observability.metrics import Metrics
from digitaltwin.services.live_state import open_live_state
from digitaltwin.services.monitoring import open_monitoring
from digitaltwin.storage.db import make_engine
from digitaltwin.storage.repository import Repository

log = logging.getLogger(__name__)

#: Seconds before a worker that died is started again.
RESTART_DELAY_S = 2.0
#: Seconds a worker is given to commit, acknowledge and disconnect once told to stop.
STOP_GRACE_S = 45.0


def worker_client_id(base: str, index: int, workers: int) -> str:
    """The MQTT client id of worker ``index`` (0-based) of ``workers``: ``base`` alone for one worker, else ``<base>-<index>``."""
    return base if workers == 1 else f"{base}-{index}"


def run_worker(
    settings: Settings,
    *,
    client_id: str,
    stop: threading.Event,
    metrics: Metrics | None = None,
    listeners: Sequence[Callable[[Flush], None]] = (),
    started: threading.Event | None = None,
) -> None:
    """Ingest until ``stop`` is set: open storage and the live state, run a subscriber, then shut down cleanly.

    ``listeners`` hear of every commit after the live state (``bench/mqtt_ingest.py`` measures
    lag with one); ``started`` is set once the broker confirmed the subscriptions.

    Raises:
        ValidationError: naming ``MQTT_BROKER`` when it is missing or malformed.
    """
    repo = Repository(make_engine(settings))
    live = open_live_state(
        redis_url=settings.redis_url, redis_password=settings.redis_password, prefix=settings.live_state_key_prefix
    )
    subscriber = build_subscriber(settings, repo, metrics=metrics or Metrics(), live_state=live, client_id=client_id)
    subscriber.writer.listeners.extend(listeners)
    # Monitoring: detection of what this worker commits, and its webhook deliveries (timers run in `serve`)
    monitoring = open_monitoring(settings, repo, metrics=subscriber.writer.metrics, live=live, timers=False)
    subscriber.writer.listeners.append(monitoring.runner.on_flush)
    subscriber.start()
    try:
        if started is not None:
            while not subscriber.subscribed.wait(0.2) and not stop.is_set():
                pass
            started.set()
        stop.wait()
    finally:
        subscriber.stop()
        monitoring.stop()
        live.close()
        repo.engine.dispose()


def leave_sessions(settings: Settings, client_ids: Sequence[str], *, metrics: Metrics | None = None) -> None:
    """End the persistent sessions of replicas that are gone for good, without losing their share.

    For each id: connect as it (resuming its session), store what the broker queued for it,
    unsubscribe and end the session (:meth:`MqttSubscriber.leave`). Afterwards the broker hands
    the whole stream to the remaining members of the group. Run it after scaling down replicas
    with fixed client ids (``digitaltwin ingest --leave ID``), never for an id that still runs.

    Raises:
        ValidationError: naming ``MQTT_BROKER`` when it is missing or malformed.
    """
    repo = Repository(make_engine(settings))
    live = open_live_state(
        redis_url=settings.redis_url, redis_password=settings.redis_password, prefix=settings.live_state_key_prefix
    )
    try:
        for client_id in client_ids:
            subscriber = build_subscriber(settings, repo, metrics=metrics or Metrics(), live_state=live, client_id=client_id)
            subscriber.start()
            if not subscriber.connected.wait(60):
                subscriber.stop()
                raise ConnectionError(f"MQTT broker did not accept {client_id}")
            subscriber.leave()
            log.info("MQTT session of %s ended; its share goes to the other members", client_id)
    finally:
        live.close()
        repo.engine.dispose()


def _worker_main(client_id: str, multiproc_dir: str | None) -> None:
    """Entry point of a worker process (spawned): settings from the environment, stop on SIGTERM/SIGINT."""
    import os

    if multiproc_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = multiproc_dir
    from digitaltwin.observability.logs import configure_logging, secret_values

    settings = Settings()
    configure_logging(settings.log_dir, level=settings.log_level, secrets=secret_values(settings))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    run_worker(settings, client_id=client_id, stop=stop)


def run_workers(
    settings: Settings,
    workers: int,
    *,
    client_id: str | None = None,
    stop: threading.Event,
    multiproc_dir: Path | None = None,
    on_start: Callable[[str], None] | None = None,
) -> None:
    """Run ``workers`` worker processes until ``stop`` is set (see the module docstring).

    Args:
        settings: the parent's settings (the workers read the same environment).
        workers: how many processes, >= 1.
        client_id: base client id (default ``MQTT_CLIENT_ID`` or ``digitaltwin-ingest-<hostname>``).
        stop: set to stop every worker.
        multiproc_dir: ``PROMETHEUS_MULTIPROC_DIR`` for the workers' metrics.
        on_start: called with each worker's client id when it is (re)started.
    """
    base = client_id or settings.mqtt_client_id or default_client_id()
    ids = [worker_client_id(base, i, workers) for i in range(workers)]
    ctx = multiprocessing.get_context("spawn")
    directory = str(multiproc_dir.resolve()) if multiproc_dir else None

    def launch(cid: str) -> BaseProcess:
        process = ctx.Process(target=_worker_main, args=(cid, directory), name=f"ingest-{cid}", daemon=False)
        process.start()
        if on_start is not None:
            on_start(cid)
        return process

    processes = {cid: launch(cid) for cid in ids}
    try:
        while not stop.wait(1.0):
            for cid, process in list(processes.items()):
                if not process.is_alive():
                    log.error("ingest worker %s exited with %s; restarting in %.0f s", cid, process.exitcode, RESTART_DELAY_S)
                    if stop.wait(RESTART_DELAY_S):
                        break
                    processes[cid] = launch(cid)
    finally:
        for process in processes.values():
            if process.is_alive() and process.pid is not None:
                process.terminate()  # SIGTERM: the worker commits, acknowledges and disconnects
        deadline = time.monotonic() + STOP_GRACE_S
        for process in processes.values():
            process.join(max(deadline - time.monotonic(), 0.1))
            if process.is_alive():
                log.error("ingest worker %s did not stop in %.0f s; killing it (the broker redelivers)", process.name, STOP_GRACE_S)
                process.kill()
                process.join(5)
