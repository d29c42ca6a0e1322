"""Every metric a dashboard panel or alert rule queries is exported by a running instance.

The product's metrics are read from ``/metrics`` of an app served in-process (the ``client``
fixture, on SQLite and PostgreSQL); the exporters' metrics come from the documented allow-list
``exporter_metrics.txt``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.promql import dashboard_expressions, metric_names, rule_expressions

ALLOW_LIST = Path(__file__).with_name("exporter_metrics.txt")

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}


def exporter_metrics() -> set[str]:
    lines = (line.strip() for line in ALLOW_LIST.read_text().splitlines())
    return {line for line in lines if line and not line.startswith("#")}


def exported_series_names(client: TestClient) -> set[str]:
    """Series names the instance declares (by family type) or emits, after some traffic."""
    client.get("/healthz")
    client.get("/api/v1/sites")
    client.get("/api/v1/assets/nope")
    response = client.get("/metrics")
    assert response.status_code == 200
    names: set[str] = set()
    for family in text_string_to_metric_families(response.text):
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def queried() -> dict[str, list[str]]:
    """Metric name -> where it is queried."""
    used: dict[str, list[str]] = {}
    for where, expr in [*rule_expressions(), *dashboard_expressions()]:
        for name in metric_names(expr):
            used.setdefault(name, []).append(where)
    return used


def test_every_queried_metric_is_exported(client: TestClient) -> None:
    exported = exported_series_names(client) | exporter_metrics()
    missing = {name: where for name, where in queried().items() if name not in exported}
    assert not missing, f"queried but exported by nothing: {missing}"


def test_the_exporter_allow_list_holds_only_used_names(client: TestClient) -> None:
    used = set(queried())
    product = exported_series_names(client)
    assert exporter_metrics() <= used, f"unused allow-list entries: {exporter_metrics() - used}"
    assert not exporter_metrics() & product, "a product metric is on the exporter allow-list"


def test_the_guide_s_five_metrics_are_exported(client: TestClient) -> None:
    names = exported_series_names(client)
    for name in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "predictions_total",
        "system_cpu_usage_percent",
        "system_memory_usage_bytes",
    ):
        assert name in names, name
