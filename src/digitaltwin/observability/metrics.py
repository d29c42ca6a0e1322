"""Prometheus metrics of the production guide, plus the product's own.

The guide's five: ``http_requests_total``, ``http_request_duration_seconds``,
``predictions_total``, ``system_cpu_usage_percent``, ``system_memory_usage_bytes``.
HTTP metrics are labelled with the route *template* (``/api/v1/assets/{asset_id}``),
never the raw path, so label cardinality stays bounded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import psutil
from prometheus_client import CollectorRegistry, Counter, Histogram
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
        self.registry.register(SystemCollector())


class MetricsMiddleware:
    """Pure ASGI middleware that counts and times every HTTP request by route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

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
            self.metrics.http_requests.labels(method, template, str(status)).inc()
            self.metrics.http_duration.labels(method, template).observe(time.perf_counter() - started)
