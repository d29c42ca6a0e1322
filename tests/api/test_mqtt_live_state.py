"""The live twin over HTTP with the subscriber in the app's lifespan (MQTT_BROKER set): ``GET
/api/v1/assets/{asset_id}/state`` and the SSE stream ``GET /api/v1/stream?asset_id=``.

SQLite runs with the in-process live state, PostgreSQL with Redis (``DT_TEST_REDIS_URL``).
Field case ``mqtt/out-of-order-arrival.md`` is checked on the state endpoint here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from digitaltwin.config import Settings
from tests.integration.mqtt_support import broker_url, publish, purge_session, wait_for, with_mqtt  # noqa: F401


@pytest.fixture
def settings(settings: Settings, broker_url: str) -> Iterator[Settings]:  # noqa: F811 - extends the conftest fixture
    """The parametrised settings with a broker, so the app starts its subscriber."""
    with_broker = with_mqtt(settings, broker_url)
    yield with_broker
    purge_session(with_broker, with_broker.mqtt_client_id or "")


def setup_assets(client: TestClient) -> None:
    assert client.post("/api/v1/sites", json={"id": "site-a", "name": "A", "timezone": "UTC"}).status_code == 201
    for asset_id, kind in (("m-ooo", "meter"), ("press-1", "machine")):
        body = {"id": asset_id, "site_id": "site-a", "name": asset_id, "kind": kind}
        assert client.post("/api/v1/assets", json=body).status_code == 201
    assert client.app.state.dt.subscriber.subscribed.wait(15)  # type: ignore[attr-defined]


def state(client: TestClient, asset_id: str) -> Any:
    response = client.get(f"/api/v1/assets/{asset_id}/state")
    assert response.status_code == 200, response.text
    return response.json()


OOO = [
    b'{"device_id":"m-ooo","ts":"2025-05-01T09:50:00Z","energy_kwh_total":100.0}',
    b'{"device_id":"m-ooo","ts":"2025-05-01T09:56:00Z","energy_kwh_total":102.0}',
    b'{"device_id":"m-ooo","ts":"2025-05-01T09:53:00Z","energy_kwh_total":101.0}',
    b'{"device_id":"m-ooo","ts":"2025-05-01T10:00:00Z","energy_kwh_total":103.0}',
]


def test_state_is_latest_by_timestamp_with_machine_status(client: TestClient, settings: Settings) -> None:
    setup_assets(client)
    assert state(client, "m-ooo") == {"asset_id": "m-ooo", "readings": [], "status": None, "live_cache": "available"}

    publish(settings, "dt/site-a/m-ooo/telemetry", OOO[:3])
    wait_for(lambda: len(client.get("/api/v1/assets/m-ooo/readings").json()["readings"]) == 3, what="3 readings")
    wait_for(lambda: bool(state(client, "m-ooo")["readings"]), what="the live state")
    assert state(client, "m-ooo")["readings"] == [
        {"quantity": "energy_total", "unit": "kWh", "ts": "2025-05-01T09:56:00Z", "value": 102.0}
    ]  # not 09:53 / 101.0, which arrived last
    publish(settings, "dt/site-a/m-ooo/telemetry", OOO[3:])
    wait_for(lambda: state(client, "m-ooo")["readings"][0]["value"] == 103.0, what="the 10:00 reading")
    assert state(client, "m-ooo")["readings"][0]["ts"] == "2025-05-01T10:00:00Z"

    publish(settings, "factory/line-1/press-1/power", [
        b'{"timestamp":"2025-05-01T10:05:00Z","machine_id":"press-1","power_kW":0.4,"status":"IDLE"}',
        b'{"timestamp":"2025-05-01T10:00:00Z","machine_id":"press-1","power_kW":40,"status":"RUN"}',
    ])
    wait_for(lambda: state(client, "press-1")["status"] is not None, what="the machine status")
    wait_for(lambda: len(client.get("/api/v1/assets/press-1/readings").json()["readings"]) == 2, what="both readings")
    assert state(client, "press-1") == {
        "asset_id": "press-1",
        "readings": [{"quantity": "power", "unit": "kW", "ts": "2025-05-01T10:05:00Z", "value": 0.4}],
        "status": {"status": "IDLE", "ts": "2025-05-01T10:05:00Z"},
        "live_cache": "available",
    }

    missing = client.get("/api/v1/assets/nope/state")
    assert missing.status_code == 404 and missing.json()["field"] == "asset_id"
    assert client.get("/api/v1/stream", params={"asset_id": "nope"}).status_code == 404
    metrics = client.get("/metrics").text
    assert "mqtt_messages_stored_total 6.0" in metrics
    assert 'readings_stored_total{source="mqtt"} 6.0' in metrics


def events(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """(event, data) pairs of an SSE stream."""
    name, data = None, None
    for line in lines:
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            data = json.loads(line[len("data: ") :])
        elif line == "" and name is not None:
            yield name, data
            name, data = None, None


def test_stream_pushes_readings_as_they_are_stored(client: TestClient, settings: Settings) -> None:
    setup_assets(client)
    publish(settings, "dt/site-a/m-ooo/telemetry", OOO[:1])
    wait_for(lambda: bool(client.get("/api/v1/assets/m-ooo/readings").json()["readings"]), what="the first reading")

    with client.stream("GET", "/api/v1/stream", params={"asset_id": "m-ooo"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = events(response.iter_lines())
        name, snapshot = next(stream)
        assert name == "state"
        assert snapshot["readings"] == [{"quantity": "energy_total", "unit": "kWh", "ts": "2025-05-01T09:50:00Z", "value": 100.0}]
        publish(settings, "dt/site-a/m-ooo/telemetry", OOO[1:])
        received = []
        while len(received) < 3:
            name, data = next(stream)
            assert name == "reading"
            received.append((data["ts"], data["value"]))
    # in arrival order, late reading included
    assert received == [("2025-05-01T09:56:00Z", 102.0), ("2025-05-01T09:53:00Z", 101.0), ("2025-05-01T10:00:00Z", 103.0)]
