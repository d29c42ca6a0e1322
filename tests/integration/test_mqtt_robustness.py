"""MQTT ingestion cases from a newcomer test of the product, over real Mosquitto into SQLite
(in-process live state) and PostgreSQL (Redis live state):

* a payload holding a NUL byte (``printf '\\x00garbage' | mosquitto_pub -s``) and JSON items
  whose strings hold ``\\u0000`` are dead-lettered naming the field; the flush commits and is
  acknowledged (on PostgreSQL the dead letter used to fail, jamming the consumer);
* a dead letter that cannot be stored at all never blocks the others of its batch: it is
  logged and counted in ``mqtt_dead_letters_unsaved_total``;
* status-only messages of the replaced system (``factory/{line}/{machine_id}/power`` with
  ``status`` and no ``power_kW``) update the machine status, stored and live;
* an ``interval`` conflicting with the series' interval is dead-lettered naming ``interval``;
* a value conflicting with the stored one is dead-lettered (``conflict``), a resend is not.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from digitaltwin.config import Settings
from digitaltwin.domain.assets import AssetKind
from digitaltwin.domain.dead_letters import DeadLetter
from digitaltwin.domain.readings import Reading
from digitaltwin.ingest.mqtt_payload import DecodedMessage
from digitaltwin.ingest.writer import BatchingWriter, Envelope
from digitaltwin.observability.metrics import Metrics
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


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def values(repo: Repository, asset_id: str) -> list[float]:
    return [r.value for r in repo.read_page(asset_id, limit=1000).rows]


def test_nul_payloads_are_dead_lettered_and_the_flush_is_acknowledged(mqtt_settings: Settings, repo: Repository) -> None:
    register(repo, "site-n", "m-nul")
    register(repo, "line-n", "press-n", kind=AssetKind.MACHINE)
    telemetry = "dt/site-n/m-nul/telemetry"
    with running_subscriber(mqtt_settings, repo) as (_, flushes):
        publish(mqtt_settings, telemetry, [
            b"\x00garbage",
            b'{"device_id":"m-nul","ts":"2026-11-28T10:00:00Z","power":1.0,"unit":"k\\u0000W"}',
            b'{"device_id":"m-n\\u0000ul","ts":"2026-11-28T10:01:00Z","power_kw":1.0}',
            b'{"device_id":"m-nul","ts":"2026-11-28T10:02:00\\u0000Z","power_kw":1.0}',
            (
                b'[{"device_id":"m-nul","ts":"2026-11-28T10:03:00Z","power_kw":3.0},'
                b'{"device_id":"m-nul","ts":"2026-11-28T10:04:00Z","power_kw":4.0,"site_id":"\\u0000"}]'
            ),
        ])
        publish(mqtt_settings, "factory/line-n/press-n/power", [
            b'{"timestamp":"2026-11-28T10:00:00Z","machine_id":"press-n","power_kW":5,"status":"RU\\u0000N"}',
        ])
        flushes.wait(6, timeout_s=20)  # committed and acknowledged: nothing jams
        publish(mqtt_settings, telemetry, [b'{"device_id":"m-nul","ts":"2026-11-28T10:05:00Z","power_kw":5.0}'])
        flushes.wait(7, timeout_s=20)
    assert values(repo, "m-nul") == [3.0, 5.0]
    letters = repo.list_dead_letters(topic_prefix=mqtt_settings.mqtt_topic_prefix)
    by_payload = {d.payload[:30]: d for d in letters}
    assert len(letters) == 6
    garbage = letters[0]
    assert garbage.payload == "\u2400garbage"  # NUL stored as U+2400 (Repository.write_dead_letters)
    assert garbage.field == "payload"
    assert garbage.payload_bytes == 8
    fields = sorted((d.field or "", d.item_index) for d in letters[1:])
    assert fields == [("device_id", None), ("site_id", 1), ("status", None), ("ts", None), ("unit", None)]
    assert all("NUL" in d.reason for d in letters[1:]), [d.reason for d in letters]
    assert by_payload  # every letter kept its payload head


def test_a_dead_letter_that_cannot_be_stored_does_not_block_the_batch(settings: Settings, repo: Repository) -> None:
    """One letter PostgreSQL refuses (a reason code over its 32 characters) among good ones: the good
    ones are stored, the batch is acknowledged, the bad one is logged and counted."""
    metrics = Metrics()
    acknowledged: list[int] = []
    writer = BatchingWriter(repo, metrics=metrics, acknowledge=acknowledged.extend, max_age_s=0.2)
    received = datetime(2026, 11, 28, 10, tzinfo=UTC)
    unstorable = "x" * 40 if not settings.embedded else "too_large"  # SQLite does not enforce lengths
    for key, code in enumerate(("invalid_json", unstorable, "too_large"), start=1):
        message = DecodedMessage(f"dt/s/m{key}/telemetry", None, received, b"{", 1)
        message.dead_letters.append(DeadLetter(message.topic, "{", 1, None, "payload", f"bad {key}", code, received))
        writer.submit(Envelope(message, key))
    writer.start()
    try:
        wait_for(lambda: len(acknowledged) == 3, timeout_s=20, what="the batch's acknowledgement")
    finally:
        writer.stop()
    stored = sorted(d.reason for d in repo.list_dead_letters())
    unsaved = metrics.registry.get_sample_value("mqtt_dead_letters_unsaved_total")
    if settings.embedded:
        assert stored == ["bad 1", "bad 2", "bad 3"] and unsaved == 0
    else:
        assert stored == ["bad 1", "bad 3"] and unsaved == 1


def test_status_only_factory_messages_update_the_machine_status(mqtt_settings: Settings, repo: Repository) -> None:
    register(repo, "line-s", "press-s", kind=AssetKind.MACHINE)
    topic = "factory/line-s/press-s/power"
    live = open_live_state(redis_url=mqtt_settings.redis_url, prefix=mqtt_settings.live_state_key_prefix)
    try:
        with running_subscriber(mqtt_settings, repo, live=live) as (_, flushes):
            publish(mqtt_settings, topic, [
                b'{"timestamp":"2026-11-28T10:00:00Z","machine_id":"press-s","power_kW":40,"status":"RUN"}',
                b'{"timestamp":"2026-11-28T10:10:00Z","machine_id":"press-s","status":"STOP"}',
                b'{"timestamp":"2026-11-28T10:20:00Z","machine_id":"press-s","status":"HALT"}',
                b'{"timestamp":"2026-11-28T10:30:00Z","machine_id":"press-x","status":"RUN"}',
                b'{"machine_id":"press-s","status":"RUN"}',
            ])
            flushes.wait(5, timeout_s=20)
            status = live.state("press-s").status
            assert status is not None and (status.status, status.ts) == ("STOP", utc("2026-11-28T10:10:00Z"))
    finally:
        live.close()
    assert repo.latest_machine_status("press-s") == ("STOP", utc("2026-11-28T10:10:00Z"))
    assert values(repo, "press-s") == [40.0]  # a status-only message stores no reading
    letters = repo.list_dead_letters(topic_prefix=mqtt_settings.mqtt_topic_prefix)
    assert [(d.field, d.reason_code) for d in letters] == [
        ("status", "invalid_item"), ("machine_id", "invalid_item"), ("ts", "invalid_item")
    ]


def test_an_interval_conflicting_with_the_series_is_dead_lettered(mqtt_settings: Settings, repo: Repository) -> None:
    register(repo, "site-i", "m-int")
    topic = "dt/site-i/m-int/telemetry"
    with running_subscriber(mqtt_settings, repo) as (_, flushes):
        publish(mqtt_settings, topic, [b'{"device_id":"m-int","ts":"2026-11-28T00:00:00Z","energy_kwh":1,"interval":"PT15M"}'])
        flushes.wait(1, timeout_s=20)
        publish(mqtt_settings, topic, [
            b'{"device_id":"m-int","ts":"2026-11-28T01:00:00Z","energy_kwh":4,"interval":"PT1H"}',
            (
                b'[{"device_id":"m-int","ts":"2026-11-28T00:15:00Z","energy_kwh":2,"interval":"PT15M"},'
                b'{"device_id":"m-int","ts":"2026-11-28T02:00:00Z","energy_kwh":8,"interval":"PT2H"}]'
            ),
        ])
        flushes.wait(3, timeout_s=20)
    series = repo.find_series("m-int", "energy")
    assert series is not None and series.interval_seconds == 900  # recorded from the MQTT declaration
    assert values(repo, "m-int") == [1.0, 2.0]
    letters = repo.list_dead_letters(topic_prefix=mqtt_settings.mqtt_topic_prefix)
    assert [(d.field, d.item_index) for d in letters] == [("interval", None), ("interval", 1)]
    assert "PT1H" in letters[0].reason and "PT15M" in letters[0].reason
    assert "PT2H" in letters[1].reason


def test_a_conflicting_value_is_dead_lettered_and_a_duplicate_is_not(mqtt_settings: Settings, repo: Repository) -> None:
    register(repo, "site-c", "m-con")
    topic = "dt/site-c/m-con/telemetry"
    with running_subscriber(mqtt_settings, repo) as (_, flushes):
        publish(mqtt_settings, topic, [b'{"device_id":"m-con","ts":"2026-11-28T00:00:00Z","energy_kwh":1,"interval":"PT15M"}'])
        flushes.wait(1, timeout_s=20)
        publish(mqtt_settings, topic, [
            b'{"device_id":"m-con","ts":"2026-11-28T00:00:00Z","energy_kwh":1,"interval":"PT15M"}',  # a resend: duplicate
            (
                b'[{"device_id":"m-con","ts":"2026-11-28T00:00:00Z","energy_kwh":99,"interval":"PT15M"},'
                b'{"device_id":"m-con","ts":"2026-11-28T00:15:00Z","energy_kwh":2,"interval":"PT15M"}]'
            ),
        ])
        flushes.wait(3, timeout_s=20)
    assert values(repo, "m-con") == [1.0, 2.0]  # the stored value stays, the new instant is stored
    (letter,) = repo.list_dead_letters(topic_prefix=mqtt_settings.mqtt_topic_prefix)
    assert (letter.reason_code, letter.field) == ("conflict", "energy")
    assert "m-con" in letter.reason and "2026-11-28T00:00:00+00:00" in letter.reason and "1.0" in letter.reason and "99.0" in letter.reason


def test_an_interval_disagreeing_with_the_stored_spacing_is_dead_lettered(mqtt_settings: Settings, repo: Repository) -> None:
    """An hourly series stored without an interval: a PT15M item is dead-lettered naming ``interval``
    with the observed spacing; ``interval`` on a power item too; PT1H is accepted and recorded."""
    register(repo, "site-h", "m-hr")
    repo.write_readings([
        Reading("m-hr", "energy", datetime(2026, 11, 1 + h // 24, h % 24, tzinfo=UTC), 54.2) for h in range(48)
    ])
    topic = "dt/site-h/m-hr/telemetry"
    with running_subscriber(mqtt_settings, repo) as (_, flushes):
        publish(mqtt_settings, topic, [
            b'{"device_id":"m-hr","ts":"2026-11-03T00:00:00Z","energy_kwh":54.2,"interval":"PT15M"}',
            b'{"device_id":"m-hr","ts":"2026-11-03T00:00:00Z","power_kw":54.2,"interval":"PT1H"}',
        ])
        flushes.wait(2, timeout_s=20)
        series = repo.find_series("m-hr", "energy", fresh=True)
        assert series is not None and series.interval_seconds is None
        publish(mqtt_settings, topic, [b'{"device_id":"m-hr","ts":"2026-11-03T01:00:00Z","energy_kwh":54.2,"interval":"PT1H"}'])
        flushes.wait(3, timeout_s=20)
    series = repo.find_series("m-hr", "energy", fresh=True)
    assert series is not None and series.interval_seconds == 3600
    assert len(values(repo, "m-hr")) == 49
    letters = repo.list_dead_letters(topic_prefix=mqtt_settings.mqtt_topic_prefix)
    assert sorted(d.field for d in letters) == ["interval", "interval"]
    reasons = sorted(d.reason for d in letters)
    assert any("PT15M" in r and "PT1H" in r and "spacing" in r for r in reasons), reasons
    assert any("power" in r for r in reasons), reasons


@pytest.mark.parametrize("payload", [b"\x00", b"\x00\x00\x00\x00", b'{"a":"\x00"}'])
def test_raw_nul_bytes_decode_to_a_dead_letter(payload: bytes) -> None:
    """Raw NUL bytes (not JSON escapes) in any position end as one ``invalid_json`` dead letter, never an exception."""
    from digitaltwin.ingest.mqtt_payload import decode_message

    decoded = decode_message("dt/s/m/telemetry", payload, received_at=datetime.now(UTC), max_bytes=1024)
    assert decoded.readings == [] and len(decoded.dead_letters) == 1
    assert decoded.dead_letters[0].field == "payload"
