"""Prometheus metrics of the production guide, plus the product's own.

The guide's five: ``http_requests_total``, ``http_request_duration_seconds``,
``predictions_total``, ``system_cpu_usage_percent``, ``system_memory_usage_bytes``.
HTTP metrics are labelled with the route *template* (``/api/v1/assets/{asset_id}``),
never the raw path, so label cardinality stays bounded.

Several worker processes (``digitaltwin serve --workers N``) share their values through
prometheus_client's multiprocess mode: :func:`enable_multiprocess` points
``PROMETHEUS_MULTIPROC_DIR`` at an emptied folder before the workers start, every worker
writes its samples there, and :meth:`Metrics.render` aggregates all of them, so a scrape
answered by any worker reports the totals of all workers
(https://prometheus.github.io/client_python/multiprocess/). In that mode a ``Gauge`` needs a
``multiprocess_mode`` (``livesum``, ``max``, ...); counters and histograms need nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class SystemCollector(Collector):
    """CPU (percent since the previous scrape, all cores) and used memory (bytes) of the host, read at scrape time."""

    def __init__(self) -> None:
        psutil.cpu_percent(interval=None)  # prime the counter

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("system_cpu_usage_percent", "Host CPU usage in percent", value=psutil.cpu_percent(interval=None))
        yield GaugeMetricFamily(
            "system_memory_usage_bytes", "Host memory in use in bytes", value=float(psutil.virtual_memory().used)
        )


class Metrics:
    """All metrics of one app instance, in their own registry (so tests and apps do not collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "http_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration in seconds",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0),
            registry=self.registry,
        )
        self.predictions = Counter(
            "predictions_total", "Forecasts served", ["algorithm", "status"], registry=self.registry
        )
        self.readings_stored = Counter(
            "readings_stored_total", "Readings newly stored", ["source"], registry=self.registry
        )
        self.readings_rejected = Counter(
            "readings_rejected_total", "Telemetry items or rows rejected", ["source"], registry=self.registry
        )
        # MQTT ingestion: see digitaltwin.ingest.writer
        self.mqtt_messages_received = Counter(
            "mqtt_messages_received_total", "MQTT messages received (redeliveries included)", registry=self.registry
        )
        self.mqtt_messages_stored = Counter(
            "mqtt_messages_stored_total", "MQTT messages committed (readings stored or dead-lettered) and acknowledged",
            registry=self.registry,
        )
        self.mqtt_dead_letters = Counter(
            "mqtt_dead_letters_total", "Rejected MQTT messages or items, by reason code", ["reason"], registry=self.registry
        )
        self.mqtt_dead_letters_unsaved = Counter(
            "mqtt_dead_letters_unsaved_total", "Dead letters that could not be stored (logged instead)", registry=self.registry
        )
        self.ingest_flush_duration = Histogram(
            "ingest_flush_duration_seconds", "Time to commit one batch of readings and dead letters, in seconds",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.ingest_lag = Histogram(
            "ingest_lag_seconds", "Event time (reading timestamp) to commit, in seconds",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0),
            registry=self.registry,
        )
        self.ingest_queue_depth = Gauge(
            "ingest_queue_depth", "MQTT messages received but not yet committed", multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.ingest_retries = Counter(
            "ingest_write_retries_total", "Batch writes retried after a storage failure", registry=self.registry
        )
        # Forecasting: model registry hot reload, see digitaltwin.registry.serving
        self.model_load_failures = Counter(
            "model_load_failures_total", "Attempts to load a stored model that failed (the previous model keeps serving)",
            registry=self.registry,
        )
        self.models_loaded = Gauge(
            "models_loaded", "Models loaded and serving", multiprocess_mode="max", registry=self.registry
        )
        self.models_failed = Gauge(
            "models_failed", "Stored models that currently fail to load", multiprocess_mode="max", registry=self.registry
        )
        self.forecast_cache_lookups = Counter(
            "forecast_cache_lookups_total", "Forecast cache lookups (FORECAST_CACHE_SIZE), by result: hit or miss",
            ["result"], registry=self.registry,
        )
        self.energy_cache_lookups = Counter(
            "energy_cache_lookups_total", "Energy answer cache lookups (ENERGY_CACHE_MB), by result: hit or miss",
            ["result"], registry=self.registry,
        )
        # Monitoring: alarms and their webhook notifications, see digitaltwin.services.alarms and .webhooks
        self.alarms_active = Gauge(
            "alarms_active", "Open (active or acknowledged) alarms, by severity and type", ["severity", "type"],
            multiprocess_mode="max", registry=self.registry,
        )
        self.alarm_notifications = Counter(
            "alarm_notifications", "Webhook delivery attempts of alarm events, by result: delivered, retried or failed",
            ["result"], registry=self.registry,
        )
        self.detector_failures = Counter(
            "detector_failures", "Detector evaluations that failed (logged; the other detectors and assets go on)",
            ["detector"], registry=self.registry,
        )
        self.system = SystemCollector()
        self.registry.register(self.system)
        self.scrape_time: list[Collector] = []  # collectors reading shared state at scrape time (jobs)

    def collect_at_scrape(self, collector: Collector) -> None:
        """Add a collector that reads state shared by all processes (e.g. the jobs table) at scrape time."""
        self.registry.register(collector)
        self.scrape_time.append(collector)

    def stop_collecting(self, collector: Collector) -> None:
        """Undo :meth:`collect_at_scrape` (the app's lifespan ends)."""
        self.registry.unregister(collector)
        self.scrape_time.remove(collector)

    def render(self) -> bytes:
        """Prometheus text exposition of this instance, or of all worker processes in multiprocess mode."""
        if not multiprocess_enabled():
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(self.system)
        for collector in self.scrape_time:
            registry.register(collector)
        return generate_latest(registry)


def multiprocess_enabled() -> bool:
    """True when prometheus_client stores values in ``PROMETHEUS_MULTIPROC_DIR`` (decided when it was imported)."""
    return values.ValueClass is not values.MutexValue


def enable_multiprocess(path: Path) -> Path:
    """Prepare multiprocess mode for worker processes started *after* this call.

    Empties ``path`` of the ``*.db`` files of earlier runs (stale values would be added to the
    new totals) and exports ``PROMETHEUS_MULTIPROC_DIR`` to the environment the workers
    inherit; prometheus_client reads that variable when a worker imports it.

    Returns:
        The folder, created if missing.
    """
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path.resolve())
    return path


class MetricsMiddleware:
    """Pure ASGI middleware that counts and times every HTTP request by route template.

    The labelled children are looked up once per (method, route, status) and kept: the
    registry's ``labels()`` takes a lock and builds a key on every call.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._timers: dict[tuple[str, str], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            counter = self._counters.get((method, template, status))
            if counter is None:
                counter = self._counters[(method, template, status)] = self.metrics.http_requests.labels(method, template, str(status))
            timer = self._timers.get((method, template))
            if timer is None:
                timer = self._timers[(method, template)] = self.metrics.http_duration.labels(method, template)
            counter.inc()
            timer.observe(time.perf_counter() - started)
