"""Import and export through the API and the real repository (SQLite and PostgreSQL): signed series
split per interval before netting, paired import/export registers, producing assets."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from tests.api.test_meter_accounting import KWH, T0, energy, error, send, setup_asset


def test_signed_grid_power_is_split_per_interval_never_netted(client: TestClient) -> None:
    """+4 kW and -4 kW alternating every 15 minutes: each hour imports 2 kWh and exports 2 kWh (net 0),
    where netting before splitting would show 0 and 0 (positive = import, the grid convention)."""
    setup_asset(client, "grid")
    send(client, "grid", "power", [4.0 if i % 2 == 0 else -4.0 for i in range(16)], unit="kW")
    body = energy(client, "grid")
    for bucket in body["buckets"]:
        assert (bucket["import_kwh"], bucket["export_kwh"]) == (pytest.approx(2.0), pytest.approx(2.0))
        assert bucket["net_kwh"] == pytest.approx(0.0, abs=KWH) and bucket["energy_kwh"] == pytest.approx(0.0, abs=KWH)
    assert (body["total_import_kwh"], body["total_export_kwh"]) == (pytest.approx(8.0), pytest.approx(8.0))

    # a device that reports export as positive: declare it, and the sides swap
    response = client.patch("/api/v1/assets/grid/series/power", json={"attributes": {"sign_convention": "export_positive"}})
    assert response.status_code == 200, response.text
    send(client, "grid", "power", [3.0] * 4, start=T0 + timedelta(hours=4), unit="kW")
    fifth = energy(client, "grid", hours=5)["buckets"][4]
    assert (fifth["import_kwh"], fifth["export_kwh"], fifth["net_kwh"]) == (0.0, pytest.approx(3.0), pytest.approx(-3.0))


def test_import_and_export_registers_pair_into_one_connection(client: TestClient) -> None:
    """OBIS 1.8.0 (energy_total) and 2.8.0 (energy_export_total) of one grid connection."""
    setup_asset(client, "conn", attributes={"energy_flow": "both"})
    send(client, "conn", "energy_total", [100.0 + 10 * i for i in range(17)])
    send(client, "conn", "energy_export_total", [50.0 + 5 * i for i in range(17)])
    body = energy(client, "conn")
    assert body["quantity"] == "energy_total"
    assert [b["import_kwh"] for b in body["buckets"]] == [pytest.approx(40.0)] * 4
    assert [b["export_kwh"] for b in body["buckets"]] == [pytest.approx(20.0)] * 4
    assert [b["net_kwh"] for b in body["buckets"]] == [pytest.approx(20.0)] * 4
    exported = energy(client, "conn", quantity="energy_export_total")
    assert exported["total_energy_kwh"] == pytest.approx(80.0) and exported["total_import_kwh"] == pytest.approx(160.0)


def test_a_pv_register_is_export_and_a_two_way_asset_without_a_second_register_has_no_import(client: TestClient) -> None:
    setup_asset(client, "pv-1", kind="pv")
    send(client, "pv-1", "energy_total", [7.0 + 2 * i for i in range(17)])
    (first, *_) = energy(client, "pv-1")["buckets"]
    assert (first["import_kwh"], first["export_kwh"], first["net_kwh"]) == (0.0, pytest.approx(8.0), pytest.approx(-8.0))

    setup_asset(client, "bat", kind="battery")  # both directions by default, one register: import unknown
    send(client, "bat", "energy_export_total", [7.0 + 2 * i for i in range(17)])
    (first, *_) = energy(client, "bat")["buckets"]
    assert (first["import_kwh"], first["export_kwh"], first["net_kwh"]) == (None, pytest.approx(8.0), None)

    setup_asset(client, "ev-1", kind="ev")
    send(client, "ev-1", "power", [11.0] * 4, unit="kW")
    (first, *_) = energy(client, "ev-1")["buckets"]
    assert (first["import_kwh"], first["export_kwh"]) == (pytest.approx(11.0), 0.0)
    error(client.patch("/api/v1/assets/ev-1", json={"attributes": {"energy_flow": "sometimes"}}), 422, "energy_flow")
