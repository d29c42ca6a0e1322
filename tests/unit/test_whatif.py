"""What-if replays: load shifts conserve energy, simulated batteries follow their plans, PV from pvlib."""

from __future__ import annotations

from datetime import time

import numpy as np
import pandas as pd
import pytest

from digitaltwin.domain.errors import ValidationError
from digitaltwin.optimization.flexibility import Battery
from digitaltwin.optimization.pv_production import PVArray, ac_power_kw
from digitaltwin.optimization.whatif import LoadShift, follow_plan, shift_load, simulate_battery

TZ = "Europe/Berlin"


def hourly(days: int, start: str = "2026-03-27") -> pd.DatetimeIndex:
    """Hourly UTC interval starts from local midnight of ``start`` over ``days`` local days (DST on the 29th)."""
    first = pd.Timestamp(start, tz=TZ).tz_convert("UTC")
    last = (pd.Timestamp(start, tz=TZ) + pd.DateOffset(days=days)).tz_convert("UTC")
    return pd.date_range(first, last, freq="1h", inclusive="left")


def test_a_shift_moves_energy_inside_each_local_day() -> None:
    index = hourly(4)
    load = pd.Series(10.0, index=index)
    shift = LoadShift(15.0, time(17), time(20), time(10), time(13))
    shifted = shift_load(load, shift, timezone=TZ, step_s=3600)
    local = index.tz_convert(TZ)
    for day in np.unique(local.normalize()):
        today = local.normalize() == day
        assert shifted[today].sum() == pytest.approx(load[today].sum())  # energy per day conserved
    evening = (local.hour >= 17) & (local.hour < 20)
    morning = (local.hour >= 10) & (local.hour < 13)
    assert shifted[evening].to_numpy() == pytest.approx(5.0)
    assert shifted[morning].to_numpy() == pytest.approx(15.0)
    # The 23-hour DST day (2026-03-29) shifts the same energy.
    assert len(index) == 4 * 24 - 1


def test_a_shift_takes_no_more_than_the_window_holds() -> None:
    index = hourly(1)
    load = pd.Series(1.0, index=index)
    shifted = shift_load(load, LoadShift(100.0, time(17), time(20), time(10), time(13)), timezone=TZ, step_s=3600)
    assert shifted.min() == pytest.approx(0.0) and shifted.sum() == pytest.approx(load.sum())


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"energy_kwh_per_day": 0.0}, "shift.energy_kwh_per_day"),
    ({"from_end": time(16)}, "shift.from_end"),
])
def test_bad_shifts_name_the_field(kwargs: dict[str, object], field: str) -> None:
    values: dict[str, object] = {"energy_kwh_per_day": 5.0, "from_start": time(17), "from_end": time(20),
                                 "to_start": time(10), "to_end": time(13)}
    values.update(kwargs)
    with pytest.raises(ValidationError) as err:
        LoadShift(**values)  # type: ignore[arg-type]
    assert err.value.field == field


def battery() -> Battery:
    return Battery("bat", 20.0, 10.0, 10.0, 0.95, 0.95, 0.1, 0.9, 0.5, 0.5)


def test_a_simulated_battery_follows_its_plan_on_the_actual_load() -> None:
    index = hourly(3)
    local = index.tz_convert(TZ)
    load = pd.Series(np.where((local.hour >= 17) & (local.hour < 20), 12.0, 4.0), index=index)
    price = pd.Series(np.where((local.hour >= 17) & (local.hour < 20), 0.4, 0.1), index=index)
    wrong = pd.Series(0.0, index=index)

    def forecast(start: pd.Timestamp, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        return np.full(n, 6.0), np.full(n, 9.0)  # a poor forecast: flat

    run = simulate_battery(load, battery(), step_s=3600, timezone=TZ, import_price=price, export_price=wrong,
                           forecast=forecast, demand_rate_per_kw=0.0, mode="expected")
    assert run.plans == 3 and not run.perfect_foresight
    # What the battery does does not depend on the load: net = actual + planned setpoint.
    perfect = simulate_battery(load, battery(), step_s=3600, timezone=TZ, import_price=price, export_price=wrong)
    assert perfect.perfect_foresight
    cost = lambda r: float((r.net_kw.clip(lower=0) * price).sum())  # noqa: E731
    assert cost(perfect) <= cost(run) + 1e-9
    assert cost(perfect) < float((load * price).sum())
    assert run.soc.between(0.1 - 1e-9, 0.9 + 1e-9).all()


def test_the_local_controller_holds_the_planned_peak_and_refuses_unplanned_export() -> None:
    bat = Battery("bat", 20.0, 10.0, 10.0, 1.0, 1.0, 0.0, 1.0, 0.5)
    actual = np.array([4.0, 12.0, 9.0, 1.0])
    planned = np.array([8.0, 8.0, 8.0, 8.0])  # the plan expected 4 kW of load and charged 4 kW throughout
    setpoint = np.array([4.0, 4.0, -3.0, -5.0])
    power, soc = follow_plan(actual, setpoint, planned, bat, cap_kw=8.0, step_s=3600)
    # 4 kW charge as planned; at 12 kW of load it discharges 4 kW to hold 8 kW; the planned -3 kW keeps 9 kW
    # of load under the cap; at 1 kW of load it discharges only 1 kW (the plan exported nothing).
    assert power.tolist() == pytest.approx([4.0, -4.0, -3.0, -1.0])
    assert soc.tolist() == pytest.approx([0.7, 0.5, 0.35, 0.3])
    assert (actual + power).max() <= 8.0 + 1e-9 and (actual + power).min() >= 0.0
    # an empty battery cannot hold the peak: it discharges what it holds and no more
    low = Battery("bat", 20.0, 10.0, 10.0, 1.0, 1.0, 0.0, 1.0, 0.1)
    power, soc = follow_plan(np.array([15.0]), np.array([0.0]), np.array([8.0]), low, cap_kw=8.0, step_s=3600)
    assert power.tolist() == pytest.approx([-2.0]) and soc.tolist() == pytest.approx([0.0])


def test_the_local_controller_exports_nothing_where_export_earns_nothing() -> None:
    bat = Battery("bat", 20.0, 10.0, 10.0, 1.0, 1.0, 0.0, 1.0, 0.9)
    actual = np.array([2.0, 2.0])
    setpoint = np.array([-6.0, -6.0])  # the plan discharged 6 kW into 4 kW of expected load: 2 kW exported
    planned = np.array([-2.0, -2.0])
    paid, _ = follow_plan(actual, setpoint, planned, bat, cap_kw=10.0, step_s=3600, export_earns=np.array([True, True]))
    assert paid.tolist() == pytest.approx([-6.0, -6.0])  # an export that earns: played as planned
    unpaid, soc = follow_plan(actual, setpoint, planned, bat, cap_kw=10.0, step_s=3600, export_earns=np.array([False, True]))
    assert unpaid.tolist() == pytest.approx([-2.0, -6.0]) and soc.tolist() == pytest.approx([0.8, 0.5])


def test_a_replayed_battery_does_not_export_at_a_price_of_zero() -> None:
    # Import costs 0.1 in the morning and pays 0.5 in the afternoon; export earns nothing. The plan empties
    # the full battery into the grid in the morning to make room for the paid afternoon import; a
    # controller under a zero-export setpoint only covers the load with it.
    index = hourly(1)
    local = index.tz_convert(TZ)
    load = pd.Series(1.0, index=index)
    price = pd.Series(np.where(local.hour < 12, 0.1, -0.5), index=index)
    zero = pd.Series(0.0, index=index)
    full = Battery("bat", 20.0, 10.0, 10.0, 0.95, 0.95, 0.1, 0.9, 0.9)
    blind = simulate_battery(load, full, step_s=3600, timezone=TZ, import_price=price, export_price=zero)
    assert blind.net_kw.min() < -1.0  # the plan did export
    guarded = simulate_battery(load, full, step_s=3600, timezone=TZ, import_price=price, export_price=zero, guard=True)
    assert guarded.net_kw.min() >= -1e-9
    assert (guarded.net_kw[local.hour >= 12] > 1.0).any()  # and it still charges at the paid import


def test_the_billing_month_peak_is_sunk_within_a_month_only() -> None:
    index = hourly(2, start="2026-03-31")  # 31 March and 1 April: a new billing period on the second day
    local = index.tz_convert(TZ)
    load = pd.Series(8.0, index=index)
    load[(local.month == 3) & (local.hour == 5)] = 30.0  # March's peak, sunk for the rest of March
    load[(local.month == 4) & (local.hour == 10)] = 12.0  # April's own peak
    price = pd.Series(0.1, index=index)
    run = simulate_battery(load, battery(), step_s=3600, timezone=TZ, import_price=price,
                           export_price=pd.Series(0.0, index=index), demand_rate_per_kw=10.0)
    april = local.month == 4
    # March's 30 kW is not carried into April: April's plan shaves its own 12 kW peak.
    assert run.net_kw[april].max() < 11.0


def test_pv_output_follows_the_sun_and_clips_at_the_inverter() -> None:
    index = pd.date_range("2026-06-21 00:00", periods=96, freq="15min", tz="UTC")
    array = PVArray(kwp=10.0, tilt_deg=30.0, azimuth_deg=180.0, latitude=48.1, longitude=11.6)
    solar_noon = (index.hour >= 10) & (index.hour < 12)
    ghi = np.where((index.hour >= 4) & (index.hour < 19), 900.0, 0.0)
    power = ac_power_kw(array, index, step_s=900, ghi_w_m2=ghi, temp_air_c=np.full(96, 20.0))
    assert power[(index.hour < 3)].max() == 0.0
    assert 6.0 < power[solar_noon].max() <= 10.0 / 1.1 + 1e-9  # clipped at the AC rating
    gappy = ac_power_kw(array, index, step_s=900, ghi_w_m2=np.where(index.hour == 11, np.nan, ghi),
                        temp_air_c=np.full(96, 20.0))
    assert np.isnan(gappy[index.hour == 11]).all()


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"kwp": 0.0}, "pv.kwp"), ({"tilt_deg": 95.0}, "pv.tilt_deg"), ({"latitude": float("nan")}, "pv.latitude"),
])
def test_bad_pv_arrays_name_the_field(kwargs: dict[str, float], field: str) -> None:
    values = {"kwp": 5.0, "tilt_deg": 30.0, "azimuth_deg": 180.0, "latitude": 48.0, "longitude": 11.0} | kwargs
    with pytest.raises(ValidationError) as err:
        PVArray(**values)
    assert err.value.field == field
