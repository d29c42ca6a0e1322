"""MQTT ingestion end to end on the real broker: topics and validation, shared subscriptions,
a killed and restarted worker, and the database unreachable for 10 s mid-stream.

The outage is made with a TCP proxy in the test process between the writer and PostgreSQL
(:class:`CuttableProxy`): cutting it resets every open connection and refuses new ones, which
only this test's writer sees (the shared server keeps running for everyone else).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from digitaltwin.config import Settings
from digitaltwin.domain.assets import AssetKind
from digitaltwin.storage.db import make_engine
from digitaltwin.storage.repository import Repository
from tests.integration.mqtt_support import (  # noqa: F401 - fixtures
    broker_url,
    mqtt_settings,
    publish,
    purge_session,
    register,
    running_subscriber,
    wait_for,
)

BASE = datetime(2025, 5, 1, tzinfo=UTC)


def item(seq: int, **extra: object) -> bytes:
    """One single-reading message: power seq W at BASE + seq seconds."""
    return json.dumps({"ts": (BASE + timedelta(seconds=seq)).isoformat(), "power_w": seq, **extra}).encode()


def count(repo: Repository, asset_id: str) -> int:
    return len(repo.read_page(asset_id, limit=100_000).rows)


def test_array_items_topics_and_unknown_assets(mqtt_settings: Settings, repo: Repository) -> None:
    register(repo, "site-a", "m-arr")
    register(repo, "line-1", "press-7", kind=AssetKind.MACHINE)
    array = (
        b'[{"ts":"2025-05-01T10:00:00Z","quantity":"power","value":2.5,"unit":"kW"},'
        b'{"ts":"2025-05-01T10:01:00Z","quantity":"power","value":3,"unit":"kwh"},'
        b'{"ts":"2025-05-01T10:02:00Z","quantity":"energy","value":1500,"unit":"Wh"}]'
    )
    with running_subscriber(mqtt_settings, repo) as (subscriber, flushes):
        publish(mqtt_settings, "dt/site-a/m-arr/telemetry", [array])
        publish(mqtt_settings, "factory/line-1/press-7/power", [
            b'{"timestamp":"2025-05-01T10:00:00Z","machine_id":"press-7","power_kW":42.5,"status":"RUN"}',
            b'{"timestamp":"2025-05-01T10:05:00Z","machine_id":"press-7","power_kW":0.5,"status":"IDLE"}',
            b'{"timestamp":"2025-05-01T10:06:00Z","machine_id":"press-7","power_kW":0.5,"status":"BROKEN"}',
        ])
        publish(mqtt_settings, "dt/site-a/ghost/telemetry", [b'{"ts":"2025-05-01T10:00:00Z","power_kw":1}'])
        publish(mqtt_settings, "dt/other-site/m-arr/telemetry", [b'{"ts":"2025-05-01T11:00:00Z","power_kw":1}'])
        publish(mqtt_settings, "dt/site-a/m-arr/status", [b'{"ts":"2025-05-01T11:00:00Z","power_kw":1}'])  # not subscribed
        flushes.wait(6)
    rows = repo.read_page("m-arr", limit=10).rows
    assert [(r.quantity, r.ts.minute, r.value, r.unit) for r in rows] == [("power", 0, 2.5, "kW"), ("energy", 2, 1.5, "kWh")]
    assert [(r.ts.minute, r.value) for r in repo.read_page("press-7", limit=10).rows] == [(0, 42.5), (5, 0.5)]
    letters = [(d.item_index, d.field, d.reason_code) for d in repo.list_dead_letters()]
    assert letters == [
        (1, "unit", "invalid_item"),
        (None, "status", "invalid_item"),
        (None, "asset_id", "unknown_asset"),
        (None, "site_id", "site_mismatch"),
    ]
    assert repo.known_asset_ids(["ghost"]) == set()


def test_auto_registration(mqtt_settings: Settings, repo: Repository) -> None:
    settings = mqtt_settings.model_copy(update={"mqtt_auto_register_assets": True})
    with running_subscriber(settings, repo) as (subscriber, flushes):
        publish(settings, "dt/new-site/new-meter/telemetry", [b'{"ts":"2025-05-01T10:00:00Z","power_kw":1}'])
        publish(settings, "factory/line-9/m-9/power", [b'{"timestamp":"2025-05-01T10:00:00Z","machine_id":"m-9","power_kW":4,"status":"STOP"}'])
        flushes.wait(2)
        status = [s.status for f in flushes.flushes for s in f.statuses]
    assert repo.get_asset("new-meter").site_id == "new-site"
    assert repo.get_site("new-site").timezone == "UTC"
    machine = repo.get_asset("m-9")
    assert (machine.kind, machine.site_id, machine.attributes["line"]) == (AssetKind.MACHINE, "line-9", "line-9")
    assert count(repo, "new-meter") == count(repo, "m-9") == 1
    assert status == ["STOP"]
    assert repo.list_dead_letters() == []


def test_two_subscribers_in_one_shared_group(mqtt_settings: Settings, repo: Repository) -> None:
    register(repo, "site-a", "m-shared")
    n = 200
    tag = mqtt_settings.mqtt_client_id
    with running_subscriber(mqtt_settings, repo, client_id=f"{tag}-a") as (_, first), \
            running_subscriber(mqtt_settings, repo, client_id=f"{tag}-b") as (_, second):
        publish(mqtt_settings, "dt/site-a/m-shared/telemetry", [item(i) for i in range(n)])
        wait_for(lambda: first.messages + second.messages >= n, what="all messages committed")
        time.sleep(0.5)  # would a second copy of any message arrive, it is committed by now
    assert first.messages > 0 and second.messages > 0  # the group split the stream
    assert first.messages + second.messages == n  # and each message went to one of them
    assert count(repo, "m-shared") == n


def _worker_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "MQTT_", "REDIS_"))}
    env.update(
        ENVIRONMENT="test", DATA_DIR=str(settings.data_dir), LOG_DIR=str(tmp_path / "worker-logs"),
        MODELS_DIR=str(settings.models_dir), MQTT_BROKER=settings.mqtt_broker or "",
        MQTT_TOPIC_PREFIX=settings.mqtt_topic_prefix, MQTT_CLIENT_ID=settings.mqtt_client_id or "",
        MQTT_AUTO_REGISTER_ASSETS="false",
    )
    if settings.database_url:
        env["DATABASE_URL"] = settings.database_url
    return env


@pytest.mark.slow
def test_killed_worker_gets_what_was_published_meanwhile(mqtt_settings: Settings, repo: Repository, tmp_path: Path) -> None:
    """``digitaltwin ingest`` killed with SIGKILL (no goodbye), messages published, worker restarted: all stored once."""
    register(repo, "site-a", "m-kill")
    topic = "dt/site-a/m-kill/telemetry"
    command = [sys.executable, "-m", "digitaltwin.cli", "ingest"]
    env = _worker_env(mqtt_settings, tmp_path)
    worker = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while count(repo, "m-kill") == 0:  # probe until the worker's subscription is live
            assert worker.poll() is None, worker.stderr.read().decode() if worker.stderr else ""
            assert time.monotonic() < deadline, "worker did not start ingesting"
            publish(mqtt_settings, topic, [item(0)])
            time.sleep(0.5)
        publish(mqtt_settings, topic, [item(i) for i in range(1, 51)])
        wait_for(lambda: count(repo, "m-kill") == 51, what="first 50 stored")
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        publish(mqtt_settings, topic, [item(i) for i in range(51, 251)])  # while nobody listens
        assert count(repo, "m-kill") == 51
        worker = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: count(repo, "m-kill") == 251, timeout_s=60, what="the backlog stored after restart")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        purge_session(mqtt_settings, mqtt_settings.mqtt_client_id or "")
    rows = repo.read_page("m-kill", limit=1000).rows
    assert [r.ts for r in rows] == [BASE + timedelta(seconds=i) for i in range(251)]
    assert repo.list_dead_letters() == []


class CuttableProxy:
    """A TCP proxy to ``target`` on a free local port; :meth:`cut` resets every connection and refuses new ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = True
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                client.close()  # connection reset
                continue
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.open = False
        with self._lock:
            for s in self._sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._sockets.clear()

    def restore(self) -> None:
        self.open = True

    def close(self) -> None:
        self._closed = True
        self.cut()
        self.listener.close()


@pytest.mark.slow
def test_postgres_unreachable_for_10_s_mid_stream(mqtt_settings: Settings, repo: Repository) -> None:
    if mqtt_settings.embedded:
        pytest.skip("the outage is of the PostgreSQL server")
    register(repo, "site-a", "m-outage")
    url = make_url(mqtt_settings.database_url or "")
    proxy = CuttableProxy((url.host or "127.0.0.1", url.port or 5432))
    proxied = mqtt_settings.model_copy(
        update={"database_url": url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)}
    )
    writer_repo = Repository(make_engine(proxied))
    topic = "dt/site-a/m-outage/telemetry"
    try:
        with running_subscriber(proxied, writer_repo) as (subscriber, flushes):
            publish(proxied, topic, [item(i) for i in range(100)])
            flushes.wait(100)
            proxy.cut()
            for second in range(10):  # 10 s without PostgreSQL, 20 messages a second
                publish(proxied, topic, [item(100 + second * 20 + k) for k in range(20)])
                time.sleep(1.0)
            assert count(repo, "m-outage") == 100  # nothing got through meanwhile
            proxy.restore()
            publish(proxied, topic, [item(i) for i in range(300, 400)])
            flushes.wait(400, timeout_s=60)
            assert subscriber.is_connected()
            assert subscriber.writer.metrics is not None
            assert subscriber.writer.metrics.ingest_retries._value.get() > 0  # the writer did see the outage
    finally:
        proxy.close()
        writer_repo.engine.dispose()
    rows = repo.read_page("m-outage", limit=1000).rows
    assert [r.ts for r in rows] == [BASE + timedelta(seconds=i) for i in range(400)]  # every reading, once
    assert repo.list_dead_letters() == []
