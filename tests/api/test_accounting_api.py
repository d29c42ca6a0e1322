"""KPIs, CO2 and the metering tree through the API on small exact profiles (SQLite and PostgreSQL):
energy per unit produced, export as avoided CO2, partial data, two root meters, attribute checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from digitaltwin.domain.readings import Reading
from digitaltwin.storage.repository import Repository

T0 = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday, UTC site
DAY = {"start": "2024-03-04T00:00:00Z", "end": "2024-03-05T00:00:00Z"}


def _setup(client: TestClient, *, factor: float | None = 300.0) -> None:
    attributes = {"co2_factor_g_per_kwh": factor} if factor is not None else {}
    assert client.post("/api/v1/sites", json={"id": "p", "name": "P", "timezone": "UTC", "attributes": attributes}).status_code == 201
    for asset_id, parent in (("main", None), ("pv", "main"), ("yard", None)):
        body = {"id": asset_id, "site_id": "p", "name": asset_id, "kind": "meter", "parent_id": parent}
        assert client.post("/api/v1/assets", json=body).status_code == 201


def test_energy_per_unit_and_avoided_co2(client: TestClient, repo: Repository) -> None:
    _setup(client)
    # main: 2 kWh per 15 min for the first 12 h, then -1 kWh (export) for 12 h
    main = [Reading("main", "energy", T0 + timedelta(minutes=15 * i), 2.0 if i < 48 else -1.0) for i in range(96)]
    production = [Reading("main", "production_total", T0 + timedelta(hours=h), 1000.0 + 5 * h) for h in range(25)]
    repo.write_readings(main, interval_seconds=900)
    repo.write_readings(production)
    k = client.get("/api/v1/assets/main/kpis", params=DAY).json()
    assert k["energy_kwh"] == pytest.approx(96.0 - 48.0)
    assert k["production_units"] == pytest.approx(120.0)
    assert k["energy_per_unit_kwh"] == pytest.approx(48.0 / 120.0)
    assert k["co2_kg"] == pytest.approx(96.0 * 0.3) and k["avoided_co2_kg"] == pytest.approx(48.0 * 0.3)
    assert k["peak_demand_kw"] == 8.0 and k["completeness"] == 1.0
    e = client.get("/api/v1/assets/main/energy", params={**DAY, "bucket": "hour", "with": "co2"}).json()
    assert e["buckets"][0]["co2_kg"] == pytest.approx(2.4) and e["buckets"][0]["avoided_co2_kg"] == 0.0
    assert e["buckets"][23]["co2_kg"] == 0.0 and e["buckets"][23]["avoided_co2_kg"] == pytest.approx(1.2)
    assert e["total_co2_kg"] == pytest.approx(28.8) and e["total_avoided_co2_kg"] == pytest.approx(14.4)


def test_partial_data_two_roots_and_the_tree(client: TestClient, repo: Repository) -> None:
    _setup(client, factor=None)
    # power (kW) samples every 15 min: main and pv from 12:00 to 17:45 only, yard all day. The last
    # sample holds for POWER_MAX_HOLD_SECONDS (1 h by default), so main covers 12:00-18:45 (6.75 h).
    main = [Reading("main", "power", T0 + timedelta(minutes=15 * i), 10.0) for i in range(48, 72)]
    pv = [Reading("pv", "power", T0 + timedelta(minutes=15 * i), 12.0) for i in range(48, 72)]  # reads more than main
    yard = [Reading("yard", "power", T0 + timedelta(minutes=15 * i), 1.0) for i in range(96)]
    repo.write_readings(main + pv + yard)
    k = client.get("/api/v1/assets/main/kpis", params=DAY).json()
    assert k["energy_kwh"] == pytest.approx(67.5)
    assert k["completeness"] == pytest.approx(6.75 / 24)
    assert k["base_load_kw"] is None  # no data at night
    assert k["co2_kg"] is None and k["co2_source"] is None and k["co2_uncovered_kwh"] is None
    site = client.get("/api/v1/sites/p/kpis", params=DAY).json()
    assert site["assets"] == ["main", "yard"]
    assert site["energy_kwh"] == pytest.approx(67.5 + 24.0)  # pv is main's child: not counted again
    assert site["peak_demand_kw"] == pytest.approx(11.0) and site["base_load_kw"] == pytest.approx(1.0)
    assert site["peak_ts"] == "2024-03-04T12:00:00Z"
    assert site["completeness"] == pytest.approx((6.75 + 24) / 48)
    tree = client.get("/api/v1/sites/p/metering-tree", params=DAY).json()
    meters = {m["asset_id"]: m for m in tree["meters"]}
    assert meters["main"]["unmetered_kwh"] == pytest.approx(67.5 - 81.0) and meters["main"]["meter_error"] is True
    assert meters["main"]["quantity"] == "power"
    assert tree["total_energy_kwh"] == pytest.approx(91.5)


def test_bad_input_names_the_field(client: TestClient) -> None:
    _setup(client)
    r = client.patch("/api/v1/assets/main", json={"attributes": {"floor_area_m2": -5}})
    assert r.status_code == 422 and r.json()["field"] == "floor_area_m2"
    for url in ("/api/v1/assets/main/kpis", "/api/v1/sites/p/kpis", "/api/v1/sites/p/metering-tree"):
        r = client.get(url, params={"start": "2024-03-05T00:00:00Z", "end": "2024-03-04T00:00:00Z"})
        assert r.status_code == 422 and r.json()["field"] == "end", url
        r = client.get(url, params={"start": "2024-03-04T00:00:00", "end": "2024-03-05T00:00:00Z"})
        assert r.status_code == 422 and r.json()["field"] == "start", url
        r = client.get(url, params={"start": "2000-01-01T00:00:00Z", "end": "2024-03-05T00:00:00Z"})
        assert r.status_code == 422 and r.json()["field"] == "end", url
    r = client.get("/api/v1/assets/main/kpis", params=DAY)  # no energy series
    assert r.status_code == 404 and r.json()["field"] == "quantity"
    assert client.get("/api/v1/sites/nowhere/kpis", params=DAY).status_code == 404
    r = client.post("/api/v1/sites", json={"id": "q", "name": "Q", "timezone": "UTC", "attributes": {"longitude": 200}})
    assert r.status_code == 422 and r.json()["field"] == "longitude"
