"""Prometheus configuration, alert rules and their synthetic-series tests, Alertmanager configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.ops.tools import DEPLOY, require_tool, run

PROMETHEUS = DEPLOY / "prometheus"
RULES = PROMETHEUS / "rules" / "digitaltwin.yml"
RULE_TESTS = PROMETHEUS / "tests" / "digitaltwin.test.yml"

#: The production guide's alerts plus the model, ingest and asset-alarm alerts.
REQUIRED_ALERTS = {
    "HighErrorRate", "HighLatencyP95", "HighCPUUsage", "HighMemoryUsage", "ServiceDown",
    "ModelLoadFailures", "IngestLagHigh", "AssetAlarmsCritical", "AlarmNotificationsFailing",
}


def alerts() -> dict[str, dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def test_promtool_checks_the_configuration_and_its_rule_files() -> None:
    promtool = require_tool("promtool", package="prometheus")
    result = run([promtool, "check", "config", str(PROMETHEUS / "prometheus.yml")])
    assert "1 rule files found" in result.stdout


def test_promtool_checks_the_rules() -> None:
    promtool = require_tool("promtool", package="prometheus")
    result = run([promtool, "check", "rules", str(RULES)])
    assert f"{len(alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    promtool = require_tool("promtool", package="prometheus")
    result = run([promtool, "test", "rules", str(RULE_TESTS)])
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    """The synthetic series are tight: 5xx alerting from 20 % instead of 10 % fails the tests."""
    promtool = require_tool("promtool", package="prometheus")
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    text = RULES.read_text()
    assert "> 0.10" in text
    (tmp_path / "rules" / "digitaltwin.yml").write_text(text.replace("> 0.10", "> 0.20"))
    (tmp_path / "tests" / "t.yml").write_text(RULE_TESTS.read_text())
    result = run([promtool, "test", "rules", str(tmp_path / "tests" / "t.yml")], check=False)
    assert result.returncode != 0
    assert "HighErrorRate" in result.stdout + result.stderr


def test_every_alert_is_required_or_tested_firing() -> None:
    """Every required alert exists, and every alert has a test case where it fires."""
    defined = set(alerts())
    assert REQUIRED_ALERTS <= defined
    fired = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert defined == fired


@pytest.mark.parametrize(
    ("alert", "fragment"),
    [
        ("HighErrorRate", '{status=~"5.."}'),
        ("HighLatencyP95", "histogram_quantile(0.95"),
        ("HighCPUUsage", "system_cpu_usage_percent > 80"),
        ("HighMemoryUsage", "system_memory_usage_bytes > 4 * 1024 * 1024 * 1024"),
        ("ServiceDown", "up == 0"),
    ],
)
def test_guide_alerts_query_the_guide_s_metrics(alert: str, fragment: str) -> None:
    assert fragment in alerts()[alert]["expr"]
    assert alerts()[alert]["annotations"]["runbook_url"].startswith("docs/operations.md#")


def test_alertmanager_configuration_is_valid() -> None:
    amtool = require_tool("amtool", package="prometheus-alertmanager")
    result = run([amtool, "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml")])
    assert "SUCCESS" in result.stdout


def test_alertmanager_routes_asset_alarms_to_the_operators() -> None:
    """Critical asset alarms reach the ``operations`` receiver; other critical alerts stay with ``ops``."""
    amtool = require_tool("amtool", package="prometheus-alertmanager")
    config = f"--config.file={DEPLOY / 'alertmanager' / 'alertmanager.yml'}"
    labels = alerts()["AssetAlarmsCritical"]["labels"]
    asset = run([amtool, "config", "routes", "test", config, "alertname=AssetAlarmsCritical",
                 *(f"{k}={v}" for k, v in labels.items()), "type=stale_device"])
    assert asset.stdout.strip() == "operations"
    other = run([amtool, "config", "routes", "test", config, "alertname=HighErrorRate", "severity=critical"])
    assert other.stdout.strip() == "ops"
    assert alerts()["AlarmNotificationsFailing"]["labels"].get("team") is None  # webhook failures are the ops' problem
