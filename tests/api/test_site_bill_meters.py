"""A site's bill and KPIs over several top-level meters with uneven data (SQLite and PostgreSQL).

A site bills the sum of its top-level meters. A meter without data in an interval contributes
nothing there and the bill says which meter lacks how many intervals; the data the other meters
have is always billed. The figures are exact: a Berlin site under a native tariff of 0.30 EUR/kWh,
0.40 EUR/kWh from 02:00 to 03:00 local time, 19 % VAT, in October 2025 (745 hours: the clocks go
back on 26 October, so the 02:00 hour happens twice that night and 32 hours are billed at 0.40).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

BERLIN = ZoneInfo("Europe/Berlin")
OCT = {"start": "2025-10-01T00:00:00+02:00", "end": "2025-11-01T00:00:00+01:00"}
OCT_START = datetime(2025, 10, 1, tzinfo=BERLIN).astimezone(UTC)
TARIFF = {
    "format": "native", "id": "bt-tou", "name": "Berlin TOU", "currency": "EUR",
    "energy": {"default_price": 0.30, "windows": [{"price": 0.40, "from": "02:00", "to": "03:00"}]},
    "taxes": [{"name": "VAT", "percent": 19}],
}
# bt2-main: 745 hourly kWh, 32 of them in a 02:00 hour: (713 x 0.30 + 32 x 0.40) x 1.19
MAIN_EUR = (713 * 0.30 + 32 * 0.40) * 1.19
# bt2-b: 2 kWh in each hour of 10 October: (23 x 2 x 0.30 + 2 x 0.40) x 1.19
B_EUR = (23 * 2 * 0.30 + 2 * 0.40) * 1.19


def _site(client: TestClient, meters: list[str], tariff: dict = TARIFF) -> None:
    assert client.post("/api/v1/sites", json={"id": "bt2", "name": "BT2", "timezone": "Europe/Berlin"}).status_code == 201
    for meter in meters:
        assert client.post("/api/v1/assets", json={"id": meter, "site_id": "bt2", "name": meter, "kind": "meter"}).status_code == 201
    assert client.post("/api/v1/tariffs", json=tariff).status_code == 201
    answer = client.post("/api/v1/sites/bt2/tariff-assignments", json={"tariff_id": tariff["id"], "valid_from": "2025-01-01"})
    assert answer.status_code == 201, answer.text


def _post(client: TestClient, asset_id: str, first: datetime, count: int, kwh: float, minutes: int) -> None:
    items = [
        {"asset_id": asset_id, "ts": (first + timedelta(minutes=minutes * i)).isoformat(), "quantity": "energy",
         "value": kwh, "unit": "kWh", "interval": f"PT{minutes}M" if minutes < 60 else f"PT{minutes // 60}H"}
        for i in range(count)
    ]
    answer = client.post("/api/v1/readings", json={"readings": items})
    assert answer.status_code == 200 and answer.json()["accepted"] == count, answer.text


def _october_bill(client: TestClient) -> dict:
    answer = client.get("/api/v1/sites/bt2/bill", params=OCT)
    assert answer.status_code == 200, answer.text
    (bill,) = answer.json()["bills"]
    return bill


def test_a_meter_with_one_day_of_data_does_not_drop_the_others_intervals(client: TestClient) -> None:
    _site(client, ["bt2-main", "bt2-b"])
    _post(client, "bt2-main", OCT_START, 745, 1.0, 60)
    _post(client, "bt2-b", datetime(2025, 10, 10, tzinfo=BERLIN).astimezone(UTC), 24, 2.0, 60)
    bill = _october_bill(client)
    assert bill["import_kwh"] == pytest.approx(793.0)
    assert bill["total"] == round(MAIN_EUR + B_EUR, 2) == 287.15
    meters = {m["asset_id"]: m for m in bill["completeness"]["meters"]}
    assert meters["bt2-main"] == {"asset_id": "bt2-main", "expected_intervals": 745, "present_intervals": 745}
    assert meters["bt2-b"] == {"asset_id": "bt2-b", "expected_intervals": 745, "present_intervals": 24}
    assert bill["completeness"]["complete"] is False
    assert bill["completeness"]["expected_intervals"] == 2 * 745 and bill["completeness"]["present_intervals"] == 745 + 24
    (note,) = [n for n in bill["notes"] if "missing" in n]
    assert "bt2-b" in note and "721 of 745 intervals" in note and "bt2-main" not in note

    kpis = client.get("/api/v1/sites/bt2/kpis", params=OCT).json()
    assert kpis["energy_kwh"] == pytest.approx(793.0)
    assert kpis["cost_per_kwh"] == pytest.approx((MAIN_EUR + B_EUR) / 793.0)
    assert kpis["currency"] == "EUR"
    assert kpis["completeness"] == pytest.approx(bill["completeness"]["fraction"])

    # a scenario replays the same site sum: its baseline is this bill
    flat = TARIFF | {"id": "bt-flat", "energy": {"default_price": 0.30}}
    assert client.post("/api/v1/tariffs", json=flat).status_code == 201
    answer = client.post("/api/v1/sites/bt2/scenarios", json={"start": "2025-10-01", "end": "2025-11-01", "tariff_id": "bt-flat"})
    assert answer.status_code == 200, answer.text
    total = answer.json()["total"]
    assert total["baseline"]["import_kwh"] == pytest.approx(793.0) and total["baseline"]["bill"]["total"] == 287.15
    assert total["baseline"]["complete"] is False
    assert total["scenario"]["bill"]["total"] == round(793 * 0.30 * 1.19, 2)


def test_a_quarter_hour_meter_with_data_only_in_june_leaves_october_billed(client: TestClient) -> None:
    _site(client, ["bt2-main"])
    _post(client, "bt2-main", OCT_START, 745, 1.0, 60)
    alone = _october_bill(client)
    assert alone["total"] == round(MAIN_EUR, 2) == 269.77
    assert alone["completeness"]["complete"] is True and alone["completeness"]["expected_intervals"] == 745

    assert client.post("/api/v1/assets", json={"id": "bt2-q", "site_id": "bt2", "name": "q", "kind": "meter"}).status_code == 201
    _post(client, "bt2-q", datetime(2025, 6, 1, tzinfo=BERLIN).astimezone(UTC), 30 * 96, 0.25, 15)
    bill = _october_bill(client)
    assert bill["total"] == 269.77
    assert bill["import_kwh"] == pytest.approx(745.0)
    meters = {m["asset_id"]: m for m in bill["completeness"]["meters"]}
    # one quarter-hour meter puts the site on a 15-minute grid: 745 hours are 2980 intervals
    assert meters["bt2-main"]["present_intervals"] == meters["bt2-main"]["expected_intervals"] == 2980
    assert meters["bt2-q"]["present_intervals"] == 0
    assert any("bt2-q" in n and "2980 of 2980 intervals" in n for n in bill["notes"])
    kpis = client.get("/api/v1/sites/bt2/kpis", params=OCT).json()
    assert kpis["cost_per_kwh"] == pytest.approx(MAIN_EUR / 745.0)


def test_mixed_cadences_add_up_per_quarter_hour_and_demand_is_coincident(client: TestClient) -> None:
    """An hourly meter and a quarter-hour meter: the demand charge is billed on the 15-minute sum."""
    _site(client, ["bt2-main", "bt2-q"], TARIFF | {"id": "bt-demand", "demand": {"price_per_kw": 10.0, "window_minutes": 15}})
    nov = datetime(2025, 11, 1, tzinfo=BERLIN).astimezone(UTC)
    _post(client, "bt2-main", nov, 720, 4.0, 60)  # 4 kW all month
    # bt2-q: 1 kWh per quarter (4 kW) on 3 November from 10:00 to 11:00, 3 kWh (12 kW) at 10:15; nothing else
    at = datetime(2025, 11, 3, 10, tzinfo=BERLIN).astimezone(UTC)
    _post(client, "bt2-q", at, 1, 1.0, 15)
    _post(client, "bt2-q", at + timedelta(minutes=15), 1, 3.0, 15)
    _post(client, "bt2-q", at + timedelta(minutes=30), 2, 1.0, 15)
    answer = client.get("/api/v1/sites/bt2/bill", params={"start": "2025-11-01T00:00:00+01:00", "end": "2025-12-01T00:00:00+01:00"})
    (bill,) = answer.json()["bills"]
    assert bill["import_kwh"] == pytest.approx(720 * 4.0 + 6.0)
    line = next(i for i in bill["line_items"] if i["kind"] == "demand")
    assert line["peak_kw"] == pytest.approx(4.0 + 12.0)
    assert datetime.fromisoformat(line["peak_at"]) == at + timedelta(minutes=15)
    meters = {m["asset_id"]: m for m in bill["completeness"]["meters"]}
    assert meters["bt2-main"]["present_intervals"] == 2880 and meters["bt2-q"]["present_intervals"] == 4
    assert any("below the true coincident peak" in n for n in bill["notes"])


@pytest.mark.parametrize(("month", "hours"), [((3, 4), 743), ((10, 11), 745)])
def test_dst_months_have_their_hours_on_every_meter(client: TestClient, month: tuple[int, int], hours: int) -> None:
    _site(client, ["bt2-main", "bt2-b"])
    first, after = (datetime(2025, m, 1, tzinfo=BERLIN) for m in month)
    _post(client, "bt2-main", first.astimezone(UTC), hours, 1.0, 60)
    _post(client, "bt2-b", first.astimezone(UTC), 1, 1.0, 60)
    answer = client.get("/api/v1/sites/bt2/bill", params={"start": first.isoformat(), "end": after.isoformat()})
    (bill,) = answer.json()["bills"]
    assert bill["import_kwh"] == pytest.approx(hours + 1.0)
    assert [(m["asset_id"], m["expected_intervals"], m["present_intervals"]) for m in bill["completeness"]["meters"]] == [
        ("bt2-b", hours, 1), ("bt2-main", hours, hours)]
