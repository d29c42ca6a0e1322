"""A meter serial carried with MQTT counter readings records a meter replacement (real Mosquitto,
SQLite and PostgreSQL); 'not available' sentinels become dead letters naming the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from digitaltwin.config import Settings
from digitaltwin.storage.meter_events import MeterEventStore
from digitaltwin.storage.repository import Repository
from tests.integration.mqtt_support import (  # noqa: F401 - fixtures
    broker_url,
    mqtt_settings,
    publish,
    register,
    running_subscriber,
)

BASE = datetime(2025, 5, 1, tzinfo=UTC)


def reading(minutes: int, kwh: float, serial: str) -> bytes:
    ts = (BASE + timedelta(minutes=minutes)).isoformat()
    return json.dumps({"ts": ts, "quantity": "energy_total", "value": kwh, "unit": "kWh", "meter_serial": serial}).encode()


def test_a_new_serial_over_mqtt_is_a_replacement(mqtt_settings: Settings, repo: Repository) -> None:
    register(repo, "site-a", "m-swap")
    with running_subscriber(mqtt_settings, repo) as (_subscriber, flushes):
        publish(mqtt_settings, "dt/site-a/m-swap/telemetry", [reading(0, 500.0, "A"), reading(15, 510.0, "A")])
        flushes.wait(2)
        publish(mqtt_settings, "dt/site-a/m-swap/telemetry", [reading(60, 0.5, "B"), reading(75, 8.5, "B")])
        publish(mqtt_settings, "dt/site-a/m-swap/telemetry", [b'{"ts":"2025-05-01T02:00:00Z","quantity":"energy_total","value":4294967295,"unit":"Wh"}'])
        flushes.wait(5)
    info = repo.find_series("m-swap", "energy_total", fresh=True)
    assert info is not None
    (swap,) = MeterEventStore(repo.engine).replacements(info.id)
    assert (swap.old_serial, swap.new_serial, swap.source) == ("A", "B", "telemetry")
    assert (swap.old_ts, swap.old_value_kwh, swap.new_ts, swap.new_value_kwh) == (
        BASE + timedelta(minutes=15), 510.0, BASE + timedelta(minutes=60), 0.5,
    )
    assert info.attributes["meter_serial"] == "B"
    (letter,) = repo.list_dead_letters()
    assert letter.field == "value" and "not available" in letter.reason
