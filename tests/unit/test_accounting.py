"""Pure accounting: emissions per interval, KPIs of a load profile and the metering tree."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from digitaltwin.accounting.carbon import bucket_emissions, constant_intensity, intensity_steps, interval_emissions, split_net
from digitaltwin.accounting.kpis import load_kpis, local_hours, per_quantity
from digitaltwin.accounting.metering_tree import TreeInput, build_tree
from digitaltwin.analytics.energy import Segments

H = 3600.0


def seg(starts: list[float], ends: list[float], kwh: list[float]) -> Segments:
    return Segments(np.array(starts, float), np.array(ends, float), np.array(kwh, float))


def test_intensity_changing_inside_a_bucket_is_applied_per_interval() -> None:
    # 2 kWh per hour for 2 h in one bucket; intensity 100 then 300 g/kWh: 0.2 + 0.6 kg, not 4 x 200 / 1000
    intensity = intensity_steps(np.array([0.0, H]), np.array([100.0, 300.0]), interval_s=H, source="t")
    energy = seg([0.0, H], [H, 2 * H], [2.0, 2.0])
    imports, exports = split_net(energy)
    em = bucket_emissions(imports, exports, np.array([0.0, 2 * H]), intensity)
    assert em.co2_kg.tolist() == pytest.approx([0.8])
    # a 2-hour interval across the change: its energy is spread evenly, 1 kWh at each intensity
    em = bucket_emissions(*split_net(seg([0.0], [2 * H], [2.0])), np.array([0.0, 2 * H]), intensity)
    assert em.co2_kg.tolist() == pytest.approx([0.4])


def test_export_is_avoided_co2_and_not_subtracted() -> None:
    intensity = constant_intensity(250.0, start_s=0.0, end_s=4 * H, source="factor")
    energy = seg([0.0, H, 2 * H], [H, 2 * H, 3 * H], [4.0, -2.0, 1.0])
    em = bucket_emissions(*split_net(energy), np.array([0.0, 2 * H, 4 * H]), intensity)
    assert em.co2_kg.tolist() == pytest.approx([1.0, 0.25])
    assert em.avoided_co2_kg.tolist() == pytest.approx([0.5, 0.0])
    co2, avoided = interval_emissions(np.array([4.0, 0.0]), np.array([0.0, 2.0]), np.array([250.0, 250.0]))
    assert co2.tolist() == [1.0, 0.0] and avoided.tolist() == [0.0, 0.5]


def test_energy_without_intensity_is_reported_not_guessed() -> None:
    # the intensity series has a missing hour (1 h - 2 h): a gap, not a hold of the previous value
    intensity = intensity_steps(np.array([0.0, 2 * H]), np.array([100.0, 100.0]), interval_s=H, source="t")
    energy = seg([0.0, H, 2 * H], [H, 2 * H, 3 * H], [1.0, 5.0, 1.0])
    em = bucket_emissions(*split_net(energy), np.array([0.0, H, 2 * H, 3 * H, 4 * H]), intensity)
    assert em.co2_kg[0] == pytest.approx(0.1) and np.isnan(em.co2_kg[1]) and em.co2_kg[2] == pytest.approx(0.1)
    assert em.uncovered_kwh.tolist() == [0.0, 5.0, 0.0, 0.0]
    assert np.isnan(em.co2_kg[3])  # no energy at all


def test_load_kpis_of_a_small_profile() -> None:
    tz = ZoneInfo("UTC")
    edges = np.arange(0, 9) * 900.0 + datetime(2024, 1, 1, tzinfo=UTC).timestamp()  # 8 cells of 15 min at local 00:00
    energy = np.array([1.0, 1.0, 2.0, np.nan, 0.5, 1.0, 1.0, 1.5])
    covered = np.where(np.isnan(energy), 0.0, 0.25)
    k = load_kpis(energy, covered, edges, tz=tz, expected_hours=2.0)
    assert k.energy_kwh == 8.0
    assert k.peak_demand_kw == 8.0 and k.peak_ts == datetime(2024, 1, 1, 0, 30, tzinfo=UTC)
    assert k.load_factor == pytest.approx((8.0 / 1.75) / 8.0)
    assert k.base_load_kw == pytest.approx(np.percentile([4, 4, 8, 2, 4, 4, 6], 2.5))
    assert k.completeness == pytest.approx(1.75 / 2.0)
    assert per_quantity(10.0, 4.0) == 2.5 and per_quantity(10.0, 0.0) is None and per_quantity(None, 1.0) is None


def test_night_window_follows_dst() -> None:
    tz = ZoneInfo("Europe/Berlin")
    # 2024-03-31 00:00 UTC is 01:00 CET; 01:00 UTC is 03:00 CEST (the clock jumps 02:00 -> 03:00)
    starts = np.array([datetime(2024, 3, 31, h, tzinfo=UTC).timestamp() for h in (0, 1, 22)])
    assert local_hours(starts, tz).tolist() == [1, 3, 0]


def test_metering_tree_remainders_and_total() -> None:
    tree = build_tree([
        TreeInput("main", None, True, 100.0),
        TreeInput("hall", "main", False),  # a building record without a meter: transparent
        TreeInput("press", "hall", True, 30.0),
        TreeInput("ovens", "main", True, 50.0),
        TreeInput("oven-1", "ovens", True, 52.0),  # child reads more than its parent: meter error
        TreeInput("spare", "main", True, None),  # metered, no data in the period
        TreeInput("yard", None, True, 7.0),
    ])
    nodes = {n.asset_id: n for n in tree.nodes}
    assert tree.roots == ["main", "yard"] and tree.total_kwh == 107.0
    assert nodes["main"].children == ["press", "ovens", "spare"] and nodes["main"].children_without_data == ["spare"]
    assert nodes["main"].unmetered_kwh == 20.0 and not nodes["main"].meter_error
    assert nodes["ovens"].unmetered_kwh == -2.0 and nodes["ovens"].meter_error
    assert nodes["press"].parent_meter_id == "main" and nodes["press"].unmetered_kwh is None
    # within the 1 % meter tolerance a small negative remainder is not flagged
    small = build_tree([TreeInput("p", None, True, 100.0), TreeInput("c", "p", True, 100.5)])
    assert small.nodes[0].unmetered_kwh == -0.5 and not small.nodes[0].meter_error
