"""CO2, KPIs and the metering tree on real data (SQLite and PostgreSQL).

Data: Cambridge University Estates building energy archive, 2019 (hourly electricity of
buildings b33 and b57, UTC hour starts) with the GB grid carbon intensity of National Grid ESO
for the same hours (kg CO2/kWh), and the buildings' gross internal areas. The archive is not
copied into the repository: it is read from ``shared/data/cambridge_estates_2019`` next to
the repository (or next to one of its parent folders) and these tests skip only when it is absent.

Every expected figure is computed here independently with pandas from the CSV files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from digitaltwin.ingest.csv_import import ColumnMapping, ValueColumn, import_csv
from digitaltwin.storage.repository import Repository
from tests.conftest import REPO_ROOT


def _archive() -> Path | None:
    for folder in REPO_ROOT.parents:
        candidate = folder / "shared" / "data" / "cambridge_estates_2019"
        if (candidate / "carbon_intensity_gb" / "2019.csv").is_file():
            return candidate
    return None


ARCHIVE = _archive()
pytestmark = pytest.mark.skipif(ARCHIVE is None, reason="shared/data/cambridge_estates_2019 not found next to the repository")

SITE = "cambridge"
TZ = "Europe/London"
FMT = "%Y-%m-%d %H:%M:%S"


def _electricity(building: str) -> pd.Series:
    assert ARCHIVE is not None
    df = pd.read_csv(ARCHIVE / f"UCam_Building_{building}" / "electricity" / "2019.csv")
    return pd.Series(df["equipment load [kWh]"].to_numpy(), index=pd.to_datetime(df["datetime"], utc=True))


def _intensity_kg() -> pd.Series:
    assert ARCHIVE is not None
    df = pd.read_csv(ARCHIVE / "carbon_intensity_gb" / "2019.csv")
    return pd.Series(df["Carbon Intensity [kg_CO2/kWh]"].to_numpy(), index=pd.to_datetime(df["datetime"], utc=True))


def _gia(building: str) -> float:
    assert ARCHIVE is not None
    df = pd.read_csv(ARCHIVE / "building_floor_roof_areas.csv")
    return float(df.loc[df["Building ID"] == building, "GIA (m2)"].iloc[0])


@pytest.fixture
def cambridge(client: TestClient, repo: Repository) -> TestClient:
    """Site ``cambridge`` with the GB grid (intensity series), b33 as main meter and b57 as its sub-meter."""
    assert ARCHIVE is not None
    assert client.post("/api/v1/sites", json={"id": SITE, "name": "Cambridge estate", "timezone": TZ, "country": "GB"}).status_code == 201
    assets = [
        {"id": "gb-grid", "kind": "grid", "name": "GB grid (National Grid ESO carbon intensity)"},
        {"id": "b33", "kind": "building", "name": "UCam b33", "attributes": {"floor_area_m2": _gia("b33")}},
        {"id": "b57", "kind": "meter", "name": "UCam b57 as a sub-meter of b33", "parent_id": "b33",
         "attributes": {"floor_area_m2": _gia("b57")}},
    ]
    for asset in assets:
        assert client.post("/api/v1/assets", json={"site_id": SITE, **asset}).status_code == 201, asset
    hourly = {"label": "start", "interval_seconds": 3600, "timestamp_format": FMT, "timezone": "UTC"}
    intensity = ColumnMapping("datetime", (ValueColumn("Carbon Intensity [kg_CO2/kWh]", "carbon_intensity", "kg/kWh"),), asset_id="gb-grid", **hourly)  # type: ignore[arg-type]
    assert import_csv(repo, ARCHIVE / "carbon_intensity_gb" / "2019.csv", intensity).readings_stored == 8760
    for building in ("b33", "b57"):
        mapping = ColumnMapping("datetime", (ValueColumn("equipment load [kWh]", "energy", "kWh"),), asset_id=building, **hourly)  # type: ignore[arg-type]
        assert import_csv(repo, ARCHIVE / f"UCam_Building_{building}" / "electricity" / "2019.csv", mapping).readings_stored == 8760
    response = client.patch(f"/api/v1/sites/{SITE}", json={"attributes": {"carbon_intensity_asset_id": "gb-grid"}})
    assert response.status_code == 200, response.text
    return client


def test_daily_co2_is_energy_times_intensity_per_hour(cambridge: TestClient) -> None:
    """Location-based CO2 per local day of January 2019: sum over hours of kWh x kg/kWh."""
    r = cambridge.get("/api/v1/assets/b33/energy", params={
        "start": "2019-01-01T00:00:00+00:00", "end": "2019-02-01T00:00:00+00:00", "bucket": "day", "with": "co2"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["co2_source"] == "asset:gb-grid"
    co2 = (_electricity("b33") * _intensity_kg())["2019-01"]
    expected = co2.groupby(co2.index.tz_convert(TZ).date).sum()  # January is GMT: local day == UTC day
    got = [b["co2_kg"] for b in body["buckets"]]
    assert got == pytest.approx(expected.to_numpy(), rel=1e-9)
    assert body["total_co2_kg"] == pytest.approx(co2.sum(), rel=1e-9)
    assert all(b["avoided_co2_kg"] == 0.0 and b["co2_uncovered_kwh"] == 0.0 for b in body["buckets"])
    # a period mean would be wrong: the per-hour product differs from energy x mean intensity
    mean_based = _electricity("b33")["2019-01"].sum() * _intensity_kg()["2019-01"].mean()
    assert abs(body["total_co2_kg"] - mean_based) > 1.0


def test_dst_days_have_23_and_25_hours_of_co2(cambridge: TestClient) -> None:
    """2019-03-31 (23 h) and 2019-10-27 (25 h) in Europe/London: CO2 of exactly those hours."""
    co2 = _electricity("b33") * _intensity_kg()
    for day, hours in (("2019-03-31", 23), ("2019-10-27", 25)):
        start = pd.Timestamp(day, tz=TZ)
        end = start + pd.DateOffset(days=1)
        r = cambridge.get("/api/v1/assets/b33/energy", params={
            "start": start.isoformat(), "end": end.isoformat(), "bucket": "day", "with": "co2"})
        assert r.status_code == 200, r.text
        (bucket,) = r.json()["buckets"]
        window = co2[(co2.index >= start) & (co2.index < end)]
        assert len(window) == hours
        assert bucket["co2_kg"] == pytest.approx(window.sum(), rel=1e-9)
        k = cambridge.get("/api/v1/assets/b33/kpis", params={"start": start.isoformat(), "end": end.isoformat()}).json()
        energy = _electricity("b33")[(co2.index >= start) & (co2.index < end)]
        assert k["energy_kwh"] == pytest.approx(energy.sum(), rel=1e-9)
        assert k["co2_kg"] == pytest.approx(window.sum(), rel=1e-9)
        assert k["completeness"] == pytest.approx(1.0)


def test_asset_kpis_of_a_year(cambridge: TestClient) -> None:
    r = cambridge.get("/api/v1/assets/b33/kpis", params={"start": "2019-01-01T00:00:00Z", "end": "2020-01-01T00:00:00Z"})
    assert r.status_code == 200, r.text
    k = r.json()
    e = _electricity("b33")
    assert k["energy_kwh"] == pytest.approx(e.sum(), rel=1e-9)
    assert k["peak_demand_kw"] == pytest.approx(e.max())  # hourly kWh = mean kW of that hour
    assert pd.Timestamp(k["peak_ts"]) == e.idxmax()
    assert k["load_factor"] == pytest.approx(e.mean() / e.max(), rel=1e-9)
    # base load: 2.5th percentile of 15-min mean power in local 00:00-06:00 (each hour is 4 cells)
    cells = e.repeat(4)
    cell_start = e.index.repeat(4) + pd.to_timedelta(np.tile([0, 15, 30, 45], len(e)), unit="min")
    night = cells[(cell_start.tz_convert(TZ).hour < 6)]
    assert k["base_load_kw"] == pytest.approx(np.percentile(night.to_numpy(), 2.5), rel=1e-9)
    assert k["floor_area_m2"] == _gia("b33")
    assert k["energy_per_m2_kwh"] == pytest.approx(e.sum() / _gia("b33"), rel=1e-9)
    assert k["co2_kg"] == pytest.approx((e * _intensity_kg()).sum(), rel=1e-9)
    assert k["co2_uncovered_kwh"] == 0.0 and k["avoided_co2_kg"] == 0.0
    assert k["completeness"] == pytest.approx(1.0)
    assert k["cost_per_kwh"] is None and k["energy_per_unit_kwh"] is None


def test_metering_tree_and_site_kpis_never_count_a_child_twice(cambridge: TestClient) -> None:
    params = {"start": "2019-06-01T00:00:00+01:00", "end": "2019-07-01T00:00:00+01:00"}
    june = lambda s: s[(s.index >= pd.Timestamp(params["start"])) & (s.index < pd.Timestamp(params["end"]))]  # noqa: E731
    parent, child = june(_electricity("b33")).sum(), june(_electricity("b57")).sum()
    tree = cambridge.get(f"/api/v1/sites/{SITE}/metering-tree", params=params)
    assert tree.status_code == 200, tree.text
    body = tree.json()
    meters = {m["asset_id"]: m for m in body["meters"]}
    assert set(meters) == {"b33", "b57"}  # the grid asset has no energy series: not a meter
    assert body["roots"] == ["b33"]
    assert meters["b33"]["children"] == ["b57"]
    assert meters["b33"]["unmetered_kwh"] == pytest.approx(parent - child, rel=1e-9)
    assert meters["b33"]["meter_error"] is False
    assert meters["b57"]["parent_meter_id"] == "b33" and meters["b57"]["unmetered_kwh"] is None
    assert body["total_energy_kwh"] == pytest.approx(parent, rel=1e-9)
    site = cambridge.get(f"/api/v1/sites/{SITE}/kpis", params=params).json()
    assert site["assets"] == ["b33"]
    assert site["energy_kwh"] == pytest.approx(parent, rel=1e-9)
    assert site["floor_area_m2"] == _gia("b33")


def test_site_attributes_are_validated_by_field(cambridge: TestClient) -> None:
    url = f"/api/v1/sites/{SITE}"
    for attributes, field in (
        ({"co2_factor_g_per_kwh": -1}, "co2_factor_g_per_kwh"),
        ({"co2_factor_g_per_kwh": "233"}, "co2_factor_g_per_kwh"),
        ({"latitude": 91}, "latitude"),
        ({"connection_capacity_kw": True}, "connection_capacity_kw"),
        ({"carbon_intensity_asset_id": "no such id!"}, "carbon_intensity_asset_id"),
    ):
        r = cambridge.patch(url, json={"attributes": attributes})
        assert r.status_code == 422 and r.json()["field"] == field, (attributes, r.text)
    r = cambridge.patch(url, json={"attributes": {"carbon_intensity_asset_id": "nowhere"}})
    assert r.status_code == 404 and r.json()["field"] == "carbon_intensity_asset_id"
    r = cambridge.get("/api/v1/assets/b33/energy", params={"start": "2019-01-01T00:00:00Z", "end": "2019-01-02T00:00:00Z", "with": "price"})
    assert r.status_code == 422 and r.json()["field"] == "with"
    # a constant factor applies when no intensity asset is named
    assert cambridge.patch(url, json={"attributes": {"co2_factor_g_per_kwh": 200}}).json()["attributes"] == {"co2_factor_g_per_kwh": 200.0}
    body = cambridge.get("/api/v1/assets/b33/energy", params={
        "start": "2019-01-01T00:00:00Z", "end": "2019-01-02T00:00:00Z", "bucket": "day", "with": "co2"}).json()
    assert body["total_co2_kg"] == pytest.approx(body["total_energy_kwh"] * 0.2, rel=1e-12)
    assert body["co2_source"].startswith("site factor 200")
