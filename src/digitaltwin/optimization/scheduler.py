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

from digitaltwin.domain.errors import ValidationError
from digitaltwin.optimization.flexibility import Battery, DeferrableLoad, GridConnection
from digitaltwin.optimization.lp import LinearProgram

#: Tolerance (kWh or kW) for comparisons of energy and power in the pre-checks.
_EPS = 1e-9


class ScheduleInfeasibleError(ValidationError):
    """No schedule satisfies the constraints; ``field`` names the constraint that cannot hold (HTTP 422)."""


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
    imp_up = problem.grid.import_limit_kw if problem.grid.import_limit_kw is not None else np.inf
    exp_up = problem.grid.export_limit_kw if problem.grid.export_limit_kw is not None else np.inf
    imp = lp.add(n, cost=price(arrays["import_price"] * dt), upper=imp_up)
    exp = lp.add(n, cost=price(-arrays["export_price"] * dt), upper=exp_up)
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

    # Import and export at once only pays where importing is cheaper than exporting earns;
    # a binary per such step makes the meter's two directions exclusive there, as they are physically.
    both = np.flatnonzero(arrays["import_price"] < arrays["export_price"])
    if both.size and not elastic:
        big = _big_m(problem, arrays)
        for t in both:
            z = int(lp.add(1, upper=1.0, integer=True)[0])
            lp.row([(imp[t], 1.0), (z, -big)], upper=0.0, family="grid.direction")
            lp.row([(exp[t], 1.0), (z, big)], upper=big, family="grid.direction")
    return lp, _Columns(imp, exp, pv_cols, charge, discharge, stored, loads, peaks, slack)


def _big_m(problem: ScheduleProblem, arrays: dict[str, np.ndarray]) -> float:
    """An upper bound on any step's import or export (kW), for the direction binaries."""
    total = float(np.max(np.abs(arrays["load"]))) + float(np.max(arrays["pv"]))
    total += sum(b.max_charge_kw + b.max_discharge_kw for b in problem.batteries)
    total += sum(d.max_power_kw for d in problem.deferrables)
    return max(total, 1.0) * 2.0


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
    if problem.mode == "robust":
        upper = _arr(problem.load_upper_kw, n, field="load_upper_kw") if problem.load_upper_kw is not None else load
        lower = _arr(problem.pv_lower_kw, n, field="pv_lower_kw") if problem.pv_lower_kw is not None else pv
        margin = np.maximum(upper - load, 0.0) + np.maximum(pv - lower, 0.0)
    for dc in problem.demand_charges:
        if np.asarray(dc.mask).shape != (n,):
            raise ValidationError(f"demand charge {dc.name!r}: mask must have one value per step", field="demand_charges")
        if not math.isfinite(dc.rate_per_kw) or dc.rate_per_kw < 0:
            raise ValidationError(f"demand charge {dc.name!r}: rate must be finite and >= 0", field="demand_charges")
    return {
        "load": load,
        "pv": pv,
        "import_price": _arr(problem.import_price, n, field="import_price"),
        "export_price": _arr(problem.export_price, n, field="export_price"),
        "margin": margin,
    }


def solve(problem: ScheduleProblem, *, time_limit_s: float = 10.0) -> Schedule:
    """The cheapest schedule of ``problem``'s flexible assets.

    Returns:
        A :class:`Schedule` with per-step powers, SOC, planned peaks and the cost breakdown.

    Raises:
        ValidationError: malformed inputs, naming the field.
        ScheduleInfeasibleError: no schedule satisfies the constraints; ``field`` names the constraint.
        RuntimeError: the solver stopped without an optimum for another reason (time limit).
    """
    arrays = _arrays(problem)
    _precheck(problem)
    began = time.perf_counter()
    lp, cols = _build(problem, arrays, elastic=False)
    result = lp.solve(time_limit_s=time_limit_s)
    if result.infeasible:
        raise _diagnose(problem, arrays)
    if result.x is None:
        raise RuntimeError(f"the scheduler found no optimum: {result.message}")
    elapsed = time.perf_counter() - began
    return _schedule(problem, arrays, cols, result.x, elapsed)


def _diagnose(problem: ScheduleProblem, arrays: dict[str, np.ndarray]) -> ScheduleInfeasibleError:
    """Solve the elastic copy and name the constraint family whose slack stays positive."""
    lp, cols = _build(problem, arrays, elastic=True)
    result = lp.solve()
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


def _schedule(problem: ScheduleProblem, arrays: dict[str, np.ndarray], cols: _Columns, x: np.ndarray, elapsed: float) -> Schedule:
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
    )
