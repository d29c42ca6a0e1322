"""Detection after each MQTT batch the writer commits, on the real broker: a reading above a rule detector's
range raises an alarm through the writer's post-commit hook (SQLite with the in-process live state,
PostgreSQL with Redis)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from digitaltwin.config import Settings
from tests.api.test_alarms_api import AboveLimit
from tests.integration.mqtt_support import broker_url, publish, purge_session, wait_for, with_mqtt  # noqa: F401


@pytest.fixture
def settings(settings: Settings, broker_url: str) -> Iterator[Settings]:  # noqa: F811 - extends the conftest fixture
    """The parametrised settings with a broker, so the app starts its subscriber and hooks detection to its writer."""
    with_broker = with_mqtt(settings, broker_url)
    yield with_broker
    purge_session(with_broker, with_broker.mqtt_client_id or "")


def test_an_mqtt_batch_is_evaluated_after_its_commit(client: TestClient, settings: Settings) -> None:
    assert client.post("/api/v1/sites", json={"id": "site-m", "name": "M", "timezone": "UTC"}).status_code == 201
    assert client.post("/api/v1/assets", json={"id": "m-mq", "site_id": "site-m", "name": "m", "kind": "meter"}).status_code == 201
    state = client.app.state.dt  # type: ignore[attr-defined]
    assert state.subscriber.subscribed.wait(15)
    assert state.monitoring.runner.on_flush in state.subscriber.writer.listeners
    state.monitoring.runner.detectors.append(AboveLimit(100.0))
    topic = "dt/site-m/m-mq/telemetry"
    publish(settings, topic, [json.dumps({"ts": "2025-06-01T00:00:00Z", "power_kw": 40}).encode()])
    wait_for(lambda: state.repo.find_series("m-mq", "power") is not None, what="the first reading")
    wait_for(state.monitoring.runner.idle, what="its evaluation")
    assert client.get("/api/v1/alarms", params={"asset_id": "m-mq"}).json() == []  # within the range: no alarm
    publish(settings, topic, [json.dumps({"ts": "2025-06-01T00:01:00Z", "power_kw": 400}).encode()])
    wait_for(lambda: len(client.get("/api/v1/alarms", params={"asset_id": "m-mq"}).json()) == 1, what="the alarm")
    [alarm] = client.get("/api/v1/alarms", params={"asset_id": "m-mq"}).json()
    assert alarm["type"] == "above_limit" and alarm["evidence"]["actual"] == 400.0 and alarm["state"] == "active"
