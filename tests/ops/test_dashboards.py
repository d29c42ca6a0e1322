"""Grafana provisioning and the four dashboards."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.ops.promql import dashboard_expressions, dashboard_files, metric_names, rule_expressions
from tests.ops.tools import DEPLOY, REPO_ROOT

REQUIRED = {"System Overview", "API Performance", "ML Model Performance", "Database Metrics"}


def test_the_four_dashboards_are_valid_json_with_unique_uids() -> None:
    boards = [json.loads(path.read_text()) for path in dashboard_files()]
    assert {b["title"] for b in boards} == REQUIRED
    assert len({b["uid"] for b in boards}) == len(boards)


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_every_panel_queries_the_provisioned_prometheus(path) -> None:
    board = json.loads(path.read_text())
    panels = board["panels"]
    assert panels, "a dashboard without panels"
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "prometheus"
            assert metric_names(target["expr"]), f"panel {panel['title']!r}: no metric in {target['expr']!r}"


def test_provisioning_points_at_the_dashboards_and_the_datasource_uid() -> None:
    providers = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "dashboards.yml").read_text())
    datasources = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    assert datasources["datasources"][0]["uid"] == "prometheus"
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.prod.yml").read_text())
    volumes = compose["services"]["grafana"]["volumes"]
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in volumes
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in volumes


def test_the_metric_name_extractor_reads_real_expressions() -> None:
    """Guards the contract test below against an extractor that silently finds nothing."""
    assert metric_names(
        'histogram_quantile(0.95, sum by (le, route) (rate(http_request_duration_seconds_bucket{route="/a/{x}"}[$__rate_interval])))'
    ) == {"http_request_duration_seconds_bucket"}
    assert metric_names("system_memory_usage_bytes > 4 * 1024 * 1024 * 1024") == {"system_memory_usage_bytes"}
    assert metric_names('rate(a_total[5m]) / ignoring(x) group_left b_total and on (y) up == 0') == {"a_total", "b_total", "up"}
    assert sum(1 for _ in rule_expressions()) >= 7
    assert sum(1 for _ in dashboard_expressions()) >= 30
