"""A real ``digitaltwin serve`` process: its stale-device timer raises an alarm that arrives as ``event: alarm``
on the SSE stream and as a signed webhook on a real loopback receiver (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from digitaltwin.config import Settings
from digitaltwin.domain.readings import Reading
from digitaltwin.monitoring.alarms import Severity
from digitaltwin.security.roles import Role
from digitaltwin.security.service import SecurityService
from digitaltwin.services.webhooks import verify
from digitaltwin.storage.monitoring_store import MonitoringStore
from digitaltwin.storage.repository import Repository
from tests.api.webhook_receiver import webhook_receiver
from tests.integration.mqtt_support import child_env, register
from tests.serve_support import serving

SECRET = "serve-webhook-secret-0123"


def test_stale_alarm_reaches_the_stream_and_the_webhook(settings: Settings, repo: Repository, tmp_path: Path) -> None:
    register(repo, "site-st", "m-quiet")
    security = SecurityService(settings, repo.engine)
    user = security.accounts.create("watcher", "a-long-test-password-1", Role.VIEWER, actor="test")
    token = security.sessions.start(user, amr="pwd").access_token
    env = child_env(settings, tmp_path / "logs") | {"STALE_CHECK_SECONDS": "0.5", "WEBHOOK_BACKOFF_SECONDS": "0.1",
                                                        "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1"}
    with webhook_receiver() as receiver:
        MonitoringStore(repo.engine).create_webhook(url=receiver.url, secret=SECRET, site_id="site-st",
                                                    min_severity=Severity.WARNING, created_at=datetime.now(UTC), created_by="test")
        with serving(env, tmp_path / "server.out") as (base, _):
            events: list[tuple[str, dict]] = []
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.stream("GET", base + "/api/v1/stream", params={"asset_id": "m-quiet"}, headers=headers, timeout=30) as stream:
                assert stream.status_code == 200
                event = None
                give_up = time.monotonic() + 90  # a keep-alive comment comes every 15 s, so the loop sees time pass
                for line in stream.iter_lines():
                    if time.monotonic() > give_up:
                        break
                    if line.startswith("event: "):
                        event = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        events.append((event or "", json.loads(line.removeprefix("data: "))))
                        if event == "state":  # subscribed: now the device goes quiet (its last reading an hour ago)
                            old = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
                            repo.write_readings([Reading("m-quiet", "energy", old - timedelta(minutes=m), 1.0) for m in range(3)],
                                                interval_seconds=60)
                        if event == "alarm":
                            break
            kind, alarm = events[-1]
            assert kind == "alarm" and alarm["event"] == "raised" and alarm["type"] == "stale_device"
            assert alarm["severity"] == "critical" and alarm["asset_id"] == "m-quiet" and alarm["evidence"]["cadence_s"] == 60
            [delivery] = receiver.wait_for(1)
            signature = {k.lower(): v for k, v in delivery.headers.items()}["x-dt-signature"]
            assert verify(SECRET, signature, delivery.body) and json.loads(delivery.body)["alarm_id"] == alarm["alarm_id"]
    output = (tmp_path / "server.out").read_text(errors="replace")
    assert "Traceback" not in output, output[-2000:]
