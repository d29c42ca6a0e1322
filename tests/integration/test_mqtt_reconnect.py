"""The subscriber's reconnection on the real broker: the broker unreachable at start, and the
connection cut mid-stream (a TCP proxy between subscriber and Mosquitto, see :class:`CuttableProxy`).
Messages published meanwhile wait in the persistent session and are all stored once."""

from __future__ import annotations

import time

from digitaltwin.config import Settings
from digitaltwin.ingest.mqtt_subscriber import broker_address, build_subscriber
from digitaltwin.observability.metrics import Metrics
from digitaltwin.storage.repository import Repository
from tests.integration.mqtt_support import (  # noqa: F401 - fixtures
    FlushLog,
    broker_url,
    mqtt_settings,
    publish,
    purge_session,
    register,
    wait_for,
)
from tests.integration.test_mqtt_ingest import CuttableProxy, count, item


def test_broker_down_at_start_then_connection_cut(mqtt_settings: Settings, repo: Repository) -> None:
    register(repo, "site-a", "m-rc")
    topic = "dt/site-a/m-rc/telemetry"
    proxy = CuttableProxy(broker_address(mqtt_settings.mqtt_broker or "")[:2])
    proxy.open = False  # the broker is "down" when the subscriber starts
    via_proxy = mqtt_settings.model_copy(update={"mqtt_broker": f"mqtt://127.0.0.1:{proxy.port}"})
    try:
        subscriber = build_subscriber(via_proxy, repo, metrics=Metrics())
        flushes = FlushLog()
        subscriber.writer.listeners.append(flushes)
        subscriber.start()
        try:
            time.sleep(1.5)
            assert not subscriber.is_connected()
            proxy.restore()
            assert subscriber.subscribed.wait(20), "no connection after the broker came back"
            publish(mqtt_settings, topic, [item(i) for i in range(10)])
            flushes.wait(10)

            proxy.cut()  # reset the connection and refuse new ones
            wait_for(lambda: not subscriber.is_connected(), timeout_s=10, what="the cut to be noticed")
            publish(mqtt_settings, topic, [item(i) for i in range(10, 30)])  # kept in the session meanwhile
            time.sleep(1.0)
            assert count(repo, "m-rc") == 10
            proxy.restore()
            wait_for(lambda: count(repo, "m-rc") == 30, timeout_s=30, what="the messages published during the cut")
            assert subscriber.is_connected()
        finally:
            subscriber.stop()
            purge_session(mqtt_settings, subscriber.client_id)
    finally:
        proxy.close()
    assert repo.list_dead_letters() == []
