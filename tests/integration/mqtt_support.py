"""Helpers and fixtures for the MQTT tests: the real Mosquitto (``DT_TEST_MQTT_BROKER``), Redis
(``DT_TEST_REDIS_URL``) on the PostgreSQL variant, a unique topic prefix, client id and Redis key
prefix per test, and publishing with paho-mqtt at QoS 1.

Without a reachable broker the tests are skipped, unless ``DT_REQUIRE_MQTT=1``.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from digitaltwin.config import Settings
from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.ingest.mqtt_subscriber import MqttSubscriber, broker_address, build_subscriber
from digitaltwin.ingest.writer import Flush
from digitaltwin.observability.metrics import Metrics
from digitaltwin.services.live_state import LiveState, open_live_state
from digitaltwin.storage.repository import Repository

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def broker_url() -> str:
    url = os.environ.get("DT_TEST_MQTT_BROKER", DEFAULT_BROKER)
    host, port, _ = broker_address(url)
    if not _reachable(host, port):
        if os.environ.get("DT_REQUIRE_MQTT") == "1":
            pytest.fail(f"MQTT broker required but unreachable at {url}")
        pytest.skip(f"MQTT broker unreachable at {url}")
    return url


def with_mqtt(settings: Settings, broker_url: str) -> Settings:
    """``settings`` with the broker, a unique topic prefix, client id and Redis key prefix; Redis on the PostgreSQL variant."""
    tag = uuid.uuid4().hex[:10]
    update: dict[str, object] = {
        "mqtt_broker": broker_url,
        "mqtt_topic_prefix": f"test-{tag}/",
        "mqtt_client_id": f"test-{tag}",
        "mqtt_auto_register_assets": False,
        "live_state_key_prefix": f"test-{tag}",
    }
    if not settings.embedded:
        redis_url = os.environ.get("DT_TEST_REDIS_URL", DEFAULT_REDIS)
        import redis

        try:
            redis.Redis.from_url(redis_url, socket_connect_timeout=2).ping()
        except Exception as exc:  # noqa: BLE001
            pytest.skip(f"Redis unreachable at {redis_url}: {exc}")
        update["redis_url"] = redis_url
    return settings.model_copy(update=update)


@pytest.fixture
def mqtt_settings(settings: Settings, broker_url: str) -> Settings:
    """See :func:`with_mqtt`."""
    return with_mqtt(settings, broker_url)


def register(repo: Repository, site_id: str, *asset_ids: str, timezone: str = "UTC", kind: AssetKind = AssetKind.METER) -> None:
    repo.create_site(Site(site_id, site_id, timezone), exist_ok=True)
    for asset_id in asset_ids:
        repo.create_asset(Asset(asset_id, site_id, asset_id, kind), exist_ok=True)


def publish(settings: Settings, topic: str, payloads: Iterable[bytes], *, qos: int = 1) -> None:
    """Publish each payload on ``MQTT_TOPIC_PREFIX + topic`` at ``qos`` and wait until the broker has them."""
    host, port, _ = broker_address(settings.mqtt_broker or DEFAULT_BROKER)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:10]}", protocol=mqtt.MQTTv5)
    client.connect(host, port)
    client.loop_start()
    try:
        for payload in payloads:
            client.publish(settings.mqtt_topic_prefix + topic, payload, qos=qos).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def purge_session(settings: Settings, client_id: str) -> None:
    """Remove a persistent session from the broker (clean start with session expiry 0)."""
    host, port, _ = broker_address(settings.mqtt_broker or DEFAULT_BROKER)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    client.connect(host, port, clean_start=True, properties=props)
    client.disconnect()


def wait_for(predicate: Callable[[], bool], *, timeout_s: float = 30.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it holds; fails the test naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


class FlushLog:
    """A writer listener that remembers how many messages were committed (and acknowledged)."""

    def __init__(self) -> None:
        self.messages = 0
        self.flushes: list[Flush] = []

    def __call__(self, flush: Flush) -> None:
        self.flushes.append(flush)
        self.messages += flush.messages

    def wait(self, messages: int, *, timeout_s: float = 30.0) -> None:
        wait_for(lambda: self.messages >= messages, timeout_s=timeout_s, what=f"{messages} committed message(s)")


@contextmanager
def running_subscriber(
    settings: Settings,
    repo: Repository,
    *,
    client_id: str | None = None,
    live: LiveState | None = None,
    purge: bool = True,
) -> Iterator[tuple[MqttSubscriber, FlushLog]]:
    """A started subscriber (subscriptions confirmed) with a :class:`FlushLog`; stopped (and its session purged) after."""
    own_live = live is None
    live = live or open_live_state(redis_url=settings.redis_url, prefix=settings.live_state_key_prefix)
    subscriber = build_subscriber(settings, repo, metrics=Metrics(), live_state=live, client_id=client_id)
    log = FlushLog()
    subscriber.writer.listeners.append(log)
    subscriber.start()
    try:
        assert subscriber.subscribed.wait(15), "subscription not confirmed by the broker"
        yield subscriber, log
    finally:
        subscriber.stop()
        if own_live:
            live.close()
        if purge:
            purge_session(settings, subscriber.client_id)


def child_env(settings: Settings, log_dir: Path) -> dict[str, str]:
    """Environment for a ``digitaltwin`` child process (serve, ingest) on ``settings``' database,
    broker and cache, without the caller's own DATABASE_URL/MQTT_/REDIS_/PROMETHEUS_ variables."""
    from tests.conftest import TEST_SECRET_KEY

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "MQTT_", "REDIS_", "PROMETHEUS_"))}
    env.update(
        ENVIRONMENT="test", SECRET_KEY=TEST_SECRET_KEY, DATA_DIR=str(settings.data_dir), LOG_DIR=str(log_dir),
        MODELS_DIR=str(settings.models_dir), MQTT_BROKER=settings.mqtt_broker or "",
        MQTT_TOPIC_PREFIX=settings.mqtt_topic_prefix, MQTT_CLIENT_ID=settings.mqtt_client_id or "",
        MQTT_AUTO_REGISTER_ASSETS="false",
    )
    if settings.database_url:
        env["DATABASE_URL"] = settings.database_url
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url
    return env

