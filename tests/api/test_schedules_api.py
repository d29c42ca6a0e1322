"""Schedules through the API on both backends: planning from forecasts and live SOC, versions, errors, tracking."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient

from digitaltwin.domain.readings import Reading
from digitaltwin.storage.repository import Repository

from .conftest import ClientAs

BATTERY = {"capacity_kwh": 40.0, "max_charge_kw": 20.0, "max_discharge_kw": 20.0, "charge_efficiency": 0.95,
           "discharge_efficiency": 0.95, "soc_min": 0.1, "soc_max": 0.9, "soc_initial": 0.5, "soc_final": 0.5}
#: The meter's history ends here; the forecast (and so the schedule) starts at this instant.
HISTORY_END = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)


def load_kwh(ts: datetime) -> float:
    """A 15-minute consumption with a daily shape: 10 kW at night, 40 kW from 08:00 to 18:00 UTC."""
    hour = ts.hour + ts.minute / 60
    return (40.0 if 8 <= hour < 18 else 10.0) / 4 + 0.5 * math.sin(hour)


@pytest.fixture
def plant(client: TestClient, repo: Repository) -> TestClient:
    """See :func:`make_plant`."""
    return make_plant(client, repo)


def make_plant(client: TestClient, repo: Repository) -> TestClient:
    """Site ``plant`` with a grid meter holding three weeks of 15-minute energy and a battery at 60 % SOC."""
    assert client.post("/api/v1/sites", json={"id": "plant", "name": "Plant", "timezone": "Europe/Berlin"}).status_code == 201
    assert client.post("/api/v1/assets", json={
        "id": "grid", "site_id": "plant", "name": "Grid meter", "kind": "meter",
        "attributes": {"grid_connection": {"import_limit_kw": 200.0}},
    }).status_code == 201
    assert client.post("/api/v1/assets", json={
        "id": "bat", "site_id": "plant", "name": "Battery", "kind": "battery", "attributes": {"battery": BATTERY},
    }).status_code == 201
    start = HISTORY_END - timedelta(days=21)
    readings = [Reading("grid", "energy", start + timedelta(minutes=15 * i), load_kwh(start + timedelta(minutes=15 * i)))
                for i in range(21 * 96)]
    repo.write_readings(readings, interval_seconds=900)
    repo.write_readings([Reading("bat", "state_of_charge", HISTORY_END - timedelta(minutes=5), 60.0)])
    return client


def plan_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "load_asset_id": "grid", "algorithm": "seasonal_naive_daily", "mode": "robust", "quantile": 0.9,
        "import_price": [0.30 if 16 <= (i // 4) < 20 else 0.12 for i in range(96)], "export_price": 0.05,
        "demand_charge_per_kw": 10.0, "currency": "EUR",
    }
    body.update(overrides)
    return body


def test_a_schedule_is_planned_from_the_forecast_and_the_live_soc(plant: TestClient) -> None:
    answer = plant.post("/api/v1/sites/plant/schedules", json=plan_body())
    assert answer.status_code == 201, answer.text
    schedule = answer.json()
    plan = schedule["plan"]
    assert schedule["version"] == 1 and schedule["steps"] == 96 and schedule["step_seconds"] == 900
    assert plan["timestamps"][0] == "2026-03-02T00:00:00Z"
    battery = plan["batteries"]["bat"]
    assert battery["soc_initial"] == pytest.approx(0.6)
    assert "state_of_charge reading" in plan["inputs"]["soc_source"]["bat"]
    assert all(0.1 - 1e-6 <= s <= 0.9 + 1e-6 for s in battery["soc"])
    assert battery["soc"][-1] >= 0.5 - 1e-6
    # Every step balances: grid import - export = load + battery charging (positive setpoint).
    for i in range(96):
        net = plan["grid_import_kw"][i] - plan["grid_export_kw"][i]
        assert net == pytest.approx(plan["load_kw"][i] + battery["setpoint_kw"][i], abs=1e-4)
    # The battery discharges in the 16:00-20:00 price window and charges outside it.
    window = [battery["setpoint_kw"][i] for i in range(64, 80)]
    assert min(window) < -1.0
    assert plan["mode"] == "robust" and plan["risk"].startswith("robust")
    assert set(plan["cost"]) == {"energy", "export_credit", "demand", "degradation", "total"}
    assert plan["currency"] == "EUR"
    # No broker configured: nothing is published, and the schedule says why.
    assert schedule["published"]["skipped"] == "MQTT_BROKER is not set"


def test_each_plan_is_a_new_version_and_the_latest_is_in_force(plant: TestClient) -> None:
    first = plant.post("/api/v1/sites/plant/schedules", json=plan_body(mode="expected")).json()
    second = plant.post("/api/v1/sites/plant/schedules", json=plan_body()).json()
    assert (first["version"], second["version"]) == (1, 2)
    assert plant.get("/api/v1/sites/plant/schedules/latest").json()["id"] == second["id"]
    assert [s["version"] for s in plant.get("/api/v1/sites/plant/schedules").json()] == [2, 1]
    assert plant.get(f"/api/v1/schedules/{first['id']}").json()["mode"] == "expected"


def test_the_sunk_peak_of_the_billing_period_is_the_floor(plant: TestClient, repo: Repository) -> None:
    # A 30 kWh quarter hour earlier this month (corrected in place): the period's peak is already 120 kW.
    assert plant.delete("/api/v1/assets/grid/readings",
                        params={"start": "2026-03-01T12:00:00Z", "end": "2026-03-01T12:15:00Z"}).status_code == 200
    repo.write_readings([Reading("grid", "energy", datetime(2026, 3, 1, 12, 0, tzinfo=UTC), 30.0)], interval_seconds=900)
    plan = plant.post("/api/v1/sites/plant/schedules", json=plan_body()).json()["plan"]
    # The month of the site (Europe/Berlin) started 2026-02-28 23:00 UTC.
    assert plan["inputs"]["sunk_peak_kw"] == pytest.approx(120.0)
    assert plan["cost"]["demand"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (plan_body(mode="cautious"), "mode"),
        (plan_body(quantile=0.4), "quantile"),
        (plan_body(horizon="PT72H"), "horizon"),
        (plan_body(import_price=[0.1, 0.2]), "import_price"),
        (plan_body(load_asset_id="nowhere"), "load_asset_id"),
        (plan_body(demand_charge_per_kw=-1), "demand_charge_per_kw"),
        (plan_body(import_price=1e200), "import_price"),
        (plan_body(import_price=-1e12), "import_price"),
        (plan_body(import_price=[0.1] * 95 + [1e7]), "import_price"),
        (plan_body(export_price=1e308), "export_price"),
        (plan_body(demand_charge_per_kw=1e308), "demand_charge_per_kw"),
    ],
)
def test_bad_requests_name_the_field(plant: TestClient, body: dict[str, object], field: str) -> None:
    answer = plant.post("/api/v1/sites/plant/schedules", json=body)
    assert answer.status_code in (404, 422), answer.text
    assert answer.json()["field"] == field


@pytest.mark.parametrize(("import_price", "export_price"), [(-5.0, 0.0), (0.1, 0.2)])
def test_negative_prices_and_export_above_import_give_a_plan(plant: TestClient, import_price: float, export_price: float) -> None:
    # A negative import price and an export price above the import price are market situations, not errors:
    # the plan never imports and exports in one step, and a paid import fills the battery.
    answer = plant.post("/api/v1/sites/plant/schedules", json=plan_body(
        horizon="PT6H", import_price=import_price, export_price=export_price, demand_charge_per_kw=0.0, publish=False))
    assert answer.status_code == 201, answer.text
    plan = answer.json()["plan"]
    assert all(min(i, e) <= 1e-6 for i, e in zip(plan["grid_import_kw"], plan["grid_export_kw"], strict=True))
    assert plan["solver"]["status"] in ("optimal", "time_limit") and plan["solver"]["binaries"] > 0
    soc = plan["batteries"]["bat"]["soc"]
    if import_price < 0:  # every kWh imported earns: the battery fills up (to its soc_max)
        assert max(soc) == pytest.approx(0.9, abs=1e-6)


def test_a_load_of_another_site_is_refused(plant: TestClient) -> None:
    plant.post("/api/v1/sites", json={"id": "other", "name": "Other", "timezone": "UTC"})
    plant.post("/api/v1/assets", json={"id": "elsewhere", "site_id": "other", "name": "M", "kind": "meter"})
    answer = plant.post("/api/v1/sites/plant/schedules", json=plan_body(load_asset_id="elsewhere"))
    assert answer.status_code == 422 and answer.json()["field"] == "load_asset_id"


@pytest.mark.parametrize(
    ("attributes", "field"),
    [
        ({"battery": {**BATTERY, "capacity_kwh": 0}}, "attributes.battery.capacity_kwh"),
        ({"battery": {**BATTERY, "colour": "red"}}, "attributes.battery.colour"),
        ({"battery": {"capacity_kwh": 10}}, "attributes.battery.max_charge_kw"),
        ({"deferrable": {"energy_kwh": 5, "max_power_kw": 2, "window_start": "9am", "window_end": "17:00"}},
         "attributes.deferrable.window_start"),
        ({"grid_connection": {"import_limit_kw": -5}}, "attributes.grid_connection.import_limit_kw"),
    ],
)
def test_flexible_asset_settings_are_validated_by_field(plant: TestClient, attributes: dict[str, object], field: str) -> None:
    answer = plant.patch("/api/v1/assets/bat", json={"attributes": attributes})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field


def test_infeasible_constraints_are_a_422_naming_the_constraint(plant: TestClient) -> None:
    # 30 kWh at 2 kW needs 15 hours; the window holds 2.
    assert plant.post("/api/v1/assets", json={
        "id": "oven", "site_id": "plant", "name": "Oven", "kind": "machine",
        "attributes": {"deferrable": {"energy_kwh": 30, "max_power_kw": 2, "window_start": "10:00", "window_end": "12:00"}},
    }).status_code == 201
    answer = plant.post("/api/v1/sites/plant/schedules", json=plan_body())
    assert answer.status_code == 422
    assert answer.json()["field"] == "deferrable.window"
    assert "oven" in answer.json()["detail"]


def test_a_deferrable_load_runs_inside_its_local_window(plant: TestClient) -> None:
    plant.post("/api/v1/assets", json={
        "id": "washer", "site_id": "plant", "name": "Washer", "kind": "machine",
        "attributes": {"deferrable": {"energy_kwh": 4, "max_power_kw": 2, "window_start": "10:00",
                                      "window_end": "18:00", "contiguous": True}},
    })
    plan = plant.post("/api/v1/sites/plant/schedules", json=plan_body()).json()["plan"]
    # Local 10:00-18:00 in Berlin (UTC+1 in March) is 09:00-17:00 UTC: steps 36 to 68.
    assert plan["inputs"]["deferrable_windows"]["washer"] == ["2026-03-02T09:00:00+00:00", "2026-03-02T17:00:00+00:00"]
    power = np.array(plan["deferrables"]["washer"])
    on = np.flatnonzero(power > 1e-6)
    assert power.sum() * 0.25 == pytest.approx(4.0)
    assert on.min() >= 36 and on.max() < 68
    assert np.all(np.diff(on) == 1)  # one block


def test_a_viewer_may_read_but_not_plan(plant: TestClient, viewer_client: ClientAs) -> None:
    assert viewer_client.post("/api/v1/sites/plant/schedules", json=plan_body()).status_code == 403
    assert viewer_client.get("/api/v1/sites/plant/schedules").status_code == 200


def test_tracking_compares_the_plan_with_what_was_metered(plant: TestClient, repo: Repository) -> None:
    schedule = plant.post("/api/v1/sites/plant/schedules", json=plan_body(mode="expected")).json()
    # Four metered quarter hours and two SOC readings after the plan started.
    repo.write_readings([Reading("grid", "energy", HISTORY_END + timedelta(minutes=15 * i), 3.0) for i in range(4)],
                        interval_seconds=900)
    repo.write_readings([Reading("bat", "state_of_charge", HISTORY_END + timedelta(minutes=10), 55.0)])
    tracking = plant.get(f"/api/v1/schedules/{schedule['id']}/tracking").json()
    assert tracking["elapsed_steps"] == 96  # the whole plan lies in the past of the test's clock
    first = tracking["steps"][0]
    assert first["realised_import_kwh"] == pytest.approx(3.0)
    assert first["realised_cost"] == pytest.approx(3.0 * 0.12)
    assert first["batteries"]["bat"]["realised_soc"] == pytest.approx(0.55)
    assert first["batteries"]["bat"]["planned_soc"] == pytest.approx(schedule["plan"]["batteries"]["bat"]["soc"][0])
    assert tracking["steps"][5]["realised_import_kwh"] is None
    assert tracking["totals"]["steps_with_data"] == 4


def test_replanning_solves_again_when_the_meter_reports(plant: TestClient, repo: Repository) -> None:
    service = plant.app.state.dt.scheduling  # type: ignore[attr-defined]
    plant.post("/api/v1/sites/plant/schedules", json=plan_body(replan=True))
    assert service.replan_once() == []  # no new data since the plan's start
    repo.write_readings([Reading("grid", "energy", HISTORY_END, 3.0)], interval_seconds=900)
    again = service.replan_once()
    assert [r.version for r in again] == [2]
    assert again[0].start == HISTORY_END + timedelta(minutes=15)
    assert again[0].created_by == "replan"


def test_without_prices_the_site_s_tariff_prices_the_plan(plant: TestClient) -> None:
    from tests.accounting.sam_reference import load_tariff

    assert plant.post("/api/v1/tariffs?id=e19", json=load_tariff("pge_E19_5cef0a415457a33576f60fe2.json")).status_code == 201
    body = plan_body()
    for key in ("import_price", "export_price", "demand_charge_per_kw", "currency"):
        body.pop(key)
    missing = plant.post("/api/v1/sites/plant/schedules", json=body)
    assert missing.status_code == 422 and missing.json()["field"] == "import_price"  # no tariff assigned yet
    assert plant.post("/api/v1/sites/plant/tariff-assignments", json={"tariff_id": "e19", "valid_from": "2026-01-01"}).status_code == 201
    plan = plant.post("/api/v1/sites/plant/schedules", json=body).json()["plan"]
    assert plan["prices"] == "tariff:e19" and plan["currency"] == "USD"
    assert plan["demand_rate_per_kw"] > 0  # E-19's demand charge, over the billing period
    assert len(set(plan["import_price"])) > 1  # time-of-use periods, not one flat price
    assert plan["inputs"]["sunk_peak_kw"] > 0
