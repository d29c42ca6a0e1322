"""Live twin beyond MQTT readings:

* readings accepted by ``POST /api/v1/readings`` update the live state and are pushed on the SSE
  stream ``/api/v1/stream``, as MQTT readings are (after the commit);
* the machine status of ``factory/{line}/{machine_id}/power`` survives a restart of the service
  without Redis: it is kept in ``machine_status`` (migration 0004), latest by event time, and
  shown by ``GET /api/v1/assets/{id}/state``.

Both on SQLite and PostgreSQL (the ``settings`` fixture), with the in-process live state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from fastapi.testclient import TestClient

from digitaltwin.api.app import create_app
from digitaltwin.config import Settings
from digitaltwin.security.roles import Role
from digitaltwin.storage.repository import Repository
from tests.api.conftest import headers_for
from tests.integration.mqtt_support import broker_url, publish, purge_session, wait_for, with_mqtt  # noqa: F401


def events_until(lines: Iterator[str], timeout_s: float) -> Iterator[tuple[str, Any]]:
    """(event, data) pairs of an SSE stream; fails the test once ``timeout_s`` has passed (the stream
    sends a comment line at least every 15 s, so a missing event cannot hang the test)."""
    deadline = time.monotonic() + timeout_s
    name, data = None, None
    for line in lines:
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for a stream event")
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            data = json.loads(line[len("data: ") :])
        elif line == "" and name is not None:
            yield name, data
            name, data = None, None


def make_assets(client: TestClient) -> None:
    assert client.post("/api/v1/sites", json={"id": "site-h", "name": "H", "timezone": "UTC"}).status_code == 201
    for asset_id, kind in (("m-http", "meter"), ("press-9", "machine")):
        body = {"id": asset_id, "site_id": "site-h", "name": asset_id, "kind": kind}
        assert client.post("/api/v1/assets", json=body).status_code == 201


def test_http_readings_update_the_live_state_and_the_stream(client: TestClient) -> None:
    make_assets(client)
    items = [
        {"asset_id": "m-http", "ts": "2025-05-01T10:00:00Z", "quantity": "power", "value": 5000, "unit": "W"},
        {"asset_id": "m-http", "ts": "2025-05-01T09:59:00Z", "quantity": "power", "value": 4.0, "unit": "kW"},
        {"asset_id": "m-http", "ts": "2025-05-01T10:01:00Z", "quantity": "power", "value": "n/a", "unit": "kW"},
    ]
    with client.stream("GET", "/api/v1/stream", params={"asset_id": "m-http"}) as response:
        assert response.status_code == 200
        stream = events_until(response.iter_lines(), timeout_s=20)
        name, snapshot = next(stream)
        assert (name, snapshot) == ("state", {"asset_id": "m-http", "readings": [], "status": None, "live_cache": "available"})
        answer = client.post("/api/v1/readings", json={"readings": items})
        assert answer.status_code == 200 and answer.json()["accepted"] == 2
        received = [next(stream), next(stream)]
    assert received == [
        ("reading", {"asset_id": "m-http", "quantity": "power", "unit": "kW", "ts": "2025-05-01T10:00:00Z", "value": 5.0}),
        ("reading", {"asset_id": "m-http", "quantity": "power", "unit": "kW", "ts": "2025-05-01T09:59:00Z", "value": 4.0}),
    ]  # the rejected item is not streamed
    live = client.app.state.dt.live.state("m-http")  # type: ignore[attr-defined]
    assert [(r.quantity, r.ts, r.value) for r in live.readings] == [("power", datetime(2025, 5, 1, 10, tzinfo=UTC), 5.0)]

    # a resent reading with another value is a duplicate: neither storage nor the live state change
    resent = {"asset_id": "m-http", "ts": "2025-05-01T10:00:00Z", "quantity": "power", "value": 9.0, "unit": "kW"}
    assert client.post("/api/v1/readings", json=[resent]).json()["stored"] == 0
    state = client.get("/api/v1/assets/m-http/state").json()
    assert state["readings"] == [{"quantity": "power", "unit": "kW", "ts": "2025-05-01T10:00:00Z", "value": 5.0}]


def test_machine_status_survives_a_restart_without_redis(settings: Settings, repo: Repository, broker_url: str) -> None:  # noqa: F811
    with_broker = with_mqtt(settings, broker_url).model_copy(update={"redis_url": None})
    try:
        with TestClient(create_app(with_broker)) as first:
            first.headers.update(headers_for(first, Role.ADMIN))
            make_assets(first)
            assert first.app.state.dt.subscriber.subscribed.wait(15)  # type: ignore[attr-defined]
            publish(with_broker, "factory/line-1/press-9/power", [  # arrival order is not event order
                b'{"timestamp":"2025-05-01T10:05:00Z","machine_id":"press-9","power_kW":0.4,"status":"IDLE"}',
                b'{"timestamp":"2025-05-01T10:00:00Z","machine_id":"press-9","power_kW":40,"status":"RUN"}',
                b'{"timestamp":"2025-05-01T09:00:00Z","machine_id":"press-9","power_kW":0,"status":"STOP"}',
            ])
            wait_for(lambda: len(first.get("/api/v1/assets/press-9/readings").json()["readings"]) == 3, what="3 readings")
            assert first.get("/api/v1/assets/press-9/state").json()["status"] == {"status": "IDLE", "ts": "2025-05-01T10:05:00Z"}
    finally:
        purge_session(with_broker, with_broker.mqtt_client_id or "")

    # a new service process: empty in-process live state, no broker, no Redis
    with TestClient(create_app(settings)) as second:
        second.headers.update(headers_for(second, Role.ADMIN))
        assert second.app.state.dt.live.state("press-9").status is None  # type: ignore[attr-defined]
        state = second.get("/api/v1/assets/press-9/state").json()
    assert state["status"] == {"status": "IDLE", "ts": "2025-05-01T10:05:00Z"}
    assert state["readings"] == [{"quantity": "power", "unit": "kW", "ts": "2025-05-01T10:05:00Z", "value": 0.4}]
