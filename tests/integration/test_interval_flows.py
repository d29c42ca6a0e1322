"""``interval_flows`` (the bill engine's input) on the real repository, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.domain.errors import ValidationError
from digitaltwin.ingest.batch import ingest_batch
from digitaltwin.services.interval_flows import interval_flows
from digitaltwin.storage.repository import Repository

HOLD = timedelta(hours=1)
T0 = datetime(2026, 3, 29, 0, tzinfo=UTC)  # Europe/Berlin springs forward at 01:00 UTC: the grid is UTC, unaffected
Q = timedelta(minutes=15)


def items(asset_id: str, quantity: str, values: list[float], unit: str, start: datetime = T0) -> list[dict[str, object]]:
    return [
        {"asset_id": asset_id, "ts": (start + i * Q).isoformat(), "quantity": quantity, "value": v, "unit": unit}
        for i, v in enumerate(values)
    ]


@pytest.fixture
def site(repo: Repository) -> Repository:
    repo.create_site(Site("berlin", "Berlin", "Europe/Berlin"))
    return repo


def test_signed_power_on_a_15_minute_grid_with_coverage(site: Repository) -> None:
    site.create_asset(Asset("grid", "berlin", "grid", AssetKind.METER))
    # 00:00-02:00 UTC: +8 kW, -4 kW alternating; nothing after 02:00 (hold 1 h until 03:00 at most)
    result = ingest_batch(site, items("grid", "power", [8.0 if i % 2 == 0 else -4.0 for i in range(8)], "kW"))
    assert result.accepted == 8
    flows = interval_flows(site, "grid", start=T0, end=T0 + timedelta(hours=4), max_hold=HOLD, now=T0 + timedelta(days=1))
    assert flows.quantity == "power" and flows.step == Q and flows.starts[1] == T0 + Q
    assert flows.import_kwh[:8].tolist() == [2.0, 0.0] * 4
    assert flows.export_kwh[:8].tolist() == [0.0, 1.0] * 4
    # the last sample (-4 kW at 01:45) holds one hour: 02:00-02:45 exported, then no data
    assert flows.export_kwh[8:11].tolist() == [1.0, 1.0, 1.0]
    assert np.isnan(flows.import_kwh[12:]).all() and np.isnan(flows.export_kwh[12:]).all()
    assert flows.covered[:11].all() and not flows.covered[12:].any()
    assert flows.import_coverage[12:].tolist() == [0.0] * 4


def test_paired_registers_with_a_glitch_and_the_events_of_the_range(site: Repository) -> None:
    site.create_asset(Asset("conn", "berlin", "conn", AssetKind.METER, attributes={"energy_flow": "both"}))
    imported = [100.0 + 3 * i for i in range(9)]
    imported[4] = 0.0  # a glitch at 01:00
    ingest_batch(site, items("conn", "energy_total", imported, "kWh"))
    ingest_batch(site, items("conn", "energy_export_total", [2000.0 + 500 * i for i in range(9)], "Wh"))
    flows = interval_flows(site, "conn", start=T0, end=T0 + timedelta(hours=2), max_hold=HOLD)
    assert np.nansum(flows.import_kwh) == pytest.approx(24.0)  # nothing booked from the glitch's zero
    assert flows.export_kwh.tolist() == [0.5] * 8
    assert [e.kind.value for e in flows.events] == ["glitch"]
    assert flows.covered.all()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"start": T0 + timedelta(minutes=5)}, "start"),
        ({"end": T0 + timedelta(minutes=20)}, "end"),
        ({"step": timedelta(minutes=7)}, "step"),
        ({"end": T0}, "end"),
        ({"start": datetime(2026, 3, 29)}, "start"),
        ({"quantity": "temperature"}, "quantity"),
    ],
)
def test_bad_ranges_are_refused_naming_the_field(site: Repository, kwargs: dict[str, object], field: str) -> None:
    site.create_asset(Asset("grid", "berlin", "grid", AssetKind.METER))
    ingest_batch(site, items("grid", "power", [1.0], "kW"))
    args: dict[str, object] = {"start": T0, "end": T0 + timedelta(hours=1), "max_hold": HOLD} | kwargs
    with pytest.raises(ValidationError) as err:
        interval_flows(site, "grid", **args)  # type: ignore[arg-type]
    assert err.value.field == field
