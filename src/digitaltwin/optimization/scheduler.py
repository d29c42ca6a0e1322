"""The day-ahead scheduler: the cheapest operation of flexible assets under a tariff, solved with HiGHS.

For a horizon of ``n`` steps of ``dt`` hours the program chooses, per step, grid import and
export (kW), each battery's charge and discharge (kW) and stored energy (kWh), each
deferrable load's power, and the PV power used when PV may be curtailed. It minimises

    sum_t dt * (import_price[t] * import[t] - export_price[t] * export[t])
  + sum_t dt * degradation_cost * (charge[t] + discharge[t])
  + sum_k demand_rate[k] * (peak[k] - sunk_peak[k])

subject to the power balance of every step, battery dynamics with one-way efficiencies,
SOC bounds and a final SOC, the deferrable loads' energy inside their windows, and grid
limits. ``peak[k]`` is the highest net import over the steps of demand charge ``k`` and
never falls below ``sunk_peak[k]``, the peak already metered in the current billing period:
a demand charge is billed once per billing period, so inside a period the schedule pays
only for *raising* the peak. (EMHASS and FlexMeasures price a demand charge once per
optimisation horizon, so a daily re-plan pays it again every day.)

Uncertainty: in ``robust`` mode the peak constraints hold for the upper load quantile and
the lower PV quantile (``peak[k] >= import[t] - export[t] + margin[t]`` with
``margin = (load_upper - load) + (pv - pv_lower)``, at least 0), so a realised load up to
that quantile, met by the grid with the battery following its plan, stays under the
planned peak. Energy prices always use the expected values. The risk statement is per
interval: each interval's realised demand exceeds the plan with probability at most
``1 - q`` under the forecast's calibrated quantiles; it is not a joint guarantee.

Simultaneous flows: the meter's import and export and a battery's charge and discharge are
each one physical flow with a direction. Where import costs at least what export earns and
absorbing energy costs something, no optimum uses both directions at once, and the program is
a linear program. Where exporting earns more than importing costs, or one more kWh is free or
paid for (negative prices, surplus PV that cannot be sold), both at once would be an exploit
(buying and selling the same kWh, or burning energy in a battery's losses): a binary per such
step picks the direction, and the program becomes a mixed-integer one.

Solving stops at :data:`SOLVE_TIME_LIMIT_S` or once the plan is proven within 0.1 % of the
optimum. At the time limit the best plan found is returned with the proven bound on what it may
cost above the optimum (``Schedule.solver``); without any plan by then the answer is a
:class:`ScheduleTimeoutError` (HTTP 504); any other solver failure a :class:`ScheduleSolverError`
(HTTP 503). Prices, rates and sizes are bounded (see :mod:`.flexibility`'s magnitudes), so the
program stays within the solver's numerical range.

Infeasible inputs are diagnosed before solving where a single constraint is to blame
(initial SOC outside its bounds, a deferrable load that cannot fit its window, a final
SOC that cannot be reached); otherwise an elastic copy of the program with penalised
slack on each constraint family names the family that cannot hold. Either way the
result is a :class:`ScheduleInfeasibleError` (HTTP 422) naming the constraint.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from digitaltwin.domain.errors import DomainError, ValidationError
from digitaltwin.optimization.flexibility import (
    MAX_DEMAND_RATE_PER_KW,
    MAX_POWER_KW,
    MAX_PRICE_PER_KWH,
    Battery,
    DeferrableLoad,
    GridConnection,
)
from digitaltwin.optimization.lp import LinearProgram

#: Tolerance (kWh or kW) for comparisons of energy and power in the pre-checks.
_EPS = 1e-9
#: Wall-clock seconds HiGHS may spend on one schedule (the elastic diagnosis of an infeasible one
#: gets as much again). Linear programs and mixed-integer ones from ordinary prices solve in well
#: under a second for 96 steps; the limit bounds adversarial prices (e.g. export above import on
#: every step of a large battery), whose best plan is then returned with its proven gap.
SOLVE_TIME_LIMIT_S = 5.0
#: Relative optimality gap at which a mixed-integer solve stops (0.1 % of the plan's cost).
MIP_REL_GAP = 1e-3


class ScheduleInfeasibleError(ValidationError):
    """No schedule satisfies the constraints; ``field`` names the constraint that cannot hold (HTTP 422)."""


class ScheduleTimeoutError(DomainError):
    """The solver found no schedule at all within its time limit (HTTP 504)."""

    status_code = 504


class ScheduleSolverError(DomainError):
    """The solver stopped without a schedule for another reason than infeasibility (HTTP 503)."""

    status_code = 503


def check_prices(values: np.ndarray, *, field: str) -> np.ndarray:
    """``values`` (currency per kWh, any shape) if all finite and within +-:data:`MAX_PRICE_PER_KWH`.

    Raises:
        ValidationError: naming ``field``.
    """
    arr = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise ValidationError("must be finite numbers", field=field)
    if arr.size and float(np.max(np.abs(arr))) > MAX_PRICE_PER_KWH:
        raise ValidationError(f"prices must lie within +-{MAX_PRICE_PER_KWH:g} per kWh", field=field)
    return arr


def check_demand_rate(value: float, *, field: str) -> float:
    """``value`` (currency per kW) if finite and in ``[0, MAX_DEMAND_RATE_PER_KW]``.

    Raises:
        ValidationError: naming ``field``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError("must be a finite number", field=field)
    if not 0.0 <= value <= MAX_DEMAND_RATE_PER_KW:
        raise ValidationError(f"must lie in [0, {MAX_DEMAND_RATE_PER_KW:g}] per kW", field=field)
    return float(value)


@dataclass(frozen=True, slots=True)
class DemandCharge:
    """One demand charge component over the horizon.

    Attributes:
        name: label shown in the cost breakdown (e.g. ``"on-peak demand"``).
        mask: boolean array ``(n,)``: the steps whose net import sets this peak.
        rate_per_kw: price per kW of the billing period's peak (currency/kW).
        sunk_peak_kw: peak already reached in the current billing period for this
            component (kW); raising the peak above it is what costs.
    """

    name: str
    mask: np.ndarray
    rate_per_kw: float
    sunk_peak_kw: float = 0.0


@dataclass(frozen=True)
class ScheduleProblem:
    """Inputs of one solve, all arrays of shape ``(n,)`` on the horizon's steps.

    Attributes:
        start: first step's start (UTC, aware).
        step_s: step length in seconds.
        load_kw: expected site load without flexible assets (kW, mean power per step).
        pv_kw: expected PV production (kW, >= 0); zeros when there is none.
        import_price, export_price: energy prices per step (currency/kWh; may be negative).
        load_upper_kw, pv_lower_kw: upper load and lower PV quantiles for ``robust`` mode.
        mode: ``"expected"`` or ``"robust"``.
        quantile_label: how the quantiles are named in the answer (e.g. ``"P90 load, P10 PV"``).
        pv_curtailable: whether PV may be curtailed below its production.
    """

    start: datetime
    step_s: int
    load_kw: np.ndarray
    import_price: np.ndarray
    export_price: np.ndarray
    pv_kw: np.ndarray | None = None
    load_upper_kw: np.ndarray | None = None
    pv_lower_kw: np.ndarray | None = None
    pv_curtailable: bool = False
    demand_charges: tuple[DemandCharge, ...] = ()
    batteries: tuple[Battery, ...] = ()
    deferrables: tuple[DeferrableLoad, ...] = ()
    grid: GridConnection = field(default_factory=GridConnection)
    mode: str = "expected"
    quantile_label: str | None = None

    @property
    def n(self) -> int:
        return int(np.asarray(self.load_kw).shape[0])

    @property
    def dt_h(self) -> float:
        return self.step_s / 3600.0

    def timestamps(self) -> list[datetime]:
        return [self.start + timedelta(seconds=self.step_s * i) for i in range(self.n)]


@dataclass(frozen=True)
class Schedule:
    """A solved schedule: per-step arrays ``(n,)`` in kW (``soc`` as fractions at each step's end).

    Attributes:
        cost: the objective split into ``energy``, ``export_credit`` (negative is a credit),
            ``demand`` (the cost of raising each component's peak), ``degradation`` and ``total``,
            in the tariff's currency.
        peaks_kw: each demand charge's planned peak (kW), by name.
        solver: ``status`` (``optimal``: proven within :data:`MIP_REL_GAP`, or ``time_limit`` for
            the best plan found in the time limit), ``gap`` (currency: the most the plan may cost
            above the optimum; 0 for a linear program), ``binaries`` (direction and on/off
            variables; 0 means a linear program) and ``time_limit_s``.
    """

    problem: ScheduleProblem
    grid_import_kw: np.ndarray
    grid_export_kw: np.ndarray
    pv_used_kw: np.ndarray
    battery_charge_kw: dict[str, np.ndarray]
    battery_discharge_kw: dict[str, np.ndarray]
    battery_soc: dict[str, np.ndarray]
    deferrable_kw: dict[str, np.ndarray]
    peaks_kw: dict[str, float]
    cost: dict[str, float]
    solve_time_s: float
    risk: str
    solver: dict[str, object] = field(default_factory=dict)

    def battery_setpoints_kw(self, asset_id: str) -> np.ndarray:
        """Net battery power per step (kW): positive charging, negative discharging."""
        return self.battery_charge_kw[asset_id] - self.battery_discharge_kw[asset_id]


def _arr(values: np.ndarray | None, n: int, *, field: str, default: float | None = None) -> np.ndarray:
    if values is None:
        if default is None:
            raise ValidationError("is required", field=field)
        return np.full(n, default, dtype=float)
    arr = np.asarray(values, dtype=float)
    if arr.shape != (n,):
        raise ValidationError(f"must have one value per step ({n}), got shape {arr.shape}", field=field)
    if not np.all(np.isfinite(arr)):
        raise ValidationError("must be finite numbers", field=field)
    return arr


def _precheck(problem: ScheduleProblem) -> None:
    """Refuse, naming the constraint, what cannot hold whatever the solver does."""
    n, dt = problem.n, problem.dt_h
    horizon_h = n * dt
    for b in problem.batteries:
        if not b.soc_min - _EPS <= b.soc_initial <= b.soc_max + _EPS:
            raise ScheduleInfeasibleError(
                f"battery {b.asset_id!r}: initial SOC {b.soc_initial:g} lies outside its bounds "
                f"[{b.soc_min:g}, {b.soc_max:g}]",
                field="battery.soc_initial",
            )
        if b.soc_final is not None:
            if not b.soc_min - _EPS <= b.soc_final <= b.soc_max + _EPS:
                raise ScheduleInfeasibleError(
                    f"battery {b.asset_id!r}: final SOC {b.soc_final:g} lies outside its bounds "
                    f"[{b.soc_min:g}, {b.soc_max:g}]",
                    field="battery.soc_final",
                )
            reachable = b.soc_initial + b.max_charge_kw * b.charge_efficiency * horizon_h / b.capacity_kwh
            if b.soc_final > reachable + 1e-6:
                raise ScheduleInfeasibleError(
                    f"battery {b.asset_id!r}: final SOC {b.soc_final:g} cannot be reached from {b.soc_initial:g} "
                    f"in {horizon_h:g} h at {b.max_charge_kw:g} kW (at most {reachable:.4g})",
                    field="battery.soc_final",
                )
    for d in problem.deferrables:
        if d.window_end_step > n:
            raise ScheduleInfeasibleError(
                f"deferrable load {d.asset_id!r}: its window ends after the horizon ({d.window_end_step} > {n} steps)",
                field="deferrable.window",
            )
        steps = d.window_end_step - d.window_start_step
        capacity = d.max_power_kw * steps * dt
        needed = _on_steps(d, dt) if d.fixed_power else None
        if d.energy_kwh > capacity + 1e-6 or (needed is not None and needed > steps):
            raise ScheduleInfeasibleError(
                f"deferrable load {d.asset_id!r}: {d.energy_kwh:g} kWh at {d.max_power_kw:g} kW needs "
                f"{d.energy_kwh / d.max_power_kw:.4g} h but its window holds {steps * dt:.4g} h",
                field="deferrable.window",
            )


def _on_steps(d: DeferrableLoad, dt_h: float) -> int:
    """Whole steps a fixed-power load runs to deliver at least its energy."""
    return max(1, math.ceil(d.energy_kwh / (d.max_power_kw * dt_h) - 1e-9))


@dataclass
class _Columns:
    imp: np.ndarray
    exp: np.ndarray
    pv: np.ndarray | None
    charge: dict[str, np.ndarray]
    discharge: dict[str, np.ndarray]
    stored: dict[str, np.ndarray]
    load: dict[str, np.ndarray]
    peaks: list[int]
    slack: dict[str, np.ndarray]


def _build(problem: ScheduleProblem, arrays: dict[str, np.ndarray], *, elastic: bool) -> tuple[LinearProgram, _Columns]:
    """The program of ``problem``; with ``elastic`` the hard families get penalised slack columns."""
    n, dt = problem.n, problem.dt_h
    lp = LinearProgram()
    load, pv = arrays["load"], arrays["pv"]
    # In the elastic copy only the slacks cost: the program is always feasible, and the
    # families whose slack stays positive are the ones that cannot hold together.
    price = (lambda a: 0.0) if elastic else (lambda a: a)  # noqa: E731
    imp_cap, exp_cap = _flow_caps(problem, arrays)
    imp = lp.add(n, cost=price(arrays["import_price"] * dt), upper=imp_cap)
    exp = lp.add(n, cost=price(-arrays["export_price"] * dt), upper=exp_cap)
    pv_cols = lp.add(n, upper=pv) if problem.pv_curtailable else None
    slack: dict[str, np.ndarray] = {}
    if elastic:
        slack["grid.import_limit_kw"] = lp.add(n, cost=1.0)  # load the grid could not serve
        slack["grid.export_limit_kw"] = lp.add(n, cost=1.0)  # surplus the grid could not take
    charge: dict[str, np.ndarray] = {}
    discharge: dict[str, np.ndarray] = {}
    stored: dict[str, np.ndarray] = {}
    for b in problem.batteries:
        deg = price(np.full(n, b.degradation_cost_per_kwh * dt))
        charge[b.asset_id] = lp.add(n, cost=deg, upper=b.max_charge_kw)
        discharge[b.asset_id] = lp.add(n, cost=deg, upper=b.max_discharge_kw)
        stored[b.asset_id] = lp.add(n, lower=b.soc_min * b.capacity_kwh, upper=b.soc_max * b.capacity_kwh)
    loads: dict[str, np.ndarray] = {}
    for d in problem.deferrables:
        upper = np.zeros(n)
        upper[d.window_start_step:d.window_end_step] = d.max_power_kw
        loads[d.asset_id] = lp.add(n, upper=upper)

    # Power balance per step: import - export + pv_used + discharge - charge - deferrable = load.
    for t in range(n):
        terms = [(imp[t], 1.0), (exp[t], -1.0)]
        rhs = load[t]
        if pv_cols is not None:
            terms.append((pv_cols[t], 1.0))
        else:
            rhs -= pv[t]
        for b in problem.batteries:
            terms += [(discharge[b.asset_id][t], 1.0), (charge[b.asset_id][t], -1.0)]
        for d in problem.deferrables:
            terms.append((loads[d.asset_id][t], -1.0))
        if elastic:
            terms += [(slack["grid.import_limit_kw"][t], 1.0), (slack["grid.export_limit_kw"][t], -1.0)]
        lp.row(terms, lower=rhs, upper=rhs, family="balance")

    # Battery dynamics: stored[t] = stored[t-1] + eta_c dt charge[t] - dt / eta_d discharge[t].
    for b in problem.batteries:
        e, c, dis = stored[b.asset_id], charge[b.asset_id], discharge[b.asset_id]
        e0 = b.soc_initial * b.capacity_kwh
        for t in range(n):
            terms = [(e[t], 1.0), (c[t], -b.charge_efficiency * dt), (dis[t], dt / b.discharge_efficiency)]
            if t == 0:
                lp.row(terms, lower=e0, upper=e0, family="battery.dynamics")
            else:
                lp.row(terms + [(e[t - 1], -1.0)], lower=0.0, upper=0.0, family="battery.dynamics")
        if b.soc_final is not None:
            terms = [(e[n - 1], 1.0)]
            if elastic:
                s = lp.add(1, cost=1.0)
                slack.setdefault("battery.soc_final", np.array([], dtype=int))
                slack["battery.soc_final"] = np.append(slack["battery.soc_final"], s)
                terms.append((s[0], 1.0))
            lp.row(terms, lower=b.soc_final * b.capacity_kwh, family="battery.soc_final")

    # Deferrable loads: energy inside the window; fixed power as on/off, contiguous as one block.
    for d in problem.deferrables:
        p = loads[d.asset_id]
        window = range(d.window_start_step, d.window_end_step)
        in_window = (np.arange(n) >= d.window_start_step) & (np.arange(n) < d.window_end_step)
        if d.fixed_power:
            steps = _on_steps(d, dt)
            on = lp.add(n, upper=np.where(in_window, 1.0, 0.0), integer=True)
            for t in range(n):
                lp.row([(p[t], 1.0), (on[t], -d.max_power_kw)], lower=0.0, upper=0.0, family="deferrable.power")
            lp.row([(on[t], 1.0) for t in window], lower=steps, upper=steps, family="deferrable.window")
            if d.contiguous:
                # start[t] = 1 where the block begins; on[t] = number of starts in (t - steps, t].
                last_start = d.window_end_step - steps
                ok = in_window & (np.arange(n) <= last_start)
                start = lp.add(n, upper=np.where(ok, 1.0, 0.0), integer=True)
                lp.row([(start[t], 1.0) for t in range(n)], lower=1.0, upper=1.0, family="deferrable.window")
                for t in range(n):
                    terms = [(on[t], 1.0)] + [(start[k], -1.0) for k in range(max(0, t - steps + 1), t + 1)]
                    lp.row(terms, lower=0.0, upper=0.0, family="deferrable.contiguous")
        else:
            terms = [(p[t], dt) for t in window]
            if elastic:
                s = lp.add(1, cost=1.0)
                slack["deferrable.window"] = np.append(slack.get("deferrable.window", np.array([], dtype=int)), s)
                terms.append((s[0], 1.0))
            lp.row(terms, lower=d.energy_kwh, upper=d.energy_kwh if not elastic else np.inf, family="deferrable.window")

    # Demand charges: peak[k] >= net import (+ margin in robust mode) over the component's steps.
    margin = arrays["margin"]
    peaks: list[int] = []
    for dc in problem.demand_charges:
        col = int(lp.add(1, cost=price(dc.rate_per_kw), lower=max(dc.sunk_peak_kw, 0.0))[0])
        peaks.append(col)
        for t in np.flatnonzero(np.asarray(dc.mask, dtype=bool)):
            lp.row([(col, 1.0), (imp[t], -1.0), (exp[t], 1.0)], lower=margin[t], family="demand")

    # Import and export at once is one net flow through one meter. Where exporting earns more than
    # importing costs (a negative import price, a feed-in price above the retail one), the program
    # would buy and sell the same kWh: a binary per such step picks the meter's direction, with the
    # step's flow caps as big-M coefficients (the tightest valid ones, see _flow_caps).
    arbitrage = (arrays["export_price"] > arrays["import_price"]) & (imp_cap > 0) & (exp_cap > 0)
    for t in np.flatnonzero(arbitrage):
        z = int(lp.add(1, upper=1.0, integer=True)[0])
        lp.row([(imp[t], 1.0), (z, -imp_cap[t])], upper=0.0, family="grid.direction")
        lp.row([(exp[t], 1.0), (z, exp_cap[t])], upper=exp_cap[t], family="grid.direction")
    # A battery charging and discharging in the same step dissipates energy through its losses,
    # which no real inverter does. It pays only where absorbing energy earns or costs nothing (see
    # _dissipation_pays); a binary per such step and battery picks the direction there.
    dissipate = _dissipation_pays(problem, arrays)
    for b in problem.batteries:
        if b.max_charge_kw <= 0 or b.max_discharge_kw <= 0:
            continue
        c, dis = charge[b.asset_id], discharge[b.asset_id]
        for t in np.flatnonzero(dissipate):
            u = int(lp.add(1, upper=1.0, integer=True)[0])
            lp.row([(c[t], 1.0), (u, -b.max_charge_kw)], upper=0.0, family="battery.direction")
            lp.row([(dis[t], 1.0), (u, b.max_discharge_kw)], upper=b.max_discharge_kw, family="battery.direction")
    return lp, _Columns(imp, exp, pv_cols, charge, discharge, stored, loads, peaks, slack)


def _flow_caps(problem: ScheduleProblem, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The most any step can import and export (kW, shape ``(n,)`` each), within the grid limits.

    With the meter's two directions exclusive, import is at most the load, less PV that cannot
    be curtailed, plus every battery charging and every deferrable load on at full power; export
    at most PV plus every battery discharging, less the load. Any schedule that imports and
    exports in one step can be netted to one inside these caps at no higher cost where import
    costs at least what export earns (the demand rows see only ``import - export``), so they are
    valid bounds there, and the big-M coefficients of the direction binaries elsewhere.
    """
    n = problem.n
    load, pv = arrays["load"], arrays["pv"]
    deferrable = np.zeros(n)
    for d in problem.deferrables:
        deferrable[d.window_start_step:d.window_end_step] += d.max_power_kw
    pv_floor = np.zeros(n) if problem.pv_curtailable else pv
    imp = np.maximum(load - pv_floor + sum(b.max_charge_kw for b in problem.batteries) + deferrable, 0.0)
    exp = np.maximum(pv - load + sum(b.max_discharge_kw for b in problem.batteries), 0.0)
    if problem.grid.import_limit_kw is not None:
        imp = np.minimum(imp, problem.grid.import_limit_kw)
    if problem.grid.export_limit_kw is not None:
        exp = np.minimum(exp, problem.grid.export_limit_kw)
    return imp, exp


def _dissipation_pays(problem: ScheduleProblem, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Steps (boolean, shape ``(n,)``) where burning energy in a battery's losses could cost nothing or earn.

    Charging and discharging at once absorbs energy at no change of the stored energy. That is
    worth it only where one more kWh at the site is free or paid for: an import price at or
    below zero, or a surplus (PV above the load) that is exported at a price at or below zero or
    may exceed the export limit. Elsewhere the marginal kWh is imported at a positive price or
    exported for a positive credit, and dissipating it strictly costs.
    """
    surplus = arrays["pv"] - arrays["load"]
    limit = problem.grid.export_limit_kw
    over_limit = surplus > limit if limit is not None else np.zeros(problem.n, dtype=bool)
    return (arrays["import_price"] <= 0) | ((surplus > 0) & ((arrays["export_price"] <= 0) | over_limit))


def _arrays(problem: ScheduleProblem) -> dict[str, np.ndarray]:
    n = problem.n
    if n < 1:
        raise ValidationError("the horizon needs at least one step", field="load_kw")
    if problem.step_s <= 0:
        raise ValidationError("must be a positive number of seconds", field="step_s")
    if problem.mode not in ("expected", "robust"):
        raise ValidationError("must be 'expected' or 'robust'", field="mode")
    load = _arr(problem.load_kw, n, field="load_kw")
    pv = _arr(problem.pv_kw, n, field="pv_kw", default=0.0)
    if np.any(pv < 0):
        raise ValidationError("PV production must not be negative", field="pv_kw")
    margin = np.zeros(n)
    upper, lower = load, pv
    if problem.mode == "robust":
        upper = _arr(problem.load_upper_kw, n, field="load_upper_kw") if problem.load_upper_kw is not None else load
        lower = _arr(problem.pv_lower_kw, n, field="pv_lower_kw") if problem.pv_lower_kw is not None else pv
        margin = np.maximum(upper - load, 0.0) + np.maximum(pv - lower, 0.0)
    for name, arr in (("load_kw", load), ("pv_kw", pv), ("load_upper_kw", upper), ("pv_lower_kw", lower)):
        if float(np.max(np.abs(arr))) > MAX_POWER_KW:
            raise ValidationError(f"must lie within +-{MAX_POWER_KW:g} kW", field=name)
    for dc in problem.demand_charges:
        if np.asarray(dc.mask).shape != (n,):
            raise ValidationError(f"demand charge {dc.name!r}: mask must have one value per step", field="demand_charges")
        check_demand_rate(dc.rate_per_kw, field="demand_charges")
        if not math.isfinite(dc.sunk_peak_kw) or abs(dc.sunk_peak_kw) > MAX_POWER_KW:
            raise ValidationError(f"demand charge {dc.name!r}: sunk peak must be finite", field="demand_charges")
    return {
        "load": load,
        "pv": pv,
        "import_price": check_prices(_arr(problem.import_price, n, field="import_price"), field="import_price"),
        "export_price": check_prices(_arr(problem.export_price, n, field="export_price"), field="export_price"),
        "margin": margin,
    }


def solve(problem: ScheduleProblem, *, time_limit_s: float = SOLVE_TIME_LIMIT_S) -> Schedule:
    """The cheapest schedule of ``problem``'s flexible assets.

    Args:
        time_limit_s: wall-clock seconds for the solver (the elastic diagnosis of an infeasible
            problem gets as much again).

    Returns:
        A :class:`Schedule` with per-step powers, SOC, planned peaks, the cost breakdown and
        ``solver`` (optimal, or the best plan of the time limit with its proven gap).

    Raises:
        ValidationError: malformed or out-of-range inputs, naming the field.
        ScheduleInfeasibleError: no schedule satisfies the constraints; ``field`` names the constraint.
        ScheduleTimeoutError: no schedule found within ``time_limit_s`` (HTTP 504).
        ScheduleSolverError: the solver failed otherwise, e.g. numerical trouble (HTTP 503).
    """
    arrays = _arrays(problem)
    _precheck(problem)
    began = time.perf_counter()
    lp, cols = _build(problem, arrays, elastic=False)
    result = lp.solve(time_limit_s=time_limit_s, mip_rel_gap=MIP_REL_GAP)
    if result.infeasible:
        raise _diagnose(problem, arrays, time_limit_s=time_limit_s)
    if result.x is None:
        if result.status == 1:
            raise ScheduleTimeoutError(
                f"the scheduler found no schedule within its {time_limit_s:g} s time limit; retry, or shorten the horizon",
                field=None)
        raise ScheduleSolverError(f"the scheduler's solver failed: {result.message}", field=None)
    elapsed = time.perf_counter() - began
    gap = 0.0  # a linear program's optimum is exact; a mixed-integer one's is proven within objective - bound
    if result.integers and result.dual_bound is not None and result.objective is not None:
        gap = max(result.objective - result.dual_bound, 0.0)
    solver = {"status": "optimal" if result.optimal else "time_limit", "gap": gap,
              "binaries": result.integers, "time_limit_s": time_limit_s}
    return _schedule(problem, arrays, cols, result.x, elapsed, solver)


def _diagnose(problem: ScheduleProblem, arrays: dict[str, np.ndarray], *, time_limit_s: float) -> ScheduleInfeasibleError:
    """Solve the elastic copy and name the constraint family whose slack stays positive."""
    lp, cols = _build(problem, arrays, elastic=True)
    result = lp.solve(time_limit_s=time_limit_s, mip_rel_gap=MIP_REL_GAP)
    if result.x is not None:
        worst = max(cols.slack.items(), key=lambda kv: float(np.sum(result.x[kv[1]])) if kv[1].size else 0.0)
        amount = float(np.sum(result.x[worst[1]])) if worst[1].size else 0.0
        if amount > 1e-7:
            name = worst[0]
            where = ""
            if name.startswith("grid."):
                steps = np.flatnonzero(result.x[worst[1]] > 1e-7)
                where = f" from {problem.timestamps()[int(steps[0])].isoformat()}"
            return ScheduleInfeasibleError(
                f"the schedule cannot satisfy {name}{where} (short by {amount:.4g} in the constraint's unit)", field=name
            )
    return ScheduleInfeasibleError("the constraints contradict each other", field="constraints")


def _schedule(problem: ScheduleProblem, arrays: dict[str, np.ndarray], cols: _Columns, x: np.ndarray, elapsed: float,
              solver: dict[str, object]) -> Schedule:
    dt = problem.dt_h
    clean = lambda idx: np.maximum(np.round(x[idx], 9), 0.0)  # noqa: E731  (solver noise below 1e-9)
    imp, exp = clean(cols.imp), clean(cols.exp)
    pv_used = clean(cols.pv) if cols.pv is not None else arrays["pv"]
    socs = {b.asset_id: x[cols.stored[b.asset_id]] / b.capacity_kwh for b in problem.batteries}
    charge = {k: clean(v) for k, v in cols.charge.items()}
    discharge = {k: clean(v) for k, v in cols.discharge.items()}
    energy = float(np.sum(arrays["import_price"] * imp) * dt)
    export_credit = -float(np.sum(arrays["export_price"] * exp) * dt)
    degradation = sum(
        b.degradation_cost_per_kwh * float(np.sum(charge[b.asset_id] + discharge[b.asset_id])) * dt
        for b in problem.batteries
    )
    peaks = {dc.name: float(x[col]) for dc, col in zip(problem.demand_charges, cols.peaks, strict=True)}
    demand = sum(dc.rate_per_kw * (peaks[dc.name] - max(dc.sunk_peak_kw, 0.0)) for dc in problem.demand_charges)
    cost = {
        "energy": energy,
        "export_credit": export_credit,
        "demand": float(demand),
        "degradation": float(degradation),
    }
    cost["total"] = sum(cost.values())
    if problem.mode == "robust":
        label = problem.quantile_label or "the upper load and lower PV quantiles"
        risk = (f"robust: demand peaks planned for {label}; each interval's realised demand exceeds its planned "
                f"peak only when load or PV fall outside those quantiles")
    else:
        risk = "expected: demand peaks planned for the expected load and PV; a realised load above it raises the peak"
    return Schedule(
        problem=problem,
        grid_import_kw=imp,
        grid_export_kw=exp,
        pv_used_kw=pv_used,
        battery_charge_kw=charge,
        battery_discharge_kw=discharge,
        battery_soc=socs,
        deferrable_kw={k: clean(v) for k, v in cols.load.items()},
        peaks_kw=peaks,
        cost=cost,
        solve_time_s=elapsed,
        risk=risk,
        solver=solver,
    )
