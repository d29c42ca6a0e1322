"""Bad input found by a newcomer's break-it session: every one is a 4xx naming the field, never a 500."""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.testclient import TestClient

from digitaltwin.api.app import create_app
from digitaltwin.config import Settings
from digitaltwin.storage.repository import Repository


@pytest.fixture
def meter(client: TestClient) -> TestClient:
    assert client.post("/api/v1/sites", json={"id": "berlin", "name": "Berlin", "timezone": "Europe/Berlin", "country": "de"}).status_code == 201
    assert client.post("/api/v1/assets", json={"id": "meter-1", "site_id": "berlin", "name": "m1", "kind": "meter"}).status_code == 201
    return client


def _error(response, status: int, field: str | None) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"detail", "field"} and body["field"] == field, body


def test_site_and_asset_validation(meter: TestClient) -> None:
    assert meter.get("/api/v1/sites/berlin").json()["country"] == "DE"
    _error(meter.post("/api/v1/sites", json={"id": "x", "name": "x", "timezone": "localtime"}), 422, "timezone")
    _error(meter.post("/api/v1/sites", json={"id": "x", "name": "x", "timezone": "UTC", "country": "Germany"}), 422, "country")
    _error(meter.post("/api/v1/sites", json={"id": "x", "name": "x" * 201, "timezone": "UTC"}), 422, "name")
    _error(meter.post("/api/v1/sites", json={"id": "x", "timezone": "UTC"}), 422, "name")
    nan_body = b'{"id":"pv-2","site_id":"berlin","name":"pv","kind":"pv","rated_power_kw":NaN}'
    _error(meter.post("/api/v1/assets", content=nan_body, headers={"content-type": "application/json"}), 422, "rated_power_kw")
    _error(meter.post("/api/v1/assets", json={"id": "pv-3", "site_id": "berlin", "name": "pv", "kind": "toaster"}), 422, "kind")
    big = {"id": "pv-4", "site_id": "berlin", "name": "pv", "kind": "pv", "attributes": {"pad": "x" * 70_000}}
    _error(meter.post("/api/v1/assets", json=big), 422, "attributes")
    meter.post("/api/v1/sites", json={"id": "seoul", "name": "Seoul", "timezone": "Asia/Seoul"})
    child = {"id": "pv-5", "site_id": "seoul", "name": "pv", "kind": "pv", "parent_id": "meter-1"}
    _error(meter.post("/api/v1/assets", json=child), 422, "parent_id")
    _error(meter.post("/api/v1/assets", json={"id": "meter-1", "site_id": "berlin", "name": "again", "kind": "meter"}), 409, "id")
    listed = meter.get("/api/v1/assets").json()
    assert listed[0]["series"] is None and listed[0]["latest"] is None


def test_reading_values_units_and_plausibility(meter: TestClient) -> None:
    def post(item: dict) -> dict:  # type: ignore[type-arg]
        return meter.post("/api/v1/readings", json=[item]).json()["items"][0]

    base = {"asset_id": "meter-1", "ts": "2025-01-01T00:00:00Z", "quantity": "power"}
    missing_unit = post({**base, "value": 5})
    assert missing_unit["status"] == "rejected" and missing_unit["field"] == "unit"
    absurd = post({**base, "value": 123456789012345678901234567890, "unit": "kW"})
    assert absurd["status"] == "rejected" and absurd["field"] == "value" and "plausible range" in absurd["reason"]
    assert post({"asset_id": "meter-1", "ts": "2025-01-01T00:00:00Z", "energy_kwh_total": -5})["field"] == "energy_kwh_total"
    assert post({**base, "value": 5, "unit": "kW"})["status"] == "accepted"
    as_text_ms = post({"asset_id": "meter-1", "ts": "1735689600000", "power_kw": 1})  # 2025-01-01T00:00Z as a string
    assert as_text_ms["status"] == "accepted"
    assert post({"asset_id": "meter-1", "ts": True, "power_kw": 1})["reason"].endswith("not a boolean")
    lowercase = post({"asset_id": "meter-1", "ts": "2025-01-01t00:15:00z", "power_kw": 2})
    assert lowercase["status"] == "accepted"
    # Numbers in strings are ASCII decimals: float() and int() would read other scripts' digits.
    for text in ("\u0665", "\u0661.\u0665", "\uff15"):  # Arabic-Indic 5 and 1.5, fullwidth 5
        other_digits = post({**base, "value": text, "unit": "kW"})
        assert (other_digits["status"], other_digits["field"]) == ("rejected", "value"), other_digits
    arabic_ms = post({"asset_id": "meter-1", "ts": "\u0661\u0667\u0663\u0665\u0666\u0668\u0669\u0666\u0660\u0660\u0660\u0660\u0660", "power_kw": 1})
    assert (arabic_ms["status"], arabic_ms["field"]) == ("rejected", "ts")
    assert post({**base, "ts": "2025-01-01T00:30:00Z", "value": " 5 ", "unit": "kW"})["status"] == "accepted"


def test_bodies_and_query_parameters(meter: TestClient) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    _error(meter.post("/api/v1/readings", content=deep, headers={"content-type": "application/json"}), 422, "body")
    forged = base64.urlsafe_b64encode(b"99999999999999999999999999:1").decode()
    _error(meter.get("/api/v1/assets/meter-1/readings", params={"cursor": forged}), 422, "cursor")
    forged_id = base64.urlsafe_b64encode(b"1:99999999999999999999").decode()
    _error(meter.get("/api/v1/assets/meter-1/readings", params={"cursor": forged_id}), 422, "cursor")
    _error(meter.get("/api/v1/assets/meter-1/readings", params={"limit": 0}), 422, "limit")
    _error(
        meter.get("/api/v1/assets/meter-1/readings", params={"start": "2025-01-02T00:00:00Z", "end": "2025-01-01T00:00:00Z"}), 422, "end"
    )
    _error(meter.get("/api/v1/assets/meter-1/energy", params={"start": "2025-01-01T00:00:00Z", "end": "2025-02-01T00:00:00Z", "bucket": "year"}), 422, "bucket")
    # CO2 and cost are computed per 15 minutes: a range longer than that allows is refused before any work
    long_range = {"start": "2016-01-01T00:00:00Z", "end": "2025-12-01T00:00:00Z", "bucket": "hour", "with": "co2,cost"}
    response = meter.get("/api/v1/assets/meter-1/energy", params=long_range)
    _error(response, 422, "end")
    assert "with=co2,cost is computed per 15 minutes: the range may be at most 2083 days" in response.json()["detail"]
    plus_as_space = meter.get("/api/v1/assets/meter-1/energy?start=2025-01-01T00:00:00+01:00&end=2025-01-02T00:00:00Z")
    _error(plus_as_space, 422, "start")
    assert "%2B" in plus_as_space.json()["detail"]
    _error(meter.get("/api/v1/assets/meter-1/forecast", params={"horizon": "PT999999999H", "algorithm": "seasonal_naive_daily"}), 422, "horizon")
    _error(meter.get("/api/v1/assets/meter-1/forecast", params={"horizon": "P1Y", "algorithm": "seasonal_naive_daily"}), 422, "horizon")


def test_query_bounds_may_lie_in_the_future_and_ranges_are_clipped(meter: TestClient) -> None:
    items = [{"asset_id": "meter-1", "ts": f"2025-01-0{d}T{h:02d}:00:00+01:00", "energy_kwh": 1.0, "interval": "PT1H"} for d in (6, 7, 8) for h in range(24)]
    assert meter.post("/api/v1/readings", json=items).json()["stored"] == 72
    future = meter.get("/api/v1/assets/meter-1/energy", params={"start": "2025-01-01T00:00:00+01:00", "end": "2030-01-01T00:00:00+01:00", "bucket": "month"})
    assert future.status_code == 200 and future.json()["total_energy_kwh"] == pytest.approx(72.0)
    # Two days of a Monday-first week: the total is that of the two days, and the bucket says so.
    week = meter.get("/api/v1/assets/meter-1/energy", params={"start": "2025-01-07T00:00:00+01:00", "end": "2025-01-09T00:00:00+01:00", "bucket": "week"}).json()
    assert week["total_energy_kwh"] == pytest.approx(48.0)
    (bucket,) = week["buckets"]
    assert bucket["start"] == "2025-01-06T23:00:00Z" and bucket["end"] == "2025-01-08T23:00:00Z"
    assert bucket["expected_count"] == 48 and bucket["missing_count"] == 0


def test_counter_dips_are_noise_resets_are_resets(meter: TestClient) -> None:
    values = [5, 15, 14, 24]  # a 1 kWh dip, not a reset
    items = [{"asset_id": "meter-1", "ts": f"2025-03-03T10:{15 * i:02d}:00Z", "energy_total": v, "unit": "kWh"} for i, v in enumerate(values)]
    assert meter.post("/api/v1/readings", json=items).json()["stored"] == 4
    hour = meter.get("/api/v1/assets/meter-1/energy", params={"start": "2025-03-03T11:00:00+01:00", "end": "2025-03-03T12:00:00+01:00", "quantity": "energy_total"})
    assert hour.json()["total_energy_kwh"] == pytest.approx(19.0)


def test_database_down_is_503_json(settings: Settings, repo: Repository) -> None:
    down = settings.model_copy(update={"database_url": "postgresql://postgres@127.0.0.1:1/nothing"})
    with TestClient(create_app(down), raise_server_exceptions=False) as client:
        response = client.get("/healthz")
        assert response.status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "database" in ready.json()["failing"]


def test_corrections_delete_then_resend(meter: TestClient) -> None:
    item = {"asset_id": "meter-1", "ts": "2025-01-01T00:00:00Z", "power_kw": 999.0}
    assert meter.post("/api/v1/readings", json=[item]).json()["stored"] == 1
    assert meter.post("/api/v1/readings", json=[{**item, "power_kw": 9.0}]).json()["stored"] == 0  # first write wins
    params = {"start": "2025-01-01T00:00:00Z", "end": "2025-01-01T00:00:01Z", "quantity": "power"}
    assert meter.delete("/api/v1/assets/meter-1/readings", params=params).json() == {"asset_id": "meter-1", "deleted": 1}
    assert meter.post("/api/v1/readings", json=[{**item, "power_kw": 9.0}]).json()["stored"] == 1
    rows = meter.get("/api/v1/assets/meter-1/readings").json()["readings"]
    assert [r["value"] for r in rows] == [9.0]
    _error(meter.delete("/api/v1/assets/meter-1/readings", params={**params, "end": params["start"]}), 422, "end")


def test_prediction_metric_labels_are_bounded(meter: TestClient) -> None:
    meter.get("/api/v1/assets/meter-1/forecast", params={"algorithm": "../../etc"})
    metrics = meter.get("/metrics").text
    assert 'predictions_total{algorithm="unknown",status="error"}' in metrics
    assert "../../etc" not in metrics
