"""The fast path of MQTT payload decoding (for throughput) decides exactly as the general path.

Every payload here is decoded twice: as shipped, and with the fast path switched off (so the
general path, :func:`digitaltwin.domain.readings.parse_item` per item, decides alone). Readings
and dead letters must be identical; the canonical payloads must actually take the fast path.
orjson's refusals (NaN, Infinity, huge numbers, BOM, UTF-16, lone surrogates) must come out as
the standard library decides them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from digitaltwin.ingest import mqtt_payload
from digitaltwin.ingest.mqtt_payload import _fast_readings, _loads, decode_message

TOPIC = "p/dt/site-a/m1/telemetry"
NOW_MS = int(time.time() * 1000)
RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)


def item(ts: object = NOW_MS, quantity: object = "power", value: object = 1.5, unit: object = "kW") -> str:
    import json

    return json.dumps({"ts": ts, "quantity": quantity, "value": value, "unit": unit})


FAST = [
    item().encode(),
    item(value=2500, unit="W").encode(),
    item(value=-3, unit="MW").encode(),
    item(quantity="energy", value=1500, unit="Wh").encode(),
    item(quantity="temperature", value=300, unit="K").encode(),
    item(ts="2025-05-01T10:00:00.123Z").encode(),
    item(ts="2025-05-01T12:00:00+02:00").encode(),
    item(ts=946_684_800_000).encode(),  # exactly the plausible floor
    ("[" + ",".join(item(ts=NOW_MS - k, value=k) for k in range(50)) + "]").encode(),
]
GENERAL = [
    b'{"ts": %d, "quantity": "power", "value": NaN, "unit": "kW"}' % NOW_MS,
    b'{"ts": %d, "quantity": "power", "value": Infinity, "unit": "kW"}' % NOW_MS,
    b'{"ts": %d, "quantity": "power", "value": -Infinity, "unit": "kW"}' % NOW_MS,
    b'{"ts": %d, "quantity": "power", "value": 1e400, "unit": "kW"}' % NOW_MS,
    b'{"ts": %d, "quantity": "power", "value": 1%s, "unit": "kW"}' % (NOW_MS, b"0" * 400),
    b'{"ts": %d, "quantity": "power", "value": 123456789012345678901234567890, "unit": "W"}' % NOW_MS,
    b'{"ts": 1%s, "quantity": "power", "value": 1, "unit": "kW"}' % (b"0" * 30),
    item(value=True).encode(),
    item(value="4000").encode(),
    item(value="4,000 W").encode(),
    item(value=None).encode(),
    item(value="unavailable").encode(),
    item(value=2e7).encode(),  # beyond the plausible power range
    item(quantity="energy_total", value=-1, unit="kWh").encode(),
    item(value=1e306, unit="MW").encode(),  # overflows once converted
    item(ts=NOW_MS // 1000).encode(),  # epoch seconds
    item(ts=946_684_799_999).encode(),
    item(ts=NOW_MS + 2 * 86_400_000).encode(),  # in the future
    item(ts=float(NOW_MS)).encode(),
    item(ts="2025-05-01T10:00:00").encode(),  # no offset
    item(ts="2016-12-31T23:59:60Z").encode(),  # leap second
    item(ts=None).encode(),
    item(ts=True).encode(),
    item(unit="kWh").encode(),
    item(unit=None).encode(),
    item(unit=3).encode(),
    item(quantity="volume").encode(),
    item(quantity=["power"]).encode(),
    b'{"ts": %d, "quantity": "power", "value": 1, "unit": "kW", "asset_id": "m1"}' % NOW_MS,
    b'{"ts": %d, "quantity": "power", "value": 1, "unit": "kW", "asset_id": "other"}' % NOW_MS,
    b'{"ts": %d, "quantity": "power", "value": 1}' % NOW_MS,
    b'{"ts": %d, "power_kw": 1.5}' % NOW_MS,
    b'{"ts": %d, "values": {"power_w": 750}}' % NOW_MS,
    b'{"ts": %d, "quantity": "power", "value": 1, "unit": "kW", "unit": "W"}' % NOW_MS,  # duplicate key: last wins
    b"[" + item().encode() + b", 5, " + item(value=None).encode() + b"]",
    b"[" + item().encode() + b", " + item(ts="yesterday").encode() + b"]",
    b"[]",
    b"{}",
    b"42",
    b"[[[[[[[[[[1]]]]]]]]]]",
    b"[" * 100_000,
    b'{"ts": %d, "quantity": "power", "value": 1, "unit": "kW"' % NOW_MS,
    b"\xef\xbb\xbf" + item().encode(),  # BOM
    item().encode("utf-16"),
    b'{"ts": %d, "quantity": "\\ud800", "value": 1, "unit": "kW"}' % NOW_MS,
    b"\xff\xfe\xfd",
]


def decoded(payload: bytes, topic: str = TOPIC) -> tuple[object, object, object]:
    message = decode_message(topic, payload, received_at=RECEIVED, max_bytes=1 << 20, prefix="p/")
    return message.readings, message.dead_letters, message.statuses


@pytest.mark.parametrize("payload", FAST + GENERAL, ids=lambda p: p[:60].decode("utf-8", "replace"))
def test_same_outcome_as_the_general_path(payload: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = decoded(payload)
    monkeypatch.setattr(mqtt_payload, "_fast_readings", lambda body, asset_id: None)
    assert fast == decoded(payload)


@pytest.mark.parametrize("payload", FAST, ids=lambda p: p[:60].decode("utf-8", "replace"))
def test_canonical_items_take_the_fast_path(payload: bytes) -> None:
    readings = _fast_readings(_loads(payload), "m1")
    assert readings and all(r.asset_id == "m1" for r in readings)


@pytest.mark.parametrize("payload", GENERAL[:16], ids=lambda p: p[:60].decode("utf-8", "replace"))
def test_faulty_items_leave_the_fast_path(payload: bytes) -> None:
    try:
        body = _loads(payload)
    except ValueError:
        return
    assert _fast_readings(body, "m1") is None


def test_factory_topic_keeps_its_status_rules() -> None:
    payload = b'{"timestamp": "2025-05-01T10:00:00Z", "machine_id": "m1", "power_kW": 4, "status": "PAUSED"}'
    readings, letters, statuses = decoded(payload, "p/factory/line-1/m1/power")
    assert readings == [] and statuses == []
    assert [(d.field, d.reason_code) for d in letters] == [("status", "invalid_item")]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (item(value="\u0665").encode(), "value"),  # ARABIC-INDIC DIGIT FIVE: float() reads it as 5.0
        (item(value="\uff11\uff12").encode(), "value"),  # FULLWIDTH 12
        (item(ts="\u0661\u0667\u0663\u0665\u0666\u0668\u0669\u0666\u0660\u0660\u0660\u0660\u0660").encode(), "ts"),  # epoch ms
        (b'{"ts": %d, "power_kw": "\\u0665"}' % NOW_MS, "power_kw"),
    ],
)
def test_numbers_in_strings_are_ascii_digits_only(payload: bytes, field: str) -> None:
    readings, letters, _ = decoded(payload)
    assert readings == []
    assert [(d.field, d.reason_code) for d in letters] == [(field, "invalid_item")]  # type: ignore[attr-defined]
    readings, letters, _ = decoded(item(value="5").encode())  # an ASCII decimal string is still read
    assert [r.value for r in readings] == [5.0] and letters == []  # type: ignore[attr-defined]
