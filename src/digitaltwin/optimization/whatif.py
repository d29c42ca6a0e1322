"""What-if replays of a past period: a site's actual load under a changed system.

The changes a scenario can make, each a pure function of interval series indexed by UTC
interval starts (kW as the mean power of each interval):

* :func:`shift_load`: move up to an amount of energy per local day from one local-time window
  into another, spread evenly (a process moved out of the evening peak);
* added PV: its modelled output (see :mod:`.pv_production`) is subtracted from the load;
* :func:`simulate_battery`: a battery run by the scheduler as it would have been run: every
  local midnight the day is planned from the forecast that was available then (trained only
  on data before it), the battery follows the plan on the *actual* load, and the billing
  month's realised peak so far is the sunk floor of the next plan. With
  ``perfect_foresight`` the plan sees the actual load instead, and the result says so.

The bill, CO2 and peak of the baseline and of the scenario are then computed by the same
engines as for metered data (see ``services.scenarios``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import time as time_of_day

import numpy as np
import pandas as pd

from digitaltwin.domain.errors import ValidationError
from digitaltwin.optimization.flexibility import MAX_ENERGY_KWH, Battery
from digitaltwin.optimization.scheduler import DemandCharge, ScheduleProblem, solve

#: ``forecast(day_start, n)`` -> (expected kW, upper-quantile kW or None) for the ``n`` intervals from ``day_start``.
ForecastFn = Callable[[pd.Timestamp, int], tuple[np.ndarray, np.ndarray | None]]


@dataclass(frozen=True, slots=True)
class LoadShift:
    """Move up to ``energy_kwh_per_day`` from the local window ``[from_start, from_end)`` to ``[to_start, to_end)``."""

    energy_kwh_per_day: float
    from_start: time_of_day
    from_end: time_of_day
    to_start: time_of_day
    to_end: time_of_day

    def __post_init__(self) -> None:
        if not np.isfinite(self.energy_kwh_per_day) or not 0 < self.energy_kwh_per_day <= MAX_ENERGY_KWH:
            raise ValidationError(f"must be a number in (0, {MAX_ENERGY_KWH:g}]", field="shift.energy_kwh_per_day")
        for name in ("from", "to"):
            if getattr(self, f"{name}_start") >= getattr(self, f"{name}_end"):
                raise ValidationError("the window must start before it ends (same local day)", field=f"shift.{name}_end")


def _in_window(local: pd.DatetimeIndex, start: time_of_day, end: time_of_day) -> np.ndarray:
    minutes = local.hour * 60 + local.minute
    return (minutes >= start.hour * 60 + start.minute) & (minutes < end.hour * 60 + end.minute)


def shift_load(load_kw: pd.Series, shift: LoadShift, *, timezone: str, step_s: int) -> pd.Series:
    """``load_kw`` with the shift applied per local day (energy is conserved each day).

    The energy taken from the source window is at most what that window holds; it is taken
    in proportion to each interval's load and added evenly over the target window's intervals.
    """
    out = load_kw.copy()
    local = load_kw.index.tz_convert(timezone)
    dt_h = step_s / 3600.0
    source_all = _in_window(local, shift.from_start, shift.from_end)
    target_all = _in_window(local, shift.to_start, shift.to_end)
    days = local.normalize()
    for day in np.unique(days):
        today = days == day
        source, target = today & source_all, today & target_all
        if not source.any() or not target.any():
            continue
        available = float(np.nansum(load_kw.to_numpy()[source])) * dt_h
        moved = min(shift.energy_kwh_per_day, available)
        if moved <= 0:
            continue
        values = out.to_numpy(copy=True)
        values[source] -= values[source] / np.nansum(values[source]) * moved / dt_h
        values[target] += moved / dt_h / int(target.sum())
        out = pd.Series(values, index=out.index)
    return out


@dataclass(frozen=True)
class BatteryRun:
    """A simulated battery: ``net_kw`` the site's grid power with it (import positive), ``soc`` at each
    interval's end, the number of daily plans, and whether they saw the future."""

    net_kw: pd.Series
    soc: pd.Series
    plans: int
    perfect_foresight: bool


def simulate_battery(
    load_kw: pd.Series,
    battery: Battery,
    *,
    step_s: int,
    timezone: str,
    import_price: pd.Series,
    export_price: pd.Series,
    demand_rate_per_kw: float = 0.0,
    forecast: ForecastFn | None = None,
    mode: str = "robust",
    sunk_peak: bool = True,
    guard: bool = False,
) -> BatteryRun:
    """Run ``battery`` over ``load_kw`` (see the module docstring); ``forecast`` None means perfect foresight.

    ``mode`` ``robust`` plans peaks for the forecast's upper quantile, ``expected`` for its
    expected value. ``sunk_peak`` False prices the demand charge afresh in every daily plan,
    as EMHASS and FlexMeasures price it once per optimisation horizon (for comparison).
    ``guard`` adds the local controller of a real installation on top of the plan (see :func:`follow_plan`):
    without it the battery plays its setpoints blindly, whatever the actual load does.

    Raises:
        ValidationError: series of different indexes, or a plan that cannot be solved (naming the constraint).
        ScheduleTimeoutError, ScheduleSolverError: a daily plan the solver could not make (HTTP 504, 503).
    """
    if not (load_kw.index.equals(import_price.index) and load_kw.index.equals(export_price.index)):
        raise ValidationError("load and prices must share their intervals", field="prices")
    local = load_kw.index.tz_convert(timezone)
    day_of = local.normalize()
    month_of = np.asarray(local.year * 12 + local.month)  # the local calendar month of each interval
    net_parts: list[np.ndarray] = []
    soc_parts: list[np.ndarray] = []
    soc = battery.soc_initial
    month_peak, month = 0.0, None
    plans = 0
    for day in pd.unique(day_of):
        rows = np.flatnonzero(day_of == day)
        n = rows.size
        start = load_kw.index[rows[0]]
        if month_of[rows[0]] != month:
            month, month_peak = month_of[rows[0]], 0.0  # a new billing period: nothing is sunk yet
        actual = load_kw.to_numpy()[rows]
        if forecast is None:
            expected, upper = actual, None
        else:
            expected, upper = forecast(start, n)
        robust = mode == "robust" and upper is not None
        bat = Battery(battery.asset_id, battery.capacity_kwh, battery.max_charge_kw, battery.max_discharge_kw,
                      battery.charge_efficiency, battery.discharge_efficiency, battery.soc_min, battery.soc_max,
                      soc_initial=min(max(soc, battery.soc_min), battery.soc_max), soc_final=battery.soc_final,
                      degradation_cost_per_kwh=battery.degradation_cost_per_kwh)
        demand = ()
        if demand_rate_per_kw > 0:
            floor = month_peak if sunk_peak else 0.0
            demand = (DemandCharge("demand", np.ones(n, dtype=bool), demand_rate_per_kw, floor),)
        plan = solve(ScheduleProblem(
            start=start.to_pydatetime(), step_s=step_s, load_kw=np.nan_to_num(expected),
            import_price=import_price.to_numpy()[rows], export_price=export_price.to_numpy()[rows],
            batteries=(bat,), demand_charges=demand, mode="robust" if robust else "expected",
            load_upper_kw=np.nan_to_num(upper) if robust else None,
        ))
        plans += 1
        setpoint = plan.battery_setpoints_kw(battery.asset_id)
        day_soc = plan.battery_soc[battery.asset_id]
        if guard:
            planned_net = plan.grid_import_kw - plan.grid_export_kw
            cap = max(float(np.max(planned_net)) if n else 0.0, month_peak if sunk_peak else 0.0)
            setpoint, day_soc = follow_plan(actual, setpoint, planned_net, bat, cap_kw=cap, step_s=step_s,
                                            export_earns=export_price.to_numpy()[rows] > 0)
        net = actual + setpoint
        net_parts.append(net)
        soc_parts.append(day_soc)
        month_peak = max(month_peak, float(np.nanmax(net)) if np.isfinite(net).any() else 0.0)
        soc = float(day_soc[-1])
    index = load_kw.index
    return BatteryRun(pd.Series(np.concatenate(net_parts), index=index),
                      pd.Series(np.concatenate(soc_parts), index=index), plans, forecast is None)


def follow_plan(actual_kw: np.ndarray, setpoint_kw: np.ndarray, planned_net_kw: np.ndarray, battery: Battery, *,
                cap_kw: float, step_s: int, export_earns: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The battery power (kW, charge positive) and SOC (fraction, at each interval's end) of a local controller
    that follows a day's plan on the actual load, as site controllers that track a schedule do:

    * it never charges the grid import above ``cap_kw`` (the plan's peak, at least the billing period's
      peak so far) and discharges, within its limits and stored energy, to hold the import at ``cap_kw``;
    * where the plan did not export, it does not discharge into the grid (exports the plan did not price);
    * where exporting earns nothing (``export_earns`` False), it does not discharge into the grid at all, as
      a controller under a zero-export setpoint: a plan's export at a price of zero or below only empties the
      battery (the planner was indifferent between exporting and keeping the energy);
    * otherwise it plays the setpoint, limited by its power and SOC bounds.

    Args:
        actual_kw, setpoint_kw, planned_net_kw: shape ``(n,)``; load, planned battery power and planned grid net.
        export_earns: shape ``(n,)`` booleans, True where the export price is positive; None: as the plan exported.
    """
    dt_h = step_s / 3600.0
    cap_e = battery.capacity_kwh
    stored = battery.soc_initial * cap_e
    lo, hi = battery.soc_min * cap_e, battery.soc_max * cap_e
    power = np.zeros(actual_kw.size)
    soc = np.zeros(actual_kw.size)
    for t in range(actual_kw.size):
        load = float(actual_kw[t]) if np.isfinite(actual_kw[t]) else 0.0
        p = float(setpoint_kw[t])
        if load + p > cap_kw:  # charging less, or discharging more, to hold the peak
            p = cap_kw - load
        exports_allowed = planned_net_kw[t] < -1e-9 and (export_earns is None or bool(export_earns[t]))
        if not exports_allowed and load + p < 0 and p < 0:  # no unplanned or unpaid export
            p = min(0.0, -load)
        max_charge = min(battery.max_charge_kw, max(hi - stored, 0.0) / (battery.charge_efficiency * dt_h))
        max_discharge = min(battery.max_discharge_kw, max(stored - lo, 0.0) * battery.discharge_efficiency / dt_h)
        p = min(max(p, -max_discharge), max_charge)
        stored += p * battery.charge_efficiency * dt_h if p > 0 else p / battery.discharge_efficiency * dt_h
        power[t], soc[t] = p, stored / cap_e
    return power, soc
