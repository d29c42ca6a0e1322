"""Tariffs, assignments and bills through the API, on SQLite and PostgreSQL.

The steel plant's November 2018 (15-minute energy, Asia/Seoul) is stored as readings; its
API bill under PG&E E-19 must be the engine's bill of the same intervals (which the SAM
agreement tests hold to SAM), with line items, currency and completeness.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from fastapi.testclient import TestClient

from digitaltwin.accounting.bill import MeterIntervals, compute_bill, round_money
from digitaltwin.accounting.periods import billing_periods
from digitaltwin.accounting.urdb import parse_urdb
from digitaltwin.domain.readings import Reading
from digitaltwin.storage.repository import Repository
from tests.accounting.sam_reference import INVALID_TARIFF, VALID_TARIFFS, load_tariff, steel_kw

SEOUL = ZoneInfo("Asia/Seoul")
NOV = datetime(2018, 11, 1, tzinfo=SEOUL)
DEC = datetime(2018, 12, 1, tzinfo=SEOUL)
PGE = "pge_E19_5cef0a415457a33576f60fe2.json"


def _november_kwh() -> np.ndarray:
    kw, _, _ = steel_kw()
    first = int((NOV - datetime(2018, 1, 1, tzinfo=SEOUL)).total_seconds() // 900)
    return kw[first : first + 30 * 96] / 4.0


def _plant(client: TestClient, repo: Repository) -> np.ndarray:
    assert client.post("/api/v1/sites", json={"id": "steel", "name": "Steel", "timezone": "Asia/Seoul"}).status_code == 201
    assert client.post("/api/v1/assets", json={"id": "plant", "site_id": "steel", "name": "Main meter", "kind": "meter"}).status_code == 201
    kwh = _november_kwh()
    start = NOV.astimezone(UTC)
    repo.write_readings([Reading("plant", "energy", start + timedelta(minutes=15 * i), float(v)) for i, v in enumerate(kwh)],
                        interval_seconds=900)
    return kwh


def test_import_four_valid_tariffs_and_refuse_the_invalid_one(client: TestClient) -> None:
    for name in VALID_TARIFFS:
        answer = client.post("/api/v1/tariffs", json=load_tariff(name))
        assert answer.status_code == 201, answer.text
        assert answer.json()["currency"] == "USD"
    bad = client.post("/api/v1/tariffs", json=load_tariff(INVALID_TARIFF))
    assert bad.status_code == 422
    assert bad.json()["field"] == "energyweekdayschedule[0][0]"
    assert "period 1" in bad.json()["detail"]
    listed = {t["id"] for t in client.get("/api/v1/tariffs").json()}
    assert "5cef0a415457a33576f60fe2" in listed and "539fb6c7ec4f024bc1dc0445" not in listed
    detail = client.get("/api/v1/tariffs/5cef0a415457a33576f60fe2").json()
    assert detail["source"]["fixedchargeunits"] == "$/day"
    assert "description" in detail["informational_fields"]


def test_unimplemented_urdb_field_is_refused_by_name(client: TestClient) -> None:
    record = load_tariff(PGE) | {"fueladjustmentsmonthly": [0.01] * 12}
    answer = client.post("/api/v1/tariffs", json=record)
    assert answer.status_code == 422
    assert answer.json()["field"] == "fueladjustmentsmonthly"


def test_only_admins_create_tariffs_viewers_read_bills(client: TestClient, viewer_client, operator_client, repo: Repository) -> None:  # noqa: ANN001
    assert operator_client.post("/api/v1/tariffs", json=load_tariff(PGE)).status_code == 403
    assert client.post("/api/v1/tariffs?id=e19", json=load_tariff(PGE)).status_code == 201
    _plant(client, repo)
    body = {"tariff_id": "e19", "valid_from": "2018-01-01"}
    assert operator_client.post("/api/v1/sites/steel/tariff-assignments", json=body).status_code == 403
    assert client.post("/api/v1/sites/steel/tariff-assignments", json=body).status_code == 201
    bill = viewer_client.get("/api/v1/sites/steel/bill", params={"start": "2018-11-01T00:00:00+09:00", "end": "2018-12-01T00:00:00+09:00"})
    assert bill.status_code == 200, bill.text


def test_site_bill_is_the_engine_bill_with_line_items(client: TestClient, repo: Repository) -> None:
    client.post("/api/v1/tariffs?id=e19", json=load_tariff(PGE))
    kwh = _plant(client, repo)
    client.post("/api/v1/sites/steel/tariff-assignments", json={"tariff_id": "e19", "valid_from": "2018-01-01"})
    answer = client.get("/api/v1/sites/steel/bill", params={"start": "2018-11-01T00:00:00+09:00", "end": "2018-12-01T00:00:00+09:00"})
    assert answer.status_code == 200, answer.text
    (bill,) = answer.json()["bills"]
    assert bill["currency"] == "USD" and bill["first_day"] == "2018-11-01" and bill["last_day"] == "2018-11-30"
    assert bill["completeness"] == {"expected_intervals": 2880, "present_intervals": 2880, "fraction": 1.0, "complete": True,
                                    "meters": [{"asset_id": "plant", "expected_intervals": 2880, "present_intervals": 2880}]}
    kinds = {i["kind"] for i in bill["line_items"]}
    assert {"fixed", "energy", "demand"} <= kinds
    fixed = next(i for i in bill["line_items"] if i["kind"] == "fixed")
    assert fixed["quantity"] == 30 and fixed["amount"] == round_money(30 * 19.71253)
    flat = next(i for i in bill["line_items"] if i["description"].startswith("flat demand"))
    peak = int(np.argmax(kwh))
    assert flat["peak_kw"] == pytest.approx(kwh[peak] * 4)
    assert datetime.fromisoformat(flat["peak_at"]) == NOV.astimezone(UTC) + timedelta(minutes=15 * peak)

    starts = int(NOV.timestamp()) + 900 * np.arange(kwh.size, dtype=np.int64)
    meter = MeterIntervals(starts, kwh, np.zeros(kwh.size), 900)
    (period,) = billing_periods(NOV.astimezone(UTC), DEC.astimezone(UTC), SEOUL)
    expected = compute_bill(parse_urdb(load_tariff(PGE)), meter, period, SEOUL)
    assert bill["total"] == round_money(expected.total)


def test_missing_data_is_stated_not_silently_billed(client: TestClient, repo: Repository) -> None:
    client.post("/api/v1/tariffs?id=e19", json=load_tariff(PGE))
    _plant(client, repo)
    client.post("/api/v1/sites/steel/tariff-assignments", json={"tariff_id": "e19", "valid_from": "2018-01-01"})
    client.delete("/api/v1/assets/plant/readings", params={"start": "2018-11-10T00:00:00+09:00", "end": "2018-11-11T00:00:00+09:00"})
    (bill,) = client.get("/api/v1/sites/steel/bill", params={"start": "2018-11-05T00:00:00+09:00", "end": "2018-11-06T00:00:00+09:00"}).json()["bills"]
    assert bill["completeness"]["present_intervals"] == 2880 - 96
    assert bill["completeness"]["complete"] is False
    assert "96 of 2880 intervals missing" in bill["notes"][0]


def test_assignment_rules(client: TestClient, repo: Repository) -> None:
    client.post("/api/v1/tariffs?id=e19", json=load_tariff(PGE))
    _plant(client, repo)
    no_tariff = client.get("/api/v1/assets/plant/bill", params={"start": "2018-11-01T00:00:00+09:00", "end": "2018-12-01T00:00:00+09:00"})
    assert no_tariff.status_code == 404 and no_tariff.json()["field"] == "tariff"
    first = client.post("/api/v1/assets/plant/tariff-assignments", json={"tariff_id": "e19", "valid_from": "2018-01-01", "valid_to": "2019-01-01"})
    assert first.status_code == 201
    clash = client.post("/api/v1/assets/plant/tariff-assignments", json={"tariff_id": "e19", "valid_from": "2018-06-01"})
    assert clash.status_code == 409 and clash.json()["field"] == "valid_from"
    unknown = client.post("/api/v1/assets/plant/tariff-assignments", json={"tariff_id": "nope", "valid_from": "2019-01-01"})
    assert unknown.status_code == 404 and unknown.json()["field"] == "tariff_id"
    bad_day = client.post("/api/v1/assets/plant/tariff-assignments", json={"tariff_id": "e19", "valid_from": "2019-01-01", "bill_day": 31})
    assert bad_day.status_code == 422 and bad_day.json()["field"] == "bill_day"
    bills = client.get("/api/v1/assets/plant/bill", params={"start": "2018-11-01T00:00:00+09:00", "end": "2018-12-01T00:00:00+09:00"})
    assert bills.status_code == 200 and len(bills.json()["bills"]) == 1


def test_energy_cost_per_bucket_follows_time_of_use_rates(client: TestClient, repo: Repository) -> None:
    client.post("/api/v1/tariffs?id=e19", json=load_tariff(PGE))
    _plant(client, repo)
    params = {"start": "2018-11-01T00:00:00+09:00", "end": "2018-12-01T00:00:00+09:00", "bucket": "day"}
    plain = client.get("/api/v1/assets/plant/energy", params=params).json()
    assert plain["currency"] is None and plain["buckets"][0]["cost"] is None
    untariffed = client.get("/api/v1/assets/plant/energy", params=params | {"with": "cost"}).json()
    assert untariffed["buckets"][0]["cost"] is None
    client.post("/api/v1/sites/steel/tariff-assignments", json={"tariff_id": "e19", "valid_from": "2018-01-01"})
    costed = client.get("/api/v1/assets/plant/energy", params=params | {"with": "cost"}).json()
    assert costed["currency"] == "USD" and "demand" in costed["cost_basis"]
    days = [b["cost"] for b in costed["buckets"]]
    assert len(days) == 30 and all(c > 0 for c in days)
    (bill,) = client.get("/api/v1/sites/steel/bill", params={"start": params["start"], "end": params["end"]}).json()["bills"]
    energy = sum(i["amount"] for i in bill["line_items"] if i["kind"] == "energy")
    assert sum(days) == pytest.approx(energy, abs=0.01 * len(bill["line_items"]))
    # a weekday and a weekend day of similar energy cost differently per kWh under TOU (Nov 5 Monday, Nov 4 Sunday)
    per_kwh = [b["cost"] / b["energy_kwh"] for b in costed["buckets"]]
    assert per_kwh[4] > per_kwh[3]
    bad = client.get("/api/v1/assets/plant/energy", params=params | {"with": "price"})
    assert bad.status_code == 422 and bad.json()["field"] == "with"


def test_native_tariff_with_a_dynamic_price_series(client: TestClient, repo: Repository) -> None:
    kwh = _plant(client, repo)
    assert client.post("/api/v1/assets", json={"id": "da-prices", "site_id": "steel", "name": "Day-ahead", "kind": "meter"}).status_code == 201
    start = NOV.astimezone(UTC)
    hourly = [(-0.02 if h % 24 < 6 else 0.12) for h in range(30 * 24)]  # negative night prices
    repo.write_readings([Reading("da-prices", "price", start + timedelta(hours=h), p) for h, p in enumerate(hourly)])
    native = {"format": "native", "name": "Dynamic", "currency": "EUR", "energy": {"price_asset": "da-prices", "markup": 0.01},
              "fixed": [{"amount": 10, "per": "month"}], "taxes": [{"name": "VAT", "percent": 19}]}
    assert client.post("/api/v1/tariffs?id=dyn", json=native).status_code == 201
    client.post("/api/v1/sites/steel/tariff-assignments", json={"tariff_id": "dyn", "valid_from": "2018-11-01"})
    (bill,) = client.get("/api/v1/sites/steel/bill", params={"start": "2018-11-01T00:00:00+09:00", "end": "2018-12-01T00:00:00+09:00"}).json()["bills"]
    price = np.repeat(hourly, 4) + 0.01
    energy = float(np.sum(kwh * price))
    assert bill["currency"] == "EUR"
    assert next(i for i in bill["line_items"] if i["kind"] == "energy")["amount"] == round_money(energy, "EUR")
    assert bill["total"] == round_money((energy + 10) * 1.19, "EUR")
    unknown_key = client.post("/api/v1/tariffs?id=dyn2", json=native | {"vat": 19})
    assert unknown_key.status_code == 422 and unknown_key.json()["field"] == "tariff.vat"


def test_kpi_cost_per_kwh_is_the_bill_over_the_energy(client: TestClient, repo: Repository) -> None:
    client.post("/api/v1/tariffs?id=e19", json=load_tariff(PGE))
    kwh = _plant(client, repo)
    params = {"start": "2018-11-01T00:00:00+09:00", "end": "2018-12-01T00:00:00+09:00"}
    assert client.get("/api/v1/assets/plant/kpis", params=params).json()["cost_per_kwh"] is None  # no tariff yet
    # A whole billing period of the site's tariff: the bill's total (demand, fixed and taxes included),
    # for the site and for its only billed meter.
    client.post("/api/v1/sites/steel/tariff-assignments", json={"tariff_id": "e19", "valid_from": "2018-01-01"})
    (bill,) = client.get("/api/v1/sites/steel/bill", params=params).json()["bills"]
    site = client.get("/api/v1/sites/steel/kpis", params=params).json()
    assert site["cost_per_kwh"] == pytest.approx(bill["total"] / float(kwh.sum()), rel=1e-6) and site["currency"] == "USD"
    whole = client.get("/api/v1/assets/plant/kpis", params=params).json()["cost_per_kwh"]
    assert whole == pytest.approx(site["cost_per_kwh"], rel=1e-9)
    # Half a month cuts the billing period: only the energy charges of the range are known.
    half = {"start": params["start"], "end": "2018-11-16T00:00:00+09:00"}
    part = client.get("/api/v1/assets/plant/kpis", params=half).json()
    costed = client.get("/api/v1/assets/plant/energy", params=half | {"bucket": "month", "with": "cost"}).json()
    assert part["cost_per_kwh"] == pytest.approx(costed["buckets"][0]["cost"] / part["energy_kwh"], rel=1e-9)
    assert whole > part["cost_per_kwh"]
