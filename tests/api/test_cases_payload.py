"""Field cases on telemetry payloads, through ``POST /api/v1/readings`` and the energy endpoint (SQLite and PostgreSQL).

The case inputs are sent as the raw bytes of the case files (NaN and Infinity tokens
included), either each line as its own request body or the lines joined into one batch
array. Every response is parsed as strict JSON (:func:`strict`). Case files under
``/work/shared/cases/``:

* ``payload/wh-vs-kwh-units.md``: ``test_wh_and_kwh_counters_give_the_same_energy_and_cost``,
  ``test_power_in_w_and_kw_is_stored_the_same``
* ``payload/epoch-seconds-vs-milliseconds.md``: ``test_epoch_seconds_are_rejected_milliseconds_stored``
* ``payload/numeric-strings.md``: ``test_plain_decimal_strings_are_coerced_and_counted``
* ``payload/nan-and-infinity.md``: ``test_nan_and_infinity_are_rejected_per_request``,
  ``test_non_finite_values_in_one_batch``
* ``time/leap-day-and-leap-second.md`` (b): ``test_leap_second_is_a_422_naming_ts``
* ``time/naive-timestamps.md`` (HTTP policy): ``test_naive_timestamps_need_a_timezone``
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

KWH = 1e-6  # tolerance on kWh
TARIFF_EUR_PER_KWH = 0.30


def _no_constants(token: str) -> float:
    raise AssertionError(f"response is not strict JSON: bare {token}")


def strict(response: Any, status: int | None = None) -> Any:
    """The body of ``response`` parsed as strict JSON (no NaN/Infinity tokens); never a 500."""
    assert response.status_code < 500, response.text
    if status is not None:
        assert response.status_code == status, response.text
    return json.loads(response.content, parse_constant=_no_constants)


def register(client: TestClient, timezone: str, *asset_ids: str) -> None:
    site_id = "site-" + timezone.replace("/", "-").lower()
    strict(client.post("/api/v1/sites", json={"id": site_id, "name": site_id, "timezone": timezone}), 201)
    for asset_id in asset_ids:
        strict(client.post("/api/v1/assets", json={"id": asset_id, "site_id": site_id, "name": asset_id, "kind": "meter"}), 201)


def post(client: TestClient, body: bytes) -> Any:
    return client.post("/api/v1/readings", content=body, headers={"content-type": "application/json"})


def batch(lines: list[bytes]) -> bytes:
    """The case's lines, byte for byte, as one JSON array."""
    return b"[" + b",".join(lines) + b"]"


def item_results(body: Any) -> list[tuple[str, str | None]]:
    return [(i["status"], i["field"]) for i in body["items"]]


def readings(client: TestClient, asset_id: str) -> list[tuple[datetime, float, str, str]]:
    body = strict(client.get(f"/api/v1/assets/{asset_id}/readings", params={"limit": 1000}), 200)
    return [(datetime.fromisoformat(r["ts"]), r["value"], r["unit"], r["quantity"]) for r in body["readings"]]


def energy(client: TestClient, asset_id: str, start: str, end: str, bucket: str = "hour") -> Any:
    return strict(client.get(f"/api/v1/assets/{asset_id}/energy", params={"start": start, "end": end, "bucket": bucket}), 200)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- wh-vs-kwh-units -----------------------------------------------------------------


WH_CASE = [
    b'{"device_id":"m-wh","ts":"2026-03-27T09:00:00Z","energy_total":1500000,"unit":"Wh"}',
    b'{"device_id":"m-wh","ts":"2026-03-27T10:00:00Z","energy_total":1502500,"unit":"Wh"}',
    b'{"device_id":"m-kwh","ts":"2026-03-27T09:00:00Z","energy_total":1500.0,"unit":"kWh"}',
    b'{"device_id":"m-kwh","ts":"2026-03-27T10:00:00Z","energy_total":1502.5,"unit":"kWh"}',
    b'{"device_id":"m-bad","ts":"2026-03-27T10:00:00Z","energy_total":12,"unit":"kwhh"}',
]


def test_wh_and_kwh_counters_give_the_same_energy_and_cost(client: TestClient) -> None:
    register(client, "UTC", "m-wh", "m-kwh", "m-bad")
    body = strict(post(client, batch(WH_CASE)), 200)
    assert item_results(body) == [("accepted", None)] * 4 + [("rejected", "unit")]
    assert "kwhh" in body["items"][4]["reason"]
    assert (body["accepted"], body["rejected"], body["stored"]) == (4, 1, 4)

    for meter in ("m-wh", "m-kwh"):
        out = energy(client, meter, "2026-03-27T09:00:00Z", "2026-03-27T10:00:00Z")
        assert out["quantity"] == "energy_total"
        (hour,) = out["buckets"]
        assert utc(hour["start"]) == utc("2026-03-27T09:00:00+00:00")
        assert hour["energy_kwh"] == pytest.approx(2.5, abs=KWH)  # not 2500 kWh
        assert out["total_energy_kwh"] == pytest.approx(2.5, abs=KWH)
        assert hour["energy_kwh"] * TARIFF_EUR_PER_KWH == pytest.approx(0.75, abs=KWH)  # not 750 EUR
        assert [(ts, value, unit) for ts, value, unit, _ in readings(client, meter)] == [
            (utc("2026-03-27T09:00:00+00:00"), pytest.approx(1500.0, abs=KWH), "kWh"),
            (utc("2026-03-27T10:00:00+00:00"), pytest.approx(1502.5, abs=KWH), "kWh"),
        ]

    assert readings(client, "m-bad") == []
    assert strict(client.get("/api/v1/assets/m-bad"), 200)["series"] == []

    alone = strict(post(client, WH_CASE[4]), 422)  # the bad message on its own
    assert item_results(alone) == [("rejected", "unit")]
    assert readings(client, "m-bad") == []


def test_power_in_w_and_kw_is_stored_the_same(client: TestClient) -> None:
    register(client, "UTC", "p-kw", "p-w")
    body = strict(
        post(
            client,
            b'[{"device_id":"p-kw","ts":"2026-03-27T10:00:00Z","power":2.5,"unit":"kW"},'
            b'{"device_id":"p-w","ts":"2026-03-27T10:00:00Z","power":2500,"unit":"W"}]',
        ),
        200,
    )
    assert item_results(body) == [("accepted", None), ("accepted", None)]
    (kw,) = readings(client, "p-kw")
    (w,) = readings(client, "p-w")
    assert kw == w == (utc("2026-03-27T10:00:00+00:00"), pytest.approx(2.5), "kW", "power")


# -- epoch-seconds-vs-milliseconds ----------------------------------------------------


EPOCH_CASE = [
    b'{"device_id":"m-ts","ts":1717243200,"values":{"power_w":750}}',
    b'{"device_id":"m-ts","ts":1717243200000,"values":{"power_w":750}}',
]


def test_epoch_seconds_are_rejected_milliseconds_stored(client: TestClient) -> None:
    register(client, "UTC", "m-ts")
    seconds = strict(post(client, EPOCH_CASE[0]), 422)
    assert item_results(seconds) == [("rejected", "ts")]
    assert "1970-01-20T21:00:43.200" in seconds["items"][0]["reason"]
    assert readings(client, "m-ts") == []

    both = strict(post(client, batch(EPOCH_CASE)), 200)
    assert item_results(both) == [("rejected", "ts"), ("accepted", None)]
    assert readings(client, "m-ts") == [(utc("2024-06-01T12:00:00+00:00"), pytest.approx(0.75), "kW", "power")]
    assert all(ts.year == 2024 for ts, *_ in readings(client, "m-ts"))  # nothing in 1970


# -- numeric-strings ---------------------------------------------------------------------


NUMERIC_CASE = [
    b'{"device_id":"m-str","ts":"2025-05-01T10:00:00Z","power_w":1000}',
    b'{"device_id":"m-str","ts":"2025-05-01T10:20:00Z","power_w":"4000"}',
    b'{"device_id":"m-str","ts":"2025-05-01T10:40:00Z","power_w":1000}',
    b'{"device_id":"m-str","ts":"2025-05-01T10:50:00Z","power_w":"4,000 W"}',
]


def test_plain_decimal_strings_are_coerced_and_counted(client: TestClient) -> None:
    register(client, "UTC", "m-str")
    body = strict(post(client, batch(NUMERIC_CASE)), 200)
    assert item_results(body) == [("accepted", None)] * 3 + [("rejected", "power_w")]

    stored = readings(client, "m-str")
    assert len(stored) == 3
    assert sum(value for _, value, *_ in stored) * 1000 == pytest.approx(6000.0)  # W
    assert [ts for ts, *_ in stored] == [utc(f"2025-05-01T10:{m}:00+00:00") for m in ("00", "20", "40")]

    (hour,) = energy(client, "m-str", "2025-05-01T10:00:00Z", "2025-05-01T11:00:00Z")["buckets"]
    assert hour["sample_count"] == 3
    assert hour["mean_power_kw"] * 1000 == pytest.approx(2000.0, abs=1e-3)  # W; never 1000 W with count 3
    assert hour["energy_kwh"] == pytest.approx(2.0, abs=KWH)


# -- nan-and-infinity ------------------------------------------------------------------


NAN_CASE = [
    b'{"device_id":"m-nan","ts":"2025-05-01T10:00:00Z","power_w":NaN}',
    b'{"device_id":"m-nan","ts":"2025-05-01T10:05:00Z","power_w":Infinity}',
    b'{"device_id":"m-nan","ts":"2025-05-01T10:10:00Z","power_w":1200}',
]


def test_nan_and_infinity_are_rejected_per_request(client: TestClient) -> None:
    register(client, "UTC", "m-nan")
    results = [strict(post(client, line)) for line in NAN_CASE]
    assert [item_results(r) for r in results] == [[("rejected", "power_w")], [("rejected", "power_w")], [("accepted", None)]]
    assert all("finite" in r["items"][0]["reason"] for r in results[:2])
    assert readings(client, "m-nan") == [(utc("2025-05-01T10:10:00+00:00"), pytest.approx(1.2), "kW", "power")]

    out = energy(client, "m-nan", "2025-05-01T09:00:00Z", "2025-05-01T11:00:00Z")
    empty, hour = out["buckets"]
    assert (empty["energy_kwh"], empty["mean_power_kw"], empty["peak_power_kw"]) == (None, None, None)  # null, not NaN
    assert hour["sample_count"] == 1
    assert hour["mean_power_kw"] * 1000 == pytest.approx(1200.0, abs=1e-3)  # W, not NaN


def test_non_finite_values_in_one_batch(client: TestClient) -> None:
    """The case's lines in one batch, plus the other spellings of a number no float holds."""
    register(client, "UTC", "m-nan")
    extra = [
        b'{"device_id":"m-nan","ts":"2025-05-01T10:15:00Z","power_w":-Infinity}',
        b'{"device_id":"m-nan","ts":"2025-05-01T10:20:00Z","power_w":1e999}',
        b'{"device_id":"m-nan","ts":"2025-05-01T10:25:00Z","power_w":1' + b"0" * 400 + b"}",
        b'{"device_id":"m-nan","ts":1' + b"0" * 400 + b',"power_w":1200}',
        b'{"device_id":"m-nan","ts":NaN,"power_w":1200}',
        b'{"device_id":"m-nan","ts":"2025-05-01T10:30:00Z","power":1e306,"unit":"MW"}',  # finite, but not in kW
    ]
    body = strict(post(client, batch(NAN_CASE + extra)), 200)
    assert item_results(body) == [
        ("rejected", "power_w"),
        ("rejected", "power_w"),
        ("accepted", None),
        ("rejected", "power_w"),
        ("rejected", "power_w"),
        ("rejected", "power_w"),
        ("rejected", "ts"),
        ("rejected", "ts"),
        ("rejected", "unit"),
    ]
    assert (body["accepted"], body["stored"]) == (1, 1)
    assert [ts for ts, *_ in readings(client, "m-nan")] == [utc("2025-05-01T10:10:00+00:00")]


# -- time cases at the HTTP edge --------------------------------------------------------


def test_leap_second_is_a_422_naming_ts(client: TestClient) -> None:
    register(client, "UTC", "m-ls")
    body = strict(post(client, b'{"device_id":"m-ls","ts":"2016-12-31T23:59:60Z","power_w":100}'), 422)
    assert item_results(body) == [("rejected", "ts")]
    assert body["stored"] == 0
    assert readings(client, "m-ls") == []


def test_naive_timestamps_need_a_timezone(client: TestClient) -> None:
    register(client, "Europe/Amsterdam", "m-ams")
    items = b'[{"device_id":"m-ams","ts":"2024-08-09 23:00","energy_kwh":0.9}]'
    rejected = strict(post(client, b'{"readings":' + items + b"}"), 422)
    assert item_results(rejected) == [("rejected", "ts")]
    assert "no UTC offset" in rejected["items"][0]["reason"]
    assert readings(client, "m-ams") == []

    accepted = strict(post(client, b'{"timezone":"Europe/Amsterdam","readings":' + items + b"}"), 200)
    assert item_results(accepted) == [("accepted", None)]
    ((ts, value, unit, quantity),) = readings(client, "m-ams")
    assert int(ts.timestamp()) == 1723237200
    assert (value, unit, quantity) == (pytest.approx(0.9), "kWh", "energy")
