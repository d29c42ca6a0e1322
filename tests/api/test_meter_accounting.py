"""Meter arithmetic through the API and the real repository (SQLite and PostgreSQL): glitches,
rollovers, replacements, sentinels and implausible values, each visible on the energy buckets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import ClientAs

KWH = 1e-6
T0 = datetime(2026, 11, 20, tzinfo=UTC)  # site Europe/Berlin: local 01:00
Q = timedelta(minutes=15)


def setup_asset(client: TestClient, asset_id: str = "m1", *, kind: str = "meter", **extra: Any) -> None:
    if client.get("/api/v1/sites/berlin").status_code == 404:
        body = {"id": "berlin", "name": "Berlin", "timezone": "Europe/Berlin"}
        assert client.post("/api/v1/sites", json=body).status_code == 201
    body = {"id": asset_id, "site_id": "berlin", "name": asset_id, "kind": kind, **extra}
    response = client.post("/api/v1/assets", json=body)
    assert response.status_code == 201, response.text


def send(client: TestClient, asset_id: str, quantity: str, values: list[float], *, start: datetime = T0, unit: str = "kWh") -> None:
    items = [
        {"asset_id": asset_id, "ts": (start + i * Q).isoformat(), "quantity": quantity, "value": v, "unit": unit}
        for i, v in enumerate(values)
    ]
    response = client.post("/api/v1/readings", json=items)
    assert response.status_code == 200, response.text
    assert all(i["status"] == "accepted" for i in response.json()["items"]), response.text


def energy(client: TestClient | ClientAs, asset_id: str, *, hours: int = 4, bucket: str = "hour", **params: str) -> Any:
    query = {"start": T0.isoformat(), "end": (T0 + timedelta(hours=hours)).isoformat(), "bucket": bucket, **params}
    response = client.get(f"/api/v1/assets/{asset_id}/energy", params=query)
    assert response.status_code == 200, response.text
    return response.json()


def error(response: Any, status: int, field: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["field"] == field, response.text


def test_a_glitch_to_zero_books_nothing_from_zero_and_marks_its_bucket(client: TestClient) -> None:
    setup_asset(client)
    # 10 kWh per quarter; readings 5 and 6 (01:15, 01:30 UTC) glitch to 0
    values = [1000.0 + 10 * i for i in range(16)]
    values[5] = values[6] = 0.0
    send(client, "m1", "energy_total", values)
    body = energy(client, "m1")
    assert body["total_energy_kwh"] == pytest.approx(150.0, abs=KWH)  # was 150 + 1040 booked from zero
    assert [b["events"] for b in body["buckets"]] == [[], ["glitch"], [], []]  # the spans 01:00-01:45 UTC
    assert [e["kind"] for e in body["events"]] == ["glitch"] and body["events_total"] == 1
    assert "came back" in body["events"][0]["reason"]
    assert all(b["energy_kwh"] >= 0 for b in body["buckets"])


def test_a_declared_modulus_turns_a_wrap_into_its_modular_increase(client: TestClient) -> None:
    setup_asset(client)
    # a 16-bit Wh register: wraps at 65 536 Wh = 65.536 kWh; 2 kWh per quarter, sent in Wh
    true_wh = [60_000 + 2_000 * i for i in range(16)]
    send(client, "m1", "energy_total", [v % 65_536 for v in true_wh], unit="Wh")
    before = energy(client, "m1")
    assert before["total_energy_kwh"] != pytest.approx(30.0)  # without the modulus the wraps are resets

    response = client.patch("/api/v1/assets/m1/series/energy_total", json={"attributes": {"counter_modulus": 65536, "counter_modulus_unit": "Wh"}})
    assert response.status_code == 200, response.text
    assert response.json()["attributes"] == {"counter_modulus_kwh": pytest.approx(65.536)}
    body = energy(client, "m1")
    assert body["total_energy_kwh"] == pytest.approx(30.0, abs=KWH)
    assert "rollover" in {kind for b in body["buckets"] for kind in b["events"]}
    detail = client.get("/api/v1/assets/m1").json()
    assert detail["series"][0]["attributes"] == {"counter_modulus_kwh": pytest.approx(65.536)}


@pytest.mark.parametrize(
    ("attributes", "field"),
    [
        ({"counter_modulus_kwh": -1}, "counter_modulus_kwh"),
        ({"counter_modulus": 65536, "counter_modulus_unit": "bytes"}, "counter_modulus_unit"),
        ({"sign_convention": "import_positive"}, "sign_convention"),
        ({"tariff": "x"}, "tariff"),
    ],
)
def test_bad_series_declarations_are_422_naming_the_key(client: TestClient, attributes: dict[str, Any], field: str) -> None:
    setup_asset(client)
    error(client.patch("/api/v1/assets/m1/series/energy_total", json={"attributes": attributes}), 422, field)
    error(client.patch("/api/v1/assets/m1/series/volume", json={"attributes": {}}), 422, "quantity")
    error(client.patch("/api/v1/assets/nope/series/energy_total", json={"attributes": {}}), 404, "asset_id")


def test_a_meter_replacement_books_each_side_and_leaves_the_window_a_gap(client: TestClient, operator_client: ClientAs) -> None:
    setup_asset(client)
    old = [5000.0 + 10 * i for i in range(6)]  # 00:00 .. 01:15 UTC
    send(client, "m1", "energy_total", old)
    new_start = T0 + timedelta(hours=2)  # the new meter reads from 02:00 UTC, starting at 0.4 kWh
    send(client, "m1", "energy_total", [0.4 + 10 * i for i in range(8)], start=new_start)
    before = energy(client, "m1")
    # undeclared, the swap reads as a reset: the 3 kWh to the old meter's final reading are lost and
    # 0.4 kWh (the new meter's start) is spread over 01:15-02:00
    assert before["total_energy_kwh"] == pytest.approx(50.0 + 0.4 + 70.0, abs=KWH)
    assert [e["kind"] for e in before["events"]] == ["reset"]

    body = {
        "old_final": {"ts": (T0 + timedelta(hours=1, minutes=20)).isoformat(), "value": 5053.0},
        "new_first": {"ts": new_start.isoformat(), "value": 400, "unit": "Wh"},
        "old_serial": "OLD-1", "new_serial": "NEW-2",
    }
    response = operator_client.post("/api/v1/assets/m1/meter-replacements", json=body)
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["new_value_kwh"] == pytest.approx(0.4) and stored["created_by"]

    after = energy(client, "m1")
    buckets = after["buckets"]
    # old meter: 00:00-01:15 five spans of 10 kWh, then 01:15-01:20 +3 kWh to its final reading
    assert buckets[0]["energy_kwh"] == pytest.approx(40.0, abs=KWH)
    assert buckets[1]["energy_kwh"] == pytest.approx(13.0, abs=KWH)
    # new meter from 02:00: 7 spans of 10 kWh; the window 01:20-02:00 has no energy (not 0 kWh)
    assert buckets[2]["energy_kwh"] == pytest.approx(40.0, abs=KWH)
    assert buckets[3]["energy_kwh"] == pytest.approx(30.0, abs=KWH)
    assert after["total_energy_kwh"] == pytest.approx(123.0, abs=KWH)
    assert buckets[1]["events"] == ["replacement"] and buckets[1]["mean_power_kw"] == pytest.approx(13.0 / (20 / 60))  # 20 min covered
    quarters = energy(client, "m1", bucket="15min")["buckets"]
    assert [b["energy_kwh"] for b in quarters[6:8]] == [None, None]  # 01:30-02:00: the swap window
    assert all(b["energy_kwh"] is None or b["energy_kwh"] >= 0 for b in quarters)

    listed = client.get("/api/v1/assets/m1/meter-replacements").json()
    assert [(r["old_serial"], r["new_serial"]) for r in listed] == [("OLD-1", "NEW-2")]
    assert client.get("/api/v1/assets/m1").json()["series"][0]["attributes"]["meter_serial"] == "NEW-2"
    audit = client.get("/api/v1/audit", params={"event": "meter_replaced"}).json()
    entries = audit["entries"] if isinstance(audit, dict) else audit
    assert any(e["event"] == "meter_replaced" and e["subject"] == "m1" for e in entries)
    error(operator_client.post("/api/v1/assets/m1/meter-replacements", json=body), 409, "old_final.ts")


def test_kpis_the_metering_tree_and_co2_book_a_declared_replacement_as_the_energy_report_does(
    client: TestClient, operator_client: ClientAs
) -> None:
    """A swap read as a reset would lose the old meter's last 3 kWh and book the new meter's start:
    every figure of the site must be the energy report's 213 kWh instead."""
    setup_asset(client, "m3")
    hour = timedelta(hours=1)
    items = [{"asset_id": "m3", "ts": (T0 + i * hour).isoformat(), "quantity": "energy_total", "value": 5000.0 + 10 * i, "unit": "kWh"}
             for i in range(11)]  # 00:00 .. 10:00 UTC: 100 kWh
    items += [{"asset_id": "m3", "ts": (T0 + (12 + i) * hour).isoformat(), "quantity": "energy_total", "value": 10.0 * i, "unit": "kWh"}
              for i in range(12)]  # the new meter, 12:00 .. 23:00 UTC from 0: 110 kWh
    assert client.post("/api/v1/readings", json=items).status_code == 200
    body = {"old_final": {"ts": (T0 + 10.5 * hour).isoformat(), "value": 5103.0}, "new_first": {"ts": (T0 + 11.5 * hour).isoformat(), "value": 0}}
    assert operator_client.post("/api/v1/assets/m3/meter-replacements", json=body).status_code == 201
    assert client.patch("/api/v1/sites/berlin", json={"attributes": {"co2_factor_g_per_kwh": 400}}).status_code == 200
    period = {"start": T0.isoformat(), "end": (T0 + 24 * hour).isoformat()}
    report = client.get("/api/v1/assets/m3/energy", params={**period, "bucket": "day", "with": "co2"}).json()
    assert report["total_energy_kwh"] == pytest.approx(213.0, abs=KWH)
    assert report["total_co2_kg"] == pytest.approx(213.0 * 0.4, abs=KWH)
    for url in ("/api/v1/assets/m3/kpis", "/api/v1/sites/berlin/kpis"):
        kpis = client.get(url, params=period).json()
        assert kpis["energy_kwh"] == pytest.approx(213.0, abs=KWH), url
        assert kpis["co2_kg"] == pytest.approx(213.0 * 0.4, abs=KWH), url
    tree = client.get("/api/v1/sites/berlin/metering-tree", params=period).json()
    assert tree["total_energy_kwh"] == pytest.approx(213.0, abs=KWH) and tree["meters"][0]["energy_kwh"] == pytest.approx(213.0, abs=KWH)


def test_meter_replacement_input_is_checked_naming_the_field(client: TestClient, viewer_client: ClientAs) -> None:
    setup_asset(client)
    send(client, "m1", "energy_total", [100.0, 110.0, 120.0])
    good = {"old_final": {"ts": "2026-11-20T00:40:00Z", "value": 125.0}, "new_first": {"ts": "2026-11-20T01:00:00Z", "value": 0.0}}

    def variant(path: str, value: Any) -> dict[str, Any]:
        body = {"old_final": dict(good["old_final"]), "new_first": dict(good["new_first"])}
        side, key = path.split(".")
        body[side][key] = value
        return body

    url = "/api/v1/assets/m1/meter-replacements"
    error(client.post(url, json=variant("old_final.value", 115.0)), 422, "old_final.value")  # below the stored 120 at 00:30
    error(client.post(url, json=variant("new_first.ts", "2026-11-20T00:10:00Z")), 422, "new_first.ts")
    error(client.post(url, json=variant("old_final.ts", "2026-11-20T00:40:00")), 422, "old_final.ts")  # no offset
    error(client.post(url, json=variant("old_final.unit", "kWhh")), 422, "old_final.unit")
    error(client.post(url, json=variant("new_first.value", -3.0)), 422, "new_first.value")
    error(client.post(url, json={**good, "quantity": "power"}), 422, "quantity")
    error(client.post("/api/v1/assets/nope/meter-replacements", json=good), 404, "asset_id")
    assert viewer_client.post(url, json=good).status_code == 403
    assert client.post(url, json=good).status_code == 201


def test_sentinels_are_rejected_naming_the_field_and_the_good_items_stay(client: TestClient) -> None:
    setup_asset(client)
    items = [
        {"device_id": "m1", "ts": "2026-11-20T00:00:00Z", "power_w": 750},
        {"device_id": "m1", "ts": "2026-11-20T00:15:00Z", "power_w": 65535},
        {"device_id": "m1", "ts": "2026-11-20T00:30:00Z", "energy_total": 4294967295, "unit": "Wh"},
        {"asset_id": "m1", "ts": "2026-11-20T00:45:00Z", "quantity": "energy_total", "value": -1, "unit": "kWh"},
    ]
    body = client.post("/api/v1/readings", json=items).json()
    assert [i["status"] for i in body["items"]] == ["accepted", "rejected", "rejected", "rejected"]
    assert [i["field"] for i in body["items"][1:]] == ["power_w", "energy_total", "value"]
    assert all("not available" in i["reason"] for i in body["items"][1:])
    assert body["stored"] == 1


def test_an_increase_far_above_the_rated_power_is_quarantined(client: TestClient) -> None:
    setup_asset(client, rated_power_kw=40.0)  # at most 2 x 40 kW x 0.25 h + 1 kWh = 21 kWh per quarter
    values = [1000.0 + 10 * i for i in range(16)]
    values[9] = 900_000.0  # one corrupted read at 02:15 UTC
    send(client, "m1", "energy_total", values)
    body = energy(client, "m1")
    assert body["total_energy_kwh"] == pytest.approx(150.0, abs=KWH)
    assert [b["events"] for b in body["buckets"]] == [[], [], ["quarantined"], []]
    (event,) = body["events"]
    assert "40 kW" in event["reason"] and "kWh" in event["reason"]

    setup_asset(client, "site-meter", attributes={"connection_capacity_kw": 40.0})  # a connection's capacity works alike
    send(client, "site-meter", "energy_total", values)
    assert energy(client, "site-meter")["total_energy_kwh"] == pytest.approx(150.0, abs=KWH)
    error(client.patch("/api/v1/assets/site-meter", json={"attributes": {"connection_capacity_kw": -4}}), 422, "connection_capacity_kw")


def test_a_changed_meter_serial_on_readings_is_a_replacement(client: TestClient) -> None:
    """The old meter's last reading is its final one, the first reading of the new serial the new
    meter's first; the time between them is a gap. Stale history of the old serial changes nothing."""
    setup_asset(client)

    def item(i: int, value: float, serial: str) -> dict[str, Any]:
        ts = (T0 + i * Q).isoformat()
        return {"asset_id": "m1", "ts": ts, "quantity": "energy_total", "value": value, "unit": "kWh", "meter_serial": serial}

    old = [item(i, 7000.0 + 10 * i, "OLD-1") for i in range(6)]  # 00:00 .. 01:15
    new = [item(i, 2.0 + 10 * (i - 8), "NEW-2") for i in range(8, 16)]  # 02:00 .. 03:45
    assert client.post("/api/v1/readings", json=old).status_code == 200
    assert client.get("/api/v1/assets/m1/meter-replacements").json() == []  # the first serial is only recorded
    response = client.post("/api/v1/readings", json=new)
    assert response.status_code == 200 and response.json()["accepted"] == 8, response.text
    (swap,) = client.get("/api/v1/assets/m1/meter-replacements").json()
    assert (swap["old_serial"], swap["new_serial"], swap["source"]) == ("OLD-1", "NEW-2", "telemetry")
    assert (swap["old_value_kwh"], swap["new_value_kwh"]) == (7050.0, 2.0)
    body = energy(client, "m1")
    assert body["total_energy_kwh"] == pytest.approx(50.0 + 70.0, abs=KWH)
    assert [b["energy_kwh"] for b in energy(client, "m1", bucket="15min")["buckets"][5:8]] == [None, None, None]
    assert body["buckets"][1]["events"] == ["replacement"]
    # a late delivery of the old meter's reading at 01:30 is history, not a swap back
    assert client.post("/api/v1/readings", json=[item(6, 7060.0, "OLD-1")]).status_code == 200
    assert len(client.get("/api/v1/assets/m1/meter-replacements").json()) == 1
    rejected = client.post("/api/v1/readings", json=[item(20, 90.0, "")])
    assert rejected.status_code == 422 and rejected.json()["items"][0]["field"] == "meter_serial", rejected.text


@pytest.mark.parametrize(("start_min", "end_min"), [(0, 80), (0, 95), (85, 240), (100, 240), (70, 110)])
def test_a_glitch_at_the_edge_of_a_range_is_a_glitch_as_inside_a_longer_one(client: TestClient, start_min: int, end_min: int) -> None:
    """Readings at 01:15 and 01:30 UTC fall to 500 kWh (not zero, so a reset would book 500 kWh);
    any range cut next to them gives every 15-minute bucket the energy of the whole-range query."""
    setup_asset(client)
    values = [1000.0 + 10 * i for i in range(16)]
    values[5] = values[6] = 500.0
    send(client, "m1", "energy_total", values)
    whole = {b["start"]: b["energy_kwh"] for b in energy(client, "m1", bucket="15min")["buckets"]}
    params = {"start": (T0 + timedelta(minutes=start_min)).isoformat(), "end": (T0 + timedelta(minutes=end_min)).isoformat(), "bucket": "15min"}
    part = client.get("/api/v1/assets/m1/energy", params=params).json()["buckets"]
    for bucket in part:
        if bucket["start"] in whole and bucket["start"][14:16] in ("00", "15", "30", "45"):
            full_length = datetime.fromisoformat(bucket["end"]) - datetime.fromisoformat(bucket["start"]) == Q
            if full_length:
                assert bucket["energy_kwh"] == pytest.approx(whole[bucket["start"]], abs=KWH), bucket
    assert all("reset" not in b["events"] for b in part)
