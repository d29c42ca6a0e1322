"""``digitaltwin ingest --workers 2``: two worker processes in one shared-subscription group, on the real broker.

Each worker has its own persistent session (client ids ``<MQTT_CLIENT_ID>-0`` and ``-1``); every
message is stored once; SIGTERM stops the parent and both workers cleanly.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from digitaltwin.config import Settings
from digitaltwin.ingest.mqtt_subscriber import broker_address
from digitaltwin.storage.repository import Repository
from tests.integration.mqtt_support import (  # noqa: F401
    broker_url,
    child_env,
    mqtt_settings,
    publish,
    purge_session,
    register,
    wait_for,
)

BASE = datetime(2025, 5, 1, tzinfo=UTC)


def item(seq: int) -> bytes:
    return json.dumps({"ts": (BASE + timedelta(seconds=seq)).isoformat(), "power_w": seq}).encode()


def session_present(settings: Settings, client_id: str) -> bool:
    """Whether the broker holds a persistent session for ``client_id`` (connects without a clean start)."""
    host, port, _ = broker_address(settings.mqtt_broker or "")
    present = threading.Event()
    answered = threading.Event()

    def on_connect(_c: object, _u: object, flags: mqtt.ConnectFlags, _rc: object, _p: object) -> None:
        if flags.session_present:
            present.set()
        answered.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.on_connect = on_connect
    client.connect(host, port, clean_start=False)
    client.loop_start()
    try:
        assert answered.wait(10), "no CONNACK"
    finally:
        client.disconnect()
        client.loop_stop()
    return present.is_set()


@pytest.mark.slow
def test_two_worker_processes_share_the_stream(mqtt_settings: Settings, repo: Repository, tmp_path: Path) -> None:
    register(repo, "site-a", "m-workers")
    env = child_env(mqtt_settings, tmp_path / "logs")
    ids = [f"{mqtt_settings.mqtt_client_id}-{i}" for i in range(2)]
    topic = "dt/site-a/m-workers/telemetry"
    parent = subprocess.Popen([sys.executable, "-m", "digitaltwin.cli", "ingest", "--workers", "2"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        probes = 0
        while len(repo.read_page("m-workers", limit=1000).rows) < 1:
            assert parent.poll() is None, parent.stderr.read().decode() if parent.stderr else ""
            assert time.monotonic() < deadline, "workers did not start ingesting"
            publish(mqtt_settings, topic, [item(probes)])
            probes += 1
            time.sleep(0.5)
        time.sleep(2.0)  # both workers subscribed by now (each logs in within a second of the other)
        publish(mqtt_settings, topic, [item(1000 + i) for i in range(200)])
        wait_for(lambda: len(repo.read_page("m-workers", limit=1000).rows) >= 200 + 1, timeout_s=60, what="200 stored")
        parent.send_signal(signal.SIGTERM)
        out, errors = parent.communicate(timeout=60)
        assert parent.returncode == 0, errors.decode()
        assert all(f"worker {cid} started" in out.decode() for cid in ids), out.decode()
        rows = repo.read_page("m-workers", limit=1000).rows
        assert len({r.ts for r in rows}) == len(rows)  # each stored once
        assert {BASE + timedelta(seconds=1000 + i) for i in range(200)} <= {r.ts for r in rows}
        assert all(session_present(mqtt_settings, cid) for cid in ids)  # each worker kept its own session
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        for cid in ids:
            purge_session(mqtt_settings, cid)
