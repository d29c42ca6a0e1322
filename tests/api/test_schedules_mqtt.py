"""Schedules published as retained QoS 1 setpoints on a real Mosquitto, and a broker outage reported, not raised."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient

from digitaltwin.api.app import create_app
from digitaltwin.config import Settings
from digitaltwin.ingest.mqtt_subscriber import broker_address
from digitaltwin.security.roles import Role
from digitaltwin.storage.repository import Repository

from ..integration.mqtt_support import broker_url, with_mqtt  # noqa: F401 - the broker_url fixture
from .conftest import headers_for
from .test_schedules_api import make_plant, plan_body


@pytest.fixture
def mqtt_client(settings: Settings, repo: Repository, broker_url: str) -> Iterator[tuple[TestClient, Settings]]:  # noqa: F811
    configured = with_mqtt(settings, broker_url).model_copy(update={"mqtt_api_subscriber": False})
    with TestClient(create_app(configured)) as client:
        client.headers.update(headers_for(client, Role.ADMIN, username="admin"))
        yield make_plant(client, repo), configured


def retained(broker: str, topic: str) -> dict[str, object]:
    """The retained message of ``topic`` as a new subscriber receives it (QoS and retain flag included)."""
    got: dict[str, object] = {}
    arrived = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        got.update({"payload": json.loads(message.payload), "retain": message.retain, "qos": message.qos})
        arrived.set()

    client.on_message = on_message
    host, port, _ = broker_address(broker)
    client.connect(host, port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    try:
        assert arrived.wait(5), f"no retained message on {topic}"
    finally:
        client.loop_stop()
        client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)  # clear it
        client.disconnect()
    return got


def test_setpoints_are_retained_for_a_device_that_connects_later(mqtt_client: tuple[TestClient, Settings]) -> None:
    client, settings = mqtt_client
    schedule = client.post("/api/v1/sites/plant/schedules", json=plan_body()).json()
    topic = f"{settings.mqtt_topic_prefix}dt/plant/bat/setpoint"
    assert schedule["published"]["mqtt"] == [{"topic": topic, "ok": True}]
    message = retained(settings.mqtt_broker or "", topic)
    assert message["retain"] is True and message["qos"] == 1
    payload = message["payload"]
    assert payload["schedule_id"] == schedule["id"] and payload["version"] == 1  # type: ignore[index]
    setpoints = payload["setpoints"]  # type: ignore[index]
    assert len(setpoints) == 96
    assert setpoints[0]["ts"] == "2026-03-02T00:00:00Z"
    assert [p["power_kw"] for p in setpoints] == schedule["plan"]["batteries"]["bat"]["setpoint_kw"]


def test_an_unreachable_broker_is_reported_with_the_stored_schedule(mqtt_client: tuple[TestClient, Settings]) -> None:
    client, _ = mqtt_client
    client.app.state.dt.scheduling.settings = client.app.state.dt.settings.model_copy(  # type: ignore[attr-defined]
        update={"mqtt_broker": "mqtt://127.0.0.1:1"})
    answer = client.post("/api/v1/sites/plant/schedules", json=plan_body())
    assert answer.status_code == 201
    (result,) = answer.json()["published"]["mqtt"]
    assert result["ok"] is False and "ConnectionRefusedError" in result["error"]
    republished = client.post(f"/api/v1/schedules/{answer.json()['id']}/publish")
    assert republished.status_code == 200 and republished.json()["published"]["mqtt"][0]["ok"] is False
