"""Field cases over real MQTT (Mosquitto) into SQLite (in-process live state) and PostgreSQL (Redis live state).

Case files under ``/work/shared/cases/``:

* ``mqtt/out-of-order-arrival.md``: ``test_out_of_order_arrival``
* ``mqtt/qos1-duplicate-delivery.md``: ``test_qos1_duplicate_delivery`` (policy: first write wins)
* ``payload/unavailable-and-null-values.md``: ``test_unavailable_and_null_values``
* ``payload/oversized-and-nested-json.md`` (3, and 2 over MQTT): ``test_oversized_and_nested_payloads``
* ``payload/nan-and-infinity.md``: ``test_nan_and_infinity``
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from digitaltwin.analytics.buckets import Bucket
from digitaltwin.config import Settings
from digitaltwin.services.energy import energy_report
from digitaltwin.services.live_state import open_live_state
from digitaltwin.storage.repository import Repository
from tests.integration.mqtt_support import (  # noqa: F401 - fixtures
    broker_url,
    mqtt_settings,
    publish,
    register,
    running_subscriber,
    wait_for,
)

KWH = 1e-6


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def report(repo: Repository, asset_id: str, start: str, end: str, quantity: str | None = None):  # type: ignore[no-untyped-def]
    return energy_report(
        repo, asset_id, start=utc(start), end=utc(end), bucket=Bucket.HOUR, max_hold=timedelta(hours=1),
        quantity=quantity, now=datetime(2026, 1, 1, tzinfo=UTC),
    )


def stored(repo: Repository, asset_id: str) -> list[tuple[datetime, float]]:
    return [(r.ts, r.value) for r in repo.read_page(asset_id, limit=1000).rows]


def test_out_of_order_arrival(mqtt_settings: Settings, repo: Repository) -> None:
    register(repo, "site-a", "m-ooo")
    lines = [
        b'{"device_id":"m-ooo","ts":"2025-05-01T09:50:00Z","energy_kwh_total":100.0}',
        b'{"device_id":"m-ooo","ts":"2025-05-01T09:56:00Z","energy_kwh_total":102.0}',
        b'{"device_id":"m-ooo","ts":"2025-05-01T09:53:00Z","energy_kwh_total":101.0}',
        b'{"device_id":"m-ooo","ts":"2025-05-01T10:00:00Z","energy_kwh_total":103.0}',
    ]
    live = open_live_state(redis_url=mqtt_settings.redis_url, prefix=mqtt_settings.live_state_key_prefix)
    with running_subscriber(mqtt_settings, repo, live=live) as (_, flushes):
        publish(mqtt_settings, "dt/site-a/m-ooo/telemetry", lines[:3])
        flushes.wait(3)  # the live state is recorded before the FlushLog hears of the commit
        latest = live.state("m-ooo").readings
        assert [(r.quantity, r.ts, r.value) for r in latest] == [("energy_total", utc("2025-05-01T09:56:00Z"), 102.0)]
        publish(mqtt_settings, "dt/site-a/m-ooo/telemetry", lines[3:])
        flushes.wait(4)
        latest = live.state("m-ooo").readings
        assert [(r.ts, r.value) for r in latest] == [(utc("2025-05-01T10:00:00Z"), 103.0)]
    live.close()

    values = [v for _, v in stored(repo, "m-ooo")]
    assert values == [100.0, 101.0, 102.0, 103.0]  # ordered by ts: no decrease, so 0 counter resets
    out = report(repo, "m-ooo", "2025-05-01T09:00:00Z", "2025-05-01T10:00:00Z")
    assert out.total_energy_kwh == pytest.approx(3.0, abs=KWH)
    assert repo.list_dead_letters() == []


def test_qos1_duplicate_delivery(mqtt_settings: Settings, repo: Repository) -> None:
    register(repo, "site-a", "m-q1")
    line = b'{"device_id":"m-q1","ts":"2025-05-01T10:15:00Z","energy_kwh":0.25}'
    with running_subscriber(mqtt_settings, repo) as (subscriber, flushes):
        publish(mqtt_settings, "dt/site-a/m-q1/telemetry", [line, line, line])
        flushes.wait(3)  # all three committed and acknowledged, none rejected
        assert stored(repo, "m-q1") == [(utc("2025-05-01T10:15:00Z"), 0.25)]
        (hour,) = report(repo, "m-q1", "2025-05-01T10:00:00Z", "2025-05-01T11:00:00Z").rows
        assert hour.energy_kwh == pytest.approx(0.25, abs=KWH)  # not 0.75

        assert repo.list_dead_letters() == []  # redeliveries of the same value are duplicates
        # Policy: the first reading of a (series, ts) key wins; a later different value is a
        # conflict, kept out and dead-lettered with both values (as HTTP and CSV report it).
        publish(mqtt_settings, "dt/site-a/m-q1/telemetry", [line.replace(b"0.25", b"0.30")])
        flushes.wait(4)
        assert stored(repo, "m-q1") == [(utc("2025-05-01T10:15:00Z"), 0.25)]
        assert sum(f.stored for f in flushes.flushes) == 1
    (letter,) = repo.list_dead_letters()
    assert letter.reason_code == "conflict" and "0.25" in letter.reason and "0.3" in letter.reason


def test_unavailable_and_null_values(mqtt_settings: Settings, repo: Repository) -> None:
    register(repo, "site-a", "pv-1")
    lines = [
        b'{"device_id":"pv-1","ts":"2025-05-01T10:00:00Z","power_w":500}',
        b'{"device_id":"pv-1","ts":"2025-05-01T10:10:00Z","power_w":"unavailable"}',
        b'{"device_id":"pv-1","ts":"2025-05-01T10:20:00Z","power_w":null}',
        b'{"device_id":"pv-1","ts":"2025-05-01T10:30:00Z","power_w":700}',
    ]
    with running_subscriber(mqtt_settings, repo) as (subscriber, flushes):
        publish(mqtt_settings, "dt/site-a/pv-1/telemetry", lines)
        flushes.wait(4)
        assert subscriber.is_connected()  # no dead consumer
        publish(mqtt_settings, "dt/site-a/pv-1/telemetry", [b'{"device_id":"pv-1","ts":"2025-05-01T10:40:00Z","power_w":600}'])
        flushes.wait(5)  # later pv-1 messages are still processed

    rows = stored(repo, "pv-1")
    assert [ts for ts, _ in rows][:2] == [utc("2025-05-01T10:00:00Z"), utc("2025-05-01T10:30:00Z")]
    assert 0.0 not in [v for _, v in rows]  # never stored as 0
    letters = repo.list_dead_letters()
    assert [(d.field, d.reason_code, d.topic) for d in letters] == [
        ("power_w", "invalid_item", f"{mqtt_settings.mqtt_topic_prefix}dt/site-a/pv-1/telemetry")
    ] * 2
    assert "unavailable" in letters[0].reason and "null" in letters[1].reason
    assert '"unavailable"' in letters[0].payload

    # mean power 10:00-10:40 with only the numeric rows (the 10:40 reading closes the window)
    samples = [v for ts, v in rows if ts < utc("2025-05-01T10:40:00Z")]
    assert len(samples) == 2
    assert sum(samples) / len(samples) * 1000 == pytest.approx(600.0)  # W; 300 W if they were 0


def test_nan_and_infinity(mqtt_settings: Settings, repo: Repository) -> None:
    register(repo, "site-a", "m-nan")
    lines = [
        b'{"device_id":"m-nan","ts":"2025-05-01T10:00:00Z","power_w":NaN}',
        b'{"device_id":"m-nan","ts":"2025-05-01T10:05:00Z","power_w":Infinity}',
        b'{"device_id":"m-nan","ts":"2025-05-01T10:10:00Z","power_w":1200}',
    ]
    with running_subscriber(mqtt_settings, repo) as (_, flushes):
        publish(mqtt_settings, "dt/site-a/m-nan/telemetry", lines)
        flushes.wait(3)
    assert stored(repo, "m-nan") == [(utc("2025-05-01T10:10:00Z"), pytest.approx(1.2))]
    letters = repo.list_dead_letters()
    assert [d.field for d in letters] == ["power_w", "power_w"]
    assert all("finite" in d.reason for d in letters)
    hour = report(repo, "m-nan", "2025-05-01T10:00:00Z", "2025-05-01T11:00:00Z").rows[0]
    assert hour.sample_count == 1
    assert hour.mean_power_kw * 1000 == pytest.approx(1200.0, abs=1e-3)  # W, not NaN


def test_oversized_and_nested_payloads(mqtt_settings: Settings, repo: Repository, caplog: pytest.LogCaptureFixture) -> None:
    register(repo, "site-a", "m-big", "m-ok")
    big = b'[' + b",".join([b'{"device_id":"m-big","ts":"2025-05-01T00:00:00Z","power_w":1}'] * 35_000) + b"]"
    assert len(big) > 2 * 1024 * 1024
    nested = b"[" * 100_000 + b"]" * 100_000
    shallow_deep = b"[" * 20 + b"]" * 20
    with running_subscriber(mqtt_settings, repo) as (subscriber, flushes):
        publish(mqtt_settings, "dt/site-a/m-big/telemetry", [big, nested, shallow_deep])
        publish(mqtt_settings, "dt/site-a/m-ok/telemetry", [b'{"ts":"2025-05-01T00:00:00Z","power_w":1}'])
        flushes.wait(4)
        assert subscriber.is_connected()
    assert "payload too large" in caplog.text
    assert stored(repo, "m-big") == []
    assert stored(repo, "m-ok") == [(utc("2025-05-01T00:00:00Z"), pytest.approx(0.001))]
    letters = repo.list_dead_letters()
    assert [(d.field, d.reason_code) for d in letters] == [("payload", "too_large"), ("payload", "too_deep"), ("payload", "too_deep")]
    assert letters[0].payload_bytes == len(big) and len(letters[0].payload) <= 1024
    assert "payload too large" in letters[0].reason
    assert "too deeply nested" in letters[1].reason
