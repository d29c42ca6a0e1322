"""``POST /api/v1/sites/{site_id}/scenarios`` on both backends: the steel plant's March with a battery, per month
and in total, perfect foresight labelled, the role it needs and 422s naming the field."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from digitaltwin.services import demo
from digitaltwin.storage.repository import Repository
from tests.conftest import STEEL_CSV

from .conftest import ClientAs

URL = f"/api/v1/sites/{demo.SITE.id}/scenarios"
BATTERY = {"capacity_kwh": 600, "max_charge_kw": 300, "max_discharge_kw": 300, "soc_min": 0.1, "soc_max": 0.9}


@pytest.fixture
def steel(client: TestClient, repo: Repository) -> TestClient:
    demo.setup_and_import(repo, STEEL_CSV)
    demo.assign_demo_tariff(repo)
    return client


def test_battery_scenario_per_month_and_total(steel: TestClient, operator_client: ClientAs, viewer_client: ClientAs) -> None:
    body = {"start": "2018-03-01", "end": "2018-04-01", "battery": BATTERY}
    r = operator_client.post(URL, json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["currency"] == "KRW" and out["perfect_foresight"] is False and len(out["periods"]) == 1
    assert out["battery"]["forecast_algorithm"] == "seasonal_naive_daily" and out["battery"]["plans"] == 31
    total = out["total"]
    assert total["savings"]["total"] > 0
    parts = sum(v for k, v in total["savings"].items() if k != "total")
    assert abs(parts - total["savings"]["total"]) <= 5  # whole won, each item rounded on its own
    assert total["savings"]["total"] == pytest.approx(total["baseline"]["bill"]["total"] - total["scenario"]["bill"]["total"], abs=1)
    assert total["peak_reduction_kw"] > 0 and total["baseline"]["co2_kg"] > 0
    assert out["periods"][0]["first_day"] == "2018-03-01" and out["periods"][0]["savings"] == total["savings"]

    perfect = operator_client.post(URL, json={**body, "battery": {**BATTERY, "perfect_foresight": True}}).json()
    assert perfect["perfect_foresight"] is True and "PERFECT FORESIGHT" in " ".join(perfect["assumptions"])
    assert perfect["total"]["savings"]["total"] >= total["savings"]["total"]

    assert viewer_client.post(URL, json=body).status_code == 403


@pytest.mark.parametrize(("patch", "field"), [
    ({"end": "2018-03-01"}, "end"),
    ({"start": "2018-01-01", "end": "2019-03-01"}, "end"),
    ({"start": "March"}, "start"),
    ({"start": "9999-12-01", "end": "9999-12-31"}, "start"),
    ({"start": "2018-03-01", "end": "9999-12-31"}, "end"),
    ({"battery": {**BATTERY, "capacity_kwh": -1}}, "battery.capacity_kwh"),
    ({"battery": {**BATTERY, "soc_min": 0.9, "soc_max": 0.1}}, "battery.soc_min"),
    ({"battery": {**BATTERY, "forecast_algorithm": "crystal-ball"}}, "battery.forecast_algorithm"),
    ({"battery": {**BATTERY, "colour": "red"}}, "battery.colour"),
    ({"battery": {**BATTERY, "capacity_kwh": 1e300}}, "battery.capacity_kwh"),
    ({"battery": {**BATTERY, "max_charge_kw": 1e308}}, "battery.max_charge_kw"),
    ({"battery": {**BATTERY, "charge_efficiency": 1e-300}}, "battery.charge_efficiency"),
    ({"battery": {**BATTERY, "degradation_cost_per_kwh": 1e200}}, "battery.degradation_cost_per_kwh"),
    ({"shift": {"energy_kwh_per_day": 1e300, "from_start": "10:00", "from_end": "12:00", "to_start": "00:00", "to_end": "06:00"}},
     "shift.energy_kwh_per_day"),
    ({"pv": {"kwp": 100, "weather_asset_id": "nowhere"}}, "pv.latitude"),
    ({"pv": {"kwp": 0, "weather_asset_id": "w", "latitude": 35, "longitude": 127}}, "pv.kwp"),
    ({"shift": {"energy_kwh_per_day": 10, "from_start": "25:00", "from_end": "12:00", "to_start": "00:00", "to_end": "06:00"}}, "shift.from_start"),
    ({"shift": {"energy_kwh_per_day": 10, "from_start": "12:00", "from_end": "10:00", "to_start": "00:00", "to_end": "06:00"}}, "shift.from_end"),
])
def test_bad_input_is_422_naming_the_field(steel: TestClient, patch: dict[str, object], field: str) -> None:
    r = steel.post(URL, json={"start": "2018-03-01", "end": "2018-04-01", **patch})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field


def test_unknown_tariff_and_site_are_404(steel: TestClient) -> None:
    r = steel.post(URL, json={"start": "2018-03-01", "end": "2018-04-01", "tariff_id": "nope"})
    assert r.status_code == 404 and r.json()["field"] == "tariff_id"
    r = steel.post("/api/v1/sites/nowhere/scenarios", json={"start": "2018-03-01", "end": "2018-04-01"})
    assert r.status_code == 404


def test_all_changes_at_once_under_another_tariff(steel: TestClient, repo: Repository) -> None:
    from tests.integration.test_scenarios import FLAT, _weather

    _weather(repo)
    assert steel.post("/api/v1/tariffs", json={**FLAT, "id": "flat"}).status_code == 201
    body = {"start": "2018-03-01", "end": "2018-04-01", "tariff_id": "flat", "battery": BATTERY,
            "pv": {"kwp": 300, "weather_asset_id": "weather", "latitude": 34.9, "longitude": 127.7},
            "shift": {"energy_kwh_per_day": 200, "from_start": "10:00", "from_end": "12:00", "to_start": "00:00", "to_end": "06:00"}}
    r = steel.post(URL, json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["scenario_tariff_id"] == "flat" and out["pv_kwh"] > 0 and len(out["assumptions"]) == 4
    assert out["total"]["co2_avoided_kg"] > 0 and out["total"]["savings"]["total"] > 0
    r = steel.post(URL, json={**body, "pv": {**body["pv"], "weather_asset_id": "nowhere"}})  # type: ignore[dict-item]
    assert r.status_code == 404 and r.json()["field"] == "pv.weather_asset_id"
