"""A counter span longer than the maximum is a gap, through ``POST /api/v1/readings`` and the energy endpoint.

Newcomer report: a counter asset (site ``Europe/Berlin``) with 15-minute register readings at a
constant 50 kW from 2026-11-20 to 2026-11-28, then one stray reading of 0 kWh stamped 2005-01-01.
Its increase to the first real reading (100 000 kWh) was spread over 22 years: November went from
9587.5 to 9825.7 kWh and its mean power from 50.0 to 15.1 kW, and 2010 showed 4566 kWh with no
reading at all. SQLite and PostgreSQL (the ``settings`` fixture).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

KWH = 1e-6
FIRST = datetime(2026, 11, 20, tzinfo=UTC)
READINGS = 768  # 2026-11-20T00:00Z .. 2026-11-27T23:45Z, every 15 minutes
START_KWH = 100_000.0
STEP_KWH = 12.5  # 50 kW over 15 minutes
STRAY = {"asset_id": "c1", "ts": "2005-01-01T00:00:00Z", "quantity": "energy_total", "value": 0, "unit": "kWh"}


def counter_asset(client: TestClient, *, gap: tuple[datetime, datetime] | None = None, jump_kwh: float = 0.0) -> None:
    """The newcomer's counter; readings in ``[gap)`` are left out, later ones are ``jump_kwh`` higher."""
    assert client.post("/api/v1/sites", json={"id": "berlin", "name": "Berlin", "timezone": "Europe/Berlin"}).status_code == 201
    body = {"id": "c1", "site_id": "berlin", "name": "counter", "kind": "meter"}
    assert client.post("/api/v1/assets", json=body).status_code == 201
    items = []
    for i in range(READINGS):
        ts = FIRST + i * timedelta(minutes=15)
        if gap is not None and gap[0] <= ts < gap[1]:
            continue
        value = START_KWH + i * STEP_KWH + (jump_kwh if gap is not None and ts >= gap[1] else 0.0)
        items.append({"asset_id": "c1", "ts": ts.isoformat(), "quantity": "energy_total", "value": value, "unit": "kWh"})
    response = client.post("/api/v1/readings", json=items)
    assert response.status_code == 200, response.text
    assert all(i["status"] == "accepted" for i in response.json()["items"])


def energy(client: TestClient, start: str, end: str, bucket: str) -> Any:
    response = client.get("/api/v1/assets/c1/energy", params={"start": start, "end": end, "bucket": bucket})
    assert response.status_code == 200, response.text
    return response.json()


def november(client: TestClient) -> dict[str, Any]:
    (month,) = energy(client, "2026-11-01T00:00:00+01:00", "2026-12-01T00:00:00+01:00", "month")["buckets"]
    return month


def test_a_stray_old_counter_reading_invents_no_energy(client: TestClient) -> None:
    counter_asset(client)
    before = november(client)
    assert before["energy_kwh"] == pytest.approx(9587.5, abs=KWH)
    assert before["mean_power_kw"] == pytest.approx(50.0)

    response = client.post("/api/v1/readings", json=STRAY)
    assert response.status_code == 200 and response.json()["items"][0]["status"] == "accepted", response.text

    after = november(client)
    assert after["energy_kwh"] == pytest.approx(9587.5, abs=KWH)  # was 9825.7
    assert after["mean_power_kw"] == pytest.approx(50.0)  # was 15.1
    assert after["peak_power_kw"] == pytest.approx(50.0)
    assert after["sample_count"] == READINGS

    year_2010 = energy(client, "2010-01-01T00:00:00Z", "2011-01-01T00:00:00Z", "month")
    assert year_2010["total_energy_kwh"] == 0.0  # was 4566 kWh
    assert all(b["energy_kwh"] is None and b["mean_power_kw"] is None and b["sample_count"] == 0 for b in year_2010["buckets"])

    # the local day of the first real reading has its energy from that reading on (00:00Z..23:00Z),
    # the day before has none
    days = energy(client, "2026-11-19T00:00:00+01:00", "2026-11-21T00:00:00+01:00", "day")["buckets"]
    assert [d["energy_kwh"] for d in days] == [None, pytest.approx(92 * STEP_KWH, abs=KWH)]
    assert [d["mean_power_kw"] for d in days] == [None, pytest.approx(50.0)]


def test_a_reading_after_a_long_outage_counts_from_its_own_value(client: TestClient) -> None:
    """Three local days offline (longer than the maximum span) attribute nothing; the baseline moves
    on, so the reading after the outage counts from its own value, not from the one before it."""
    outage = (datetime(2026, 11, 22, 23, tzinfo=UTC), datetime(2026, 11, 25, 23, tzinfo=UTC))  # local 11-23 .. 11-25
    counter_asset(client, gap=outage, jump_kwh=10_000.0)
    days = energy(client, "2026-11-22T00:00:00+01:00", "2026-11-27T00:00:00+01:00", "day")["buckets"]
    # local 11-22 ends with the reading at 22:45Z (95 spans); local 11-26 has all 96 of its spans
    assert [d["energy_kwh"] for d in days] == [
        pytest.approx(95 * STEP_KWH, abs=KWH), None, None, None, pytest.approx(96 * STEP_KWH, abs=KWH),
    ]
    assert [d["mean_power_kw"] for d in days] == [pytest.approx(50.0), None, None, None, pytest.approx(50.0)]
    assert [d["sample_count"] for d in days] == [96, 0, 0, 0, 96]
