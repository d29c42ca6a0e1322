"""``digitaltwin serve --workers 2`` with MQTT_BROKER: exactly one MQTT subscriber, on the real broker.

Before, every uvicorn worker started a subscriber with the same client id in its lifespan, and
the broker handed the session from one to the other every 2 s (``MQTT disconnected``, then
``MQTT connected as X (session present: True)``). Now the API workers do not subscribe and
serve supervises one ingest worker process.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from digitaltwin.config import Settings
from digitaltwin.ingest.mqtt_subscriber import RECONNECT_DELAY_S
from digitaltwin.storage.repository import Repository
from tests.integration.mqtt_support import (  # noqa: F401
    child_env,
    broker_url,
    mqtt_settings,
    publish,
    purge_session,
    register,
    wait_for,
)
from tests.serve_support import free_port

BASE = datetime(2025, 6, 1, tzinfo=UTC)


def item(seq: int) -> bytes:
    return json.dumps({"ts": (BASE + timedelta(seconds=seq)).isoformat(), "power_kw": seq}).encode()


def serve_env(settings: Settings, log_dir: Path) -> dict[str, str]:
    return child_env(settings, log_dir)


def test_serve_with_two_workers_runs_one_subscriber(mqtt_settings: Settings, repo: Repository, tmp_path: Path) -> None:
    register(repo, "site-s", "m-serve")
    log_dir = tmp_path / "logs"
    topic = "dt/site-s/m-serve/telemetry"
    server = subprocess.Popen(
        [sys.executable, "-m", "digitaltwin.cli", "serve", "--workers", "2", "--port", str(free_port())],
        env=serve_env(mqtt_settings, log_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        probes = 0
        while not repo.read_page("m-serve", limit=10).rows:
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            assert time.monotonic() < deadline, "serve did not start ingesting"
            publish(mqtt_settings, topic, [item(probes)])
            probes += 1
            time.sleep(0.5)
        # both API workers are up once the probe is stored or shortly after: give a second subscriber
        # three reconnect periods to take the session over, as it did before
        time.sleep(6 * RECONNECT_DELAY_S)
        publish(mqtt_settings, topic, [item(1000 + i) for i in range(50)])
        wait_for(lambda: len(repo.read_page("m-serve", limit=1000).rows) >= 51, timeout_s=60, what="50 stored")
        text = "".join(p.read_text() for p in log_dir.glob("digital_twin.log*"))
        assert text.count("MQTT connected as") == 1, [l for l in text.splitlines() if "MQTT" in l]
        assert "MQTT disconnected" not in text
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(90)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(10)
        purge_session(mqtt_settings, mqtt_settings.mqtt_client_id or "")
    assert server.returncode is not None


def test_an_api_subscriber_can_be_switched_off(mqtt_settings: Settings) -> None:
    """MQTT_API_SUBSCRIBER=false (the production backend: a separate ingest service subscribes)."""
    from fastapi.testclient import TestClient

    from digitaltwin.api.app import create_app

    settings = mqtt_settings.model_copy(update={"mqtt_api_subscriber": False})
    with TestClient(create_app(settings)) as client:
        assert client.app.state.dt.subscriber is None  # type: ignore[attr-defined]
    with TestClient(create_app(mqtt_settings)) as client:
        assert client.app.state.dt.subscriber is not None  # type: ignore[attr-defined]
    purge_session(mqtt_settings, mqtt_settings.mqtt_client_id or "")
