"""Alarms end to end on both backends: stale-device life cycle, detection after HTTP ingest, signed webhooks
delivered to a real local HTTP server (with retries and failures recorded), audit, filters, metrics, stream events."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from digitaltwin.api.app import create_app
from digitaltwin.config import Settings
from digitaltwin.domain.readings import Reading
from digitaltwin.monitoring.alarms import Detection, Severity, evidence
from digitaltwin.security.roles import Role
from digitaltwin.services.detection import Touched
from digitaltwin.services.live_state import MemoryLiveState
from digitaltwin.services.monitoring import Monitoring
from digitaltwin.services.webhooks import verify
from digitaltwin.storage.repository import Repository
from tests.api.conftest import ClientAs, headers_for
from tests.api.webhook_receiver import webhook_receiver

SITE = {"id": "site-al", "name": "site-al", "timezone": "Europe/Berlin", "country": "DE"}
T0 = datetime(2025, 5, 1, tzinfo=UTC)
SECRET = "webhook-secret-0123456789"


@pytest.fixture
def client(settings: Settings, repo: Repository) -> Iterator[TestClient]:
    """(Overrides the suite's ``client``, so viewer_client and operator_client talk to this app.) An admin client of an app whose webhooks retry fast (3 attempts, 0.05 s backoff) and whose timers are off."""
    fast = settings.model_copy(update={"webhook_max_attempts": 3, "webhook_backoff_seconds": 0.05, "stale_check_seconds": 0,
                                       "webhook_allowed_networks": ["127.0.0.1/32"]})  # the loopback receivers
    with TestClient(create_app(fast)) as client:
        client.headers.update(headers_for(client, Role.ADMIN, username="admin"))
        yield client


def monitoring_of(client: TestClient) -> Monitoring:
    return client.app.state.dt.monitoring  # type: ignore[attr-defined]


def register(client: TestClient, asset_id: str, site: dict = SITE) -> None:
    if client.get(f"/api/v1/sites/{site['id']}").status_code == 404:
        assert client.post("/api/v1/sites", json=site).status_code == 201
    assert client.post("/api/v1/assets", json={"id": asset_id, "site_id": site["id"], "name": asset_id, "kind": "meter"}).status_code == 201


def store_hourly(repo: Repository, asset_id: str, values: Iterable[float], start: datetime = T0) -> None:
    readings = [Reading(asset_id, "energy", start + timedelta(hours=i), float(v)) for i, v in enumerate(values)]
    repo.write_readings(readings, interval_seconds=3600)


def settle(monitoring: Monitoring, timeout_s: float = 30.0) -> None:
    """Wait until detection and webhook deliveries are done (a wait, not a timed assertion)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not (monitoring.runner.idle() and monitoring.notifier.idle()):
        time.sleep(0.02)


def metric(client: TestClient, line_start: str) -> float | None:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_stale_device_life_cycle_with_acknowledge_audit_filters_and_gauge(
    client: TestClient, repo: Repository, viewer_client: ClientAs, operator_client: ClientAs
) -> None:
    register(client, "m-stale")
    store_hourly(repo, "m-stale", [1.0] * 6)  # 00:00 .. 05:00
    stale = monitoring_of(client).stale
    last = T0 + timedelta(hours=5)
    stale.run_once(now=last + timedelta(hours=3))  # 3 intervals: not yet more than 3
    assert client.get("/api/v1/alarms").json() == []
    stale.run_once(now=last + timedelta(hours=4))
    stale.run_once(now=last + timedelta(hours=5))  # the same condition again: one alarm (deduplicated)
    alarms = client.get("/api/v1/alarms", params={"state": "active"}).json()
    assert len(alarms) == 1
    alarm = alarms[0]
    assert alarm["type"] == "stale_device" and alarm["asset_id"] == "m-stale" and alarm["site_id"] == SITE["id"]
    assert alarm["severity"] == "warning" and alarm["evidence"]["actual"] == 5 * 3600
    assert alarm["evidence"]["expected"] == [0.0, 3 * 3600.0] and alarm["evidence"]["quantity"] == "energy"
    assert alarm["started_at"] == "2025-05-01T06:00:00Z" and alarm["last_seen_at"] == "2025-05-01T10:00:00Z"
    assert metric(client, 'alarms_active{severity="warning",type="stale_device"}') == 1.0

    # filters
    assert client.get("/api/v1/alarms", params={"site_id": "elsewhere"}).json() == []
    assert client.get("/api/v1/alarms", params={"severity": "critical"}).json() == []
    assert len(client.get("/api/v1/alarms", params=[("severity", "critical"), ("severity", "warning")]).json()) == 1
    assert client.get("/api/v1/alarms", params={"since": "2025-05-01T11:00:00Z"}).json() == []
    bad = client.get("/api/v1/alarms", params={"state": "sleeping"})
    assert bad.status_code == 422 and bad.json()["field"] == "state.0"  # the first bad value of the list
    assert client.get("/api/v1/alarms", params={"since": "2025-05-01T11:00:00"}).json()["field"] == "since"
    assert client.get("/api/v1/alarms/999999").json()["field"] == "alarm_id"

    # acknowledge: operator only, audited with the comment; twice is a conflict naming state
    url = f"/api/v1/alarms/{alarm['id']}"
    assert viewer_client.post(url + "/acknowledge", json={"comment": "x"}).status_code == 403
    nul = operator_client.post(url + "/acknowledge", json={"comment": "van\x00"})  # PostgreSQL cannot store it: refused on both
    assert nul.status_code == 422 and nul.json()["field"] == "comment"
    acked = operator_client.post(url + "/acknowledge", json={"comment": "meter van on the way"})
    assert acked.status_code == 200 and acked.json()["state"] == "acknowledged"
    assert acked.json()["acknowledged_by"].startswith("user:operator-")
    again = operator_client.post(url + "/acknowledge", json={})
    assert again.status_code == 409 and again.json()["field"] == "state"
    assert operator_client.post(url + "/acknowledge", json={"comment": 5}).json()["field"] == "comment"
    audit = client.get("/api/v1/audit", params={"event": "alarm_acknowledged"}).json()
    assert audit and audit[0]["subject"] == str(alarm["id"]) and audit[0]["detail"]["comment"] == "meter van on the way"

    # the device sends again: cleared after two evaluations without the condition (hysteresis)
    store_hourly(repo, "m-stale", [1.0], start=last + timedelta(hours=6))
    stale.run_once(now=last + timedelta(hours=6, minutes=30))
    assert client.get(url).json()["state"] == "acknowledged"
    stale.run_once(now=last + timedelta(hours=6, minutes=40))
    cleared = client.get(url).json()
    assert cleared["state"] == "cleared" and cleared["cleared_by"] == "auto"
    assert metric(client, 'alarms_active{severity="warning",type="stale_device"}') == 0.0
    assert operator_client.post(url + "/clear", json={}).status_code == 409
    # history is kept: a new silence opens a second alarm
    stale.run_once(now=last + timedelta(hours=12))
    history = client.get("/api/v1/alarms", params={"asset_id": "m-stale"}).json()
    assert [a["state"] for a in history] == ["active", "cleared"]
    manual = operator_client.post(f"/api/v1/alarms/{history[0]['id']}/clear", json={"comment": "decommissioned"})
    assert manual.json()["state"] == "cleared" and manual.json()["cleared_comment"] == "decommissioned"
    assert client.get("/api/v1/audit", params={"event": "alarm_cleared"}).json()[0]["detail"]["comment"] == "decommissioned"


class AboveLimit:
    """A batch detector for the test: any reading of the touched range above ``limit`` kWh."""

    name = "above_limit"

    def __init__(self, limit: float) -> None:
        self.limit = limit

    def detect(self, touched: Touched, repo: Repository) -> list[Detection]:
        info = repo.find_series(touched.asset_id, touched.quantity)
        assert info is not None
        ts, values = repo.series_arrays(info.id, start=touched.start, end=touched.end + timedelta(seconds=1))
        top = float(values.max())
        return [Detection(touched.asset_id, "above_limit", Severity.CRITICAL, touched.start, touched.end, top,
                          evidence(top, 0.0, self.limit), active=top > self.limit)]


class Broken:
    name = "broken"

    def detect(self, touched: Touched, repo: Repository) -> list[Detection]:
        raise RuntimeError("detector bug")


def post_energy(client: TestClient, asset_id: str, ts: str, kwh: float) -> None:
    item = {"asset_id": asset_id, "ts": ts, "quantity": "energy", "value": kwh, "unit": "kWh", "interval": "PT1H"}
    response = client.post("/api/v1/readings", json={"readings": [item]})
    assert response.status_code == 200, response.text


def test_detection_after_http_ingest_notifies_a_signed_webhook_and_records_failures(client: TestClient) -> None:
    register(client, "m-hook")
    monitoring = monitoring_of(client)
    monitoring.runner.detectors.extend([Broken(), AboveLimit(100.0)])  # the broken one never stops the other
    bad = client.post("/api/v1/webhooks", json={"url": "not a url", "secret": SECRET})
    assert bad.status_code == 422 and bad.json()["field"] == "url"
    short = client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/x", "secret": "short"})
    assert short.json()["field"] == "secret"
    unknown_site = client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/x", "secret": SECRET, "site_id": "nope"})
    assert unknown_site.status_code == 404 and unknown_site.json()["field"] == "site_id"
    with webhook_receiver() as good, webhook_receiver(status=500) as failing:
        created = client.post("/api/v1/webhooks", json={"url": good.url, "secret": SECRET, "site_id": SITE["id"],
                                                            "min_severity": "critical"})
        assert created.status_code == 201 and "secret" not in created.json()
        client.post("/api/v1/webhooks", json={"url": failing.url, "secret": SECRET})
        assert len(client.get("/api/v1/webhooks").json()) == 2

        post_energy(client, "m-hook", "2025-05-01T00:00:00Z", 50.0)  # normal: no alarm
        settle(monitoring)
        assert client.get("/api/v1/alarms").json() == []
        post_energy(client, "m-hook", "2025-05-01T01:00:00Z", 500.0)
        settle(monitoring)
        [alarm] = client.get("/api/v1/alarms").json()
        assert alarm["type"] == "above_limit" and alarm["severity"] == "critical" and alarm["evidence"]["actual"] == 500.0

        [delivery] = good.wait_for(1)
        headers = {k.lower(): v for k, v in delivery.headers.items()}
        assert verify(SECRET, headers["x-dt-signature"], delivery.body)
        assert not verify("another-secret-0123456", headers["x-dt-signature"], delivery.body)
        assert headers["x-dt-event"] == "alarm.raised" and headers["x-dt-signature"].startswith(f"t={headers['x-dt-timestamp']},v1=")
        payload = json.loads(delivery.body)
        assert payload["event"] == "raised" and payload["alarm_id"] == alarm["id"] and payload["asset_id"] == "m-hook"
        assert len(failing.wait_for(3)) == 3  # the failing receiver got every attempt

        detail = client.get(f"/api/v1/alarms/{alarm['id']}").json()
        results = sorted((n["result"], n["attempts"], n["status_code"]) for n in detail["notifications"])
        assert results == [("delivered", 1, 200), ("failed", 3, 500)]
    assert metric(client, 'alarm_notifications_total{result="delivered"}') == 1.0
    assert metric(client, 'alarm_notifications_total{result="retried"}') == 2.0
    assert metric(client, 'alarm_notifications_total{result="failed"}') == 1.0
    assert metric(client, 'detector_failures_total{detector="broken"}') == 2.0
    # a late reading re-evaluates its own interval: the condition is gone there, not a new alarm
    post_energy(client, "m-hook", "2025-04-30T23:00:00Z", 10.0)
    settle(monitoring)
    assert len(client.get("/api/v1/alarms").json()) == 1
    hook_id = client.get("/api/v1/webhooks").json()[0]["id"]
    assert client.delete(f"/api/v1/webhooks/{hook_id}").status_code == 204
    assert client.delete(f"/api/v1/webhooks/{hook_id}").json()["field"] == "webhook_id"


def test_webhooks_reach_only_public_addresses_unless_a_network_is_allowed(settings: Settings, repo: Repository) -> None:
    """With the default settings a webhook to the loopback, the cloud metadata address or a private
    network is refused at creation (422 naming ``url``), and one stored before the rule changed is
    refused at delivery: recorded as failed after one attempt, the receiver never called."""
    with TestClient(create_app(settings.model_copy(update={"stale_check_seconds": 0}))) as client:
        client.headers.update(headers_for(client, Role.ADMIN, username="admin"))
        for url in ("http://127.0.0.1:9/x", "http://localhost:9/x", "http://169.254.169.254/latest/meta-data",
                    "http://10.1.2.3/hook", "http://[::1]:9/x", "http://[::ffff:127.0.0.1]:9/x", "http://0.0.0.0:9/x"):
            refused = client.post("/api/v1/webhooks", json={"url": url, "secret": SECRET})
            assert refused.status_code == 422 and refused.json()["field"] == "url", url
            assert "WEBHOOK_ALLOWED_NETWORKS" in refused.json()["detail"]
        assert client.get("/api/v1/webhooks").json() == []

        register(client, "m-ssrf")
        monitoring = monitoring_of(client)
        monitoring.runner.detectors.append(AboveLimit(100.0))
        with webhook_receiver() as receiver:
            monitoring.store.create_webhook(url=receiver.url, secret=SECRET, site_id=None, min_severity=Severity.WARNING,
                                            created_at=datetime.now(UTC), created_by="an older rule")
            monitoring.notifier.invalidate()
            post_energy(client, "m-ssrf", "2025-05-01T00:00:00Z", 500.0)
            settle(monitoring)
            [alarm] = client.get("/api/v1/alarms").json()
            [record] = client.get(f"/api/v1/alarms/{alarm['id']}").json()["notifications"]
            assert (record["result"], record["attempts"]) == ("failed", 1)
            assert "not a public address" in record["error"]
            assert receiver.received == []


def test_a_password_in_a_webhook_url_is_never_shown(client: TestClient) -> None:
    created = client.post("/api/v1/webhooks", json={"url": "https://hooks:s3cret@8.8.8.8/alarms", "secret": SECRET})
    assert created.status_code == 201 and created.json()["url"] == "https://hooks:***@8.8.8.8/alarms"
    assert [h["url"] for h in client.get("/api/v1/webhooks").json()] == ["https://hooks:***@8.8.8.8/alarms"]
    [entry] = [e for e in client.get("/api/v1/audit").json() if e["event"] == "webhook_created"]
    assert "s3cret" not in str(entry)
    stored = monitoring_of(client).store.list_webhooks()
    assert stored[0].url == "https://hooks:s3cret@8.8.8.8/alarms"  # deliveries still authenticate


def test_alarm_events_reach_the_stream_subscribers(client: TestClient) -> None:
    register(client, "m-sse")
    monitoring = monitoring_of(client)
    live = MemoryLiveState()
    monitoring.alarms.live = live

    async def scenario() -> list[dict]:
        async with live.subscribe("m-sse") as events:
            detection = Detection("m-sse", "flatline", Severity.WARNING, T0, T0 + timedelta(hours=1), 1.0, evidence(0.0, 1.0, 9.0))
            await asyncio.to_thread(monitoring.alarms.apply, [detection])
            return await asyncio.wait_for(anext(events), 10)

    [event] = asyncio.run(scenario())
    assert event["event"] == "raised" and event["type"] == "flatline" and "alarm_id" in event and event["state"] == "active"


def test_detector_settings_per_asset_are_checked_by_field_and_used(client: TestClient, repo: Repository,
                                                                   viewer_client: ClientAs, operator_client: ClientAs) -> None:
    register(client, "m-set")
    register(client, "m-default")
    store_hourly(repo, "m-set", [1.0] * 3)
    store_hourly(repo, "m-default", [1.0] * 3)
    url = "/api/v1/assets/m-set/detector-settings"
    for detector, body, field in [
        ("stale_device", {"missed_intervals": 0}, "stale_device.missed_intervals"),
        ("stale_device", {"missed_intervals": "3"}, "stale_device.missed_intervals"),
        ("stale_device", {"missed_intervals": 20}, "stale_device.critical_intervals"),  # above the default 12
        ("stale_device", {"after": 3}, "stale_device.after"),
        ("forecast_drift", {"factor": 0.9}, "forecast_drift.factor"),
        ("forecast_drift", {"min_points": 2.5}, "forecast_drift.min_points"),
        ("no_such_detector", {}, "detector"),
    ]:
        response = operator_client.put(f"{url}/{detector}", json=body)
        assert response.status_code == 422 and response.json()["field"] == field, (body, response.text)
    assert viewer_client.put(f"{url}/stale_device", json={"missed_intervals": 6}).status_code == 403
    assert client.put("/api/v1/assets/nope/detector-settings/stale_device", json={}).json()["field"] == "asset_id"
    ok = operator_client.put(f"{url}/stale_device", json={"missed_intervals": 6, "critical_intervals": 48})
    assert ok.status_code == 200, ok.text
    assert client.get(url).json() == {"stale_device": {"missed_intervals": 6, "critical_intervals": 48}}
    assert client.get("/api/v1/audit", params={"event": "detector_settings_changed"}).json()[0]["subject"] == "m-set"

    # 4 hours of silence: stale for the default (3 intervals), not for m-set (6)
    monitoring_of(client).stale.run_once(now=T0 + timedelta(hours=2 + 4))
    assert [a["asset_id"] for a in client.get("/api/v1/alarms").json()] == ["m-default"]
    assert operator_client.put(f"{url}/stale_device", json={}).status_code == 200  # back to the defaults
    assert client.get(url).json() == {}


class Recorder:
    """A model detector for the test: records the intervals it is asked about; reads the interval's sum."""

    name = "recorder"
    interval_s = 900

    def __init__(self) -> None:
        self.calls: list[tuple[str, datetime, float]] = []

    def detect_interval(self, asset_id: str, quantity: str, start: datetime, end: datetime, repo: Repository) -> list[Detection]:
        info = repo.find_series(asset_id, quantity)
        assert info is not None
        _, values = repo.series_arrays(info.id, start=start, end=end)
        self.calls.append((asset_id, start, float(values.sum())))
        return [Detection(asset_id, "recorder", Severity.INFO, start, end, 0.0, evidence(float(values.sum()), 0, 1), active=False)]


def test_model_detectors_run_when_an_interval_closes_and_again_for_late_data(client: TestClient) -> None:
    register(client, "m-model")
    monitoring = monitoring_of(client)
    recorder = Recorder()
    monitoring.runner.interval_detectors.append(recorder)

    def post_power(ts: str, kw: float) -> None:
        item = {"asset_id": "m-model", "ts": ts, "quantity": "power", "value": kw, "unit": "kW"}
        assert client.post("/api/v1/readings", json={"readings": [item]}).status_code == 200
        settle(monitoring)

    post_power("2025-05-01T10:05:00Z", 1.0)
    assert recorder.calls == []  # 10:00-10:15 still open
    post_power("2025-05-01T10:20:00Z", 2.0)
    assert recorder.calls == [("m-model", datetime(2025, 5, 1, 10, tzinfo=UTC), 1.0)]
    post_power("2025-05-01T10:07:00Z", 4.0)  # late: the closed 10:00 interval is evaluated again with it
    assert recorder.calls[-1] == ("m-model", datetime(2025, 5, 1, 10, tzinfo=UTC), 5.0) and len(recorder.calls) == 2
    assert client.get("/api/v1/alarms").json() == []  # inactive detections never open alarms


def test_consumption_anomalies_raise_alarms_as_hours_close_and_clear_after(client: TestClient, repo: Repository) -> None:
    """Four weeks of a steady daily profile, then a night that runs at the daytime level for four
    hours: the closing hours raise a profile alarm; normal hours after it clear it (hysteresis)."""
    register(client, "m-anom")
    monitoring = monitoring_of(client)
    assert any(d.name == "consumption_anomaly" for d in monitoring.runner.interval_detectors)
    day = [5.0] * 7 + [20.0] * 11 + [5.0] * 6
    noisy = [v * (1 + 0.04 * math.sin(1.7 * i)) for i, v in enumerate(day * 28)]  # metered values are never exactly equal
    store_hourly(repo, "m-anom", noisy)
    start = T0 + timedelta(days=28)
    night = [5.1, 4.9, 20.0, 20.3, 19.8, 20.1, 5.05]  # 02:00-06:00 UTC at the daytime level
    items = [{"asset_id": "m-anom", "ts": (start + timedelta(hours=i)).isoformat(), "quantity": "energy", "value": v,
              "unit": "kWh", "interval": "PT1H"} for i, v in enumerate(night)]
    for item in items:
        assert client.post("/api/v1/readings", json={"readings": [item]}).status_code == 200
        settle(monitoring)
    alarms = client.get("/api/v1/alarms", params={"asset_id": "m-anom"}).json()
    profile = [a for a in alarms if a["type"] == "profile_residual"]
    assert len(profile) == 1 and profile[0]["state"] == "active", alarms
    assert profile[0]["evidence"]["actual"] == pytest.approx(20.0, abs=0.5)
    assert profile[0]["evidence"]["expected"][1] < 20.0  # the expected range excludes what was metered
    normal = [{"asset_id": "m-anom", "ts": (start + timedelta(hours=7 + i)).isoformat(), "quantity": "energy",
               "value": day[(7 + i) % 24] * (1 + 0.03 * math.sin(i)), "unit": "kWh", "interval": "PT1H"} for i in range(6)]
    for item in normal:
        client.post("/api/v1/readings", json={"readings": [item]})
        settle(monitoring)
    after = client.get("/api/v1/alarms", params={"asset_id": "m-anom", "type": "profile_residual"}).json()
    assert after[0]["state"] == "cleared" and after[0]["cleared_by"] == "auto", after
