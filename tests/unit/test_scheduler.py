"""The HiGHS scheduler on small problems whose optimum is known by hand."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from digitaltwin.domain.errors import ValidationError
from digitaltwin.optimization.flexibility import (
    MAX_DEMAND_RATE_PER_KW,
    MAX_PRICE_PER_KWH,
    Battery,
    DeferrableLoad,
    GridConnection,
)
from digitaltwin.optimization.scheduler import (
    DemandCharge,
    Schedule,
    ScheduleInfeasibleError,
    ScheduleProblem,
    ScheduleTimeoutError,
    solve,
)

START = datetime(2026, 1, 5, tzinfo=UTC)


def problem(load: list[float], price: list[float], **kwargs: object) -> ScheduleProblem:
    n = len(load)
    defaults: dict[str, object] = {"export_price": np.zeros(n)}
    defaults.update(kwargs)
    return ScheduleProblem(
        start=START, step_s=3600, load_kw=np.array(load, dtype=float), import_price=np.array(price, dtype=float),
        **defaults,  # type: ignore[arg-type]
    )


def lossless(**kwargs: object) -> Battery:
    values: dict[str, object] = dict(asset_id="bat", capacity_kwh=4.0, max_charge_kw=2.0, max_discharge_kw=2.0,
                                     charge_efficiency=1.0, discharge_efficiency=1.0, soc_min=0.0, soc_max=1.0,
                                     soc_initial=0.0, soc_final=0.0)
    values.update(kwargs)
    return Battery(**values)  # type: ignore[arg-type]


def test_a_lossless_battery_moves_energy_from_expensive_to_cheap_hours() -> None:
    sched = solve(problem([2, 2, 2, 2], [0.1, 0.1, 0.5, 0.5], batteries=(lossless(),)))
    # 4 kWh bought at 0.1 instead of 0.5: the load's 8 kWh cost 4*0.1 + 4*0.1 = 0.8 instead of 2.4.
    assert sched.cost["total"] == pytest.approx(0.8, abs=1e-9)
    assert sched.battery_soc["bat"][1] == pytest.approx(1.0)
    assert sched.battery_soc["bat"][-1] == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(sched.grid_import_kw, [4, 4, 0, 0], atol=1e-9)


def test_efficiency_losses_are_paid_for() -> None:
    battery = lossless(charge_efficiency=0.9, discharge_efficiency=0.9, soc_final=None)
    sched = solve(problem([0, 0, 2, 0], [0.1, 0.1, 1.0, 1.0], batteries=(battery,)))
    # 2 kWh delivered need 2 / 0.9 stored and 2 / 0.81 bought at 0.1.
    assert sched.cost["energy"] == pytest.approx(2 / 0.81 * 0.1, rel=1e-7)
    np.testing.assert_allclose(sched.grid_import_kw[2], 0.0, atol=1e-9)


def test_a_sunk_peak_is_not_paid_again() -> None:
    demand = DemandCharge("demand", mask=np.ones(4, dtype=bool), rate_per_kw=10.0, sunk_peak_kw=5.0)
    battery = lossless(soc_initial=0.5, soc_final=0.5)
    # The period's peak is already 5 kW: shaving today's 5 kW peak saves nothing, so no cycling.
    sunk = solve(problem([5, 1, 1, 5], [0.2] * 4, batteries=(battery,), demand_charges=(demand,)))
    assert sunk.cost["demand"] == pytest.approx(0.0, abs=1e-9)
    assert sunk.peaks_kw["demand"] == pytest.approx(5.0)
    # With no peak yet this period: 2 kWh out in the first hour, 2 kWh back over the two
    # 1 kW hours (at most 3 kW import each), 2 kWh out in the last: a 3 kW peak, 3 * 10.
    fresh = solve(problem([5, 1, 1, 5], [0.2] * 4, batteries=(battery,),
                          demand_charges=(DemandCharge("demand", np.ones(4, dtype=bool), 10.0, 0.0),)))
    assert fresh.peaks_kw["demand"] == pytest.approx(3.0, abs=1e-6)
    assert fresh.cost["demand"] == pytest.approx(30.0, abs=1e-6)
    assert np.max(fresh.grid_import_kw) <= fresh.peaks_kw["demand"] + 1e-6


def test_robust_mode_plans_the_peak_for_the_upper_quantile() -> None:
    load = [4, 4, 4, 4]
    upper = np.array([4, 4, 6, 4], dtype=float)
    demand = DemandCharge("demand", np.ones(4, dtype=bool), 10.0, 0.0)
    battery = lossless(soc_initial=1.0, soc_final=None)
    expected = solve(problem(load, [0.2] * 4, batteries=(battery,), demand_charges=(demand,)))
    robust = solve(problem(load, [0.2] * 4, batteries=(battery,), demand_charges=(demand,), mode="robust",
                           load_upper_kw=upper, quantile_label="P90 load"))
    # Every step's planned import plus its margin stays under the robust peak.
    margin = upper - np.array(load)
    assert np.all(robust.grid_import_kw + margin <= robust.peaks_kw["demand"] + 1e-6)
    # The expected-value plan spreads the battery evenly (3 kW peak); the robust one keeps
    # energy for the risky hour, so the realised P90 peak is lower under the robust plan.
    realised_expected = np.max(expected.grid_import_kw + margin)
    realised_robust = np.max(robust.grid_import_kw + margin)
    assert realised_robust < realised_expected - 0.5
    assert "P90 load" in robust.risk and robust.risk.startswith("robust")


def test_a_contiguous_load_runs_in_the_cheapest_block() -> None:
    prices = [0.5, 0.4, 0.1, 0.1, 0.1, 0.6, 0.2, 0.2]
    washer = DeferrableLoad("washer", energy_kwh=3.0, max_power_kw=1.0, window_start_step=0, window_end_step=8,
                            contiguous=True)
    sched = solve(problem([0] * 8, prices, deferrables=(washer,)))
    np.testing.assert_allclose(sched.deferrable_kw["washer"], [0, 0, 1, 1, 1, 0, 0, 0], atol=1e-9)
    assert sched.cost["total"] == pytest.approx(0.3)


def test_a_split_load_takes_the_cheapest_hours_of_its_window() -> None:
    prices = [0.1, 0.5, 0.2, 0.1, 0.3]
    heater = DeferrableLoad("heater", energy_kwh=4.0, max_power_kw=2.0, window_start_step=1, window_end_step=5)
    sched = solve(problem([0] * 5, prices, deferrables=(heater,)))
    # Step 0 is outside the window although cheapest.
    np.testing.assert_allclose(sched.deferrable_kw["heater"], [0, 0, 2, 2, 0], atol=1e-9)


def test_negative_prices_never_import_and_export_at_once() -> None:
    pv = np.array([5.0, 5.0])
    sched = solve(problem([1, 1], [-0.1, -0.1], export_price=np.array([0.05, 0.05]), pv_kw=pv))
    assert np.all(np.minimum(sched.grid_import_kw, sched.grid_export_kw) <= 1e-9)


def exclusive(sched: Schedule) -> bool:
    """No step imports and exports, nor charges and discharges a battery, at once."""
    both = [np.minimum(sched.grid_import_kw, sched.grid_export_kw)]
    both += [np.minimum(sched.battery_charge_kw[k], sched.battery_discharge_kw[k]) for k in sched.battery_charge_kw]
    return all(float(np.max(b)) <= 1e-9 for b in both)


def test_an_export_price_above_the_import_price_cycles_the_battery_without_trading_with_itself() -> None:
    # 4 kWh / 2 kW lossless battery, empty at both ends, no load: each hour either buys 2 kWh at 0.1
    # or sells 2 kWh at 0.2. Two hours of each: 4 kWh bought (0.4) and sold (0.8), -0.4 in all.
    battery = lossless(soc_initial=0.0, soc_final=0.0)
    sched = solve(problem([0, 0, 0, 0], [0.1] * 4, export_price=np.full(4, 0.2), batteries=(battery,)))
    assert sched.cost["total"] == pytest.approx(-0.4, abs=1e-9)
    assert sched.grid_import_kw.sum() == pytest.approx(4.0) and sched.grid_export_kw.sum() == pytest.approx(4.0)
    assert exclusive(sched) and sched.solver["status"] == "optimal"


def test_a_negative_import_price_charges_the_battery_and_exports_to_make_room() -> None:
    # 1 kW of load, import paid 1 per kWh, export worth nothing; 2 kWh / 2 kW lossless battery at half.
    # Best by hand: 6 kWh imported, e.g. charge 1 kW, discharge 2 kW (1 kW into the grid to make room),
    # charge 2 kW, idle: the grid takes 2 + 0 + 3 + 1.
    battery = lossless(capacity_kwh=2.0, soc_initial=0.5, soc_final=None)
    sched = solve(problem([1, 1, 1, 1], [-1.0] * 4, export_price=np.zeros(4), batteries=(battery,)))
    assert sched.cost["total"] == pytest.approx(-6.0, abs=1e-9)
    assert sched.grid_import_kw.sum() == pytest.approx(6.0)
    assert exclusive(sched)


def test_a_negative_price_does_not_burn_energy_in_the_battery_losses() -> None:
    # A full 1 kWh battery, 1 kW limits, 50 % one way; import paid 1 per kWh. Charging and discharging at
    # once would absorb 0.75 kWh an hour for ever (-7 over 4 hours); no inverter does that. The best real
    # plan: empty it into the load (0.5 kW for an hour), refill at 1 kW for two hours: 1.5 kWh more than
    # the 4 kWh of load imported, -5.5.
    battery = lossless(capacity_kwh=1.0, max_charge_kw=1.0, max_discharge_kw=1.0, charge_efficiency=0.5,
                       discharge_efficiency=0.5, soc_initial=1.0, soc_final=None)
    sched = solve(problem([1, 1, 1, 1], [-1.0] * 4, export_price=np.full(4, -2.0), batteries=(battery,)))
    assert sched.cost["total"] == pytest.approx(-5.5, abs=1e-9)
    assert exclusive(sched)


def test_surplus_pv_that_costs_to_export_is_not_burnt_in_the_battery() -> None:
    # 2 kW of PV that cannot be curtailed, no load, export costs 1 per kWh; the full 1 kWh battery
    # (1 kW, 50 % one way) can empty 0.25 kW into the grid in the first hour (0.5 kWh stored) and take
    # 1 kW in the second (0.5 kWh back): 4.25 - 1 = 3.25 kWh exported. Burning (charging and discharging
    # at once) would export only 2.5.
    battery = lossless(capacity_kwh=1.0, max_charge_kw=1.0, max_discharge_kw=1.0, charge_efficiency=0.5,
                       discharge_efficiency=0.5, soc_initial=1.0, soc_final=None)
    sched = solve(problem([0, 0], [0.3, 0.3], export_price=np.full(2, -1.0), pv_kw=np.full(2, 2.0), batteries=(battery,)))
    assert sched.grid_export_kw.sum() == pytest.approx(3.25, abs=1e-9)
    assert sched.cost["total"] == pytest.approx(3.25, abs=1e-9)
    assert exclusive(sched)


def test_a_large_adversarial_problem_returns_its_best_plan_at_the_time_limit() -> None:
    # Export above import on every step of a day with a 600 kWh battery: a hard mixed-integer program.
    # At the time limit the best plan found comes back with the proven bound on its distance to the optimum.
    n = 96
    load = 200.0 + 150.0 * np.sin(np.arange(n) / 6.0)
    battery = Battery("bat", 600.0, 300.0, 300.0, 0.95, 0.95, 0.1, 0.9, 0.5)
    big = ScheduleProblem(start=START, step_s=900, load_kw=load, import_price=np.full(n, 0.1),
                          export_price=np.full(n, 0.2), batteries=(battery,))
    sched = solve(big, time_limit_s=2.0)
    assert sched.solver["binaries"] > 0 and sched.solver["time_limit_s"] == 2.0
    assert sched.solver["status"] in ("optimal", "time_limit") and sched.solver["gap"] >= 0.0
    assert exclusive(sched)
    with pytest.raises(ScheduleTimeoutError) as err:  # no plan at all within the limit
        solve(big, time_limit_s=1e-6)
    assert err.value.status_code == 504


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"import_price": np.full(2, 1e200)}, "import_price"),
        ({"import_price": np.array([0.1, -1e12])}, "import_price"),
        ({"export_price": np.full(2, 1e308)}, "export_price"),
        ({"export_price": np.array([0.1, np.inf])}, "export_price"),
        ({"demand_charges": (DemandCharge("demand", np.ones(2, dtype=bool), 1e308),)}, "demand_charges"),
        ({"load_kw": np.array([1.0, 1e12])}, "load_kw"),
    ],
)
def test_prices_beyond_the_documented_bounds_name_the_field(kwargs: dict[str, object], field: str) -> None:
    base: dict[str, object] = {"start": START, "step_s": 3600, "load_kw": np.ones(2), "import_price": np.full(2, 0.1),
                               "export_price": np.zeros(2)}
    with pytest.raises(ValidationError) as err:
        solve(ScheduleProblem(**{**base, **kwargs}))  # type: ignore[arg-type]
    assert err.value.field == field and err.value.status_code == 422


def test_prices_at_the_bounds_solve() -> None:
    battery = lossless(soc_initial=0.5, soc_final=None)
    demand = DemandCharge("demand", np.ones(4, dtype=bool), MAX_DEMAND_RATE_PER_KW)
    sched = solve(problem([2, 2, 2, 2], [MAX_PRICE_PER_KWH, 0.1, -MAX_PRICE_PER_KWH, 0.1],
                          export_price=np.array([-MAX_PRICE_PER_KWH, 0.0, MAX_PRICE_PER_KWH, 0.0]),
                          batteries=(battery,), demand_charges=(demand,)))
    assert sched.solver["status"] == "optimal" and exclusive(sched)


def test_curtailable_pv_is_curtailed_when_export_costs() -> None:
    sched = solve(problem([1, 1], [0.2, 0.2], export_price=np.array([-0.05, 0.05]), pv_kw=np.array([4.0, 4.0]),
                          pv_curtailable=True))
    np.testing.assert_allclose(sched.pv_used_kw, [1.0, 4.0], atol=1e-9)
    np.testing.assert_allclose(sched.grid_export_kw, [0.0, 3.0], atol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"batteries": (lossless(soc_min=0.2, soc_initial=0.1),)}, "battery.soc_initial"),
        ({"batteries": (lossless(soc_initial=0.0, soc_final=1.0, max_charge_kw=0.5),)}, "battery.soc_final"),
        ({"deferrables": (DeferrableLoad("d", 10.0, 2.0, 0, 3),)}, "deferrable.window"),
        ({"deferrables": (DeferrableLoad("d", 3.0, 1.0, 2, 5),)}, "deferrable.window"),
        ({"grid": GridConnection(import_limit_kw=1.5)}, "grid.import_limit_kw"),
    ],
)
def test_infeasible_inputs_name_the_constraint(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ScheduleInfeasibleError) as err:
        solve(problem([2, 2, 2, 2], [0.2] * 4, **kwargs))
    assert err.value.field == field
    assert err.value.status_code == 422


def test_a_battery_that_cannot_cover_a_grid_limit_is_diagnosed_by_the_solver() -> None:
    # Each step alone looks fine (2 kW load, 1 kW limit, 1 kW battery) but the battery holds
    # only 2 kWh for 4 hours of 1 kW shortfall: only the elastic program can tell.
    battery = lossless(soc_initial=0.5, soc_final=None, max_discharge_kw=1.0)
    with pytest.raises(ScheduleInfeasibleError) as err:
        solve(problem([2, 2, 2, 2], [0.2] * 4, batteries=(battery,), grid=GridConnection(import_limit_kw=1.0)))
    assert err.value.field == "grid.import_limit_kw"


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: lossless(capacity_kwh=0.0), "battery.capacity_kwh"),
        (lambda: lossless(capacity_kwh=1e300), "battery.capacity_kwh"),
        (lambda: lossless(charge_efficiency=1.2), "battery.charge_efficiency"),
        (lambda: lossless(discharge_efficiency=1e-300), "battery.discharge_efficiency"),
        (lambda: lossless(capacity_kwh=1e-300), "battery.capacity_kwh"),
        (lambda: lossless(max_discharge_kw=1e8), "battery.max_discharge_kw"),
        (lambda: lossless(degradation_cost_per_kwh=1e200), "battery.degradation_cost_per_kwh"),
        (lambda: GridConnection(export_limit_kw=1e300), "grid.export_limit_kw"),
        (lambda: DeferrableLoad("d", 1e300, 1.0, 0, 2), "deferrable.energy_kwh"),
        (lambda: lossless(soc_min=0.8, soc_max=0.2), "battery.soc_min"),
        (lambda: lossless(max_charge_kw=float("nan")), "battery.max_charge_kw"),
        (lambda: DeferrableLoad("d", -1.0, 1.0, 0, 2), "deferrable.energy_kwh"),
        (lambda: DeferrableLoad("d", 1.0, 1.0, 3, 2), "deferrable.window"),
        (lambda: GridConnection(import_limit_kw=-1.0), "grid.import_limit_kw"),
    ],
)
def test_bad_settings_name_the_field(build: object, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        build()  # type: ignore[operator]
    assert err.value.field == field


def test_prices_of_the_wrong_length_are_refused() -> None:
    with pytest.raises(ValidationError) as err:
        solve(problem([1, 1, 1], [0.1, 0.2]))
    assert err.value.field == "import_price"
