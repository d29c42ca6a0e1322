"""The scheduler against EMHASS and an independent LP on the day EMHASS can express, and its solve time.

Problem (identical inputs for all three): 48 steps of 30 minutes (UTC day), a 10 kWh / 5 kW
battery with 95 % charge and discharge efficiency, SOC 0.1-0.9 starting and ending at 0.5,
import 0.30 from 16:00 to 21:00 and 0.12 otherwise, export 0.05, PV of 3 kW peak. The load
is a real building day (Cambridge b2, 2019-06-03, hourly, held over both half hours) scaled
to a 0.8 kW mean; PV is a real 15-minute AC output day (NREL SERF East, 2016-07-05, from
../shared/data/pv_nrel_serf_east, averaged to 30 minutes) scaled to a 3 kW peak.

* product: ``digitaltwin.optimization.scheduler.solve``;
* EMHASS: ``Optimization.perform_optimization`` in its own virtual environment
  (``make bench-schedule`` creates ``.venv-emhass``), called through bench/peers/emhass_day.py;
* independent LP: the same day written directly as a dense ``scipy.optimize.linprog`` here.

Target: the product's day cost within 0.1 % of EMHASS's (the independent LP agreeing).
Then the solve time of a 96-step 15-minute day with one battery and two deferrable
loads (one contiguous on/off block, one split), target under 1 s.

Run: ``make bench-schedule`` or ``python bench/schedule_emhass.py [--emhass PYTHON]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linprog

from digitaltwin.optimization.flexibility import Battery, DeferrableLoad
from digitaltwin.optimization.scheduler import DemandCharge, ScheduleProblem, solve

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
START = datetime(2019, 6, 3, tzinfo=UTC)
STEPS, STEP_MIN = 48, 30


def inputs() -> dict[str, np.ndarray]:
    """Load (kW), PV (kW) and prices per 30-minute step of the benchmark day."""
    b2 = pd.read_csv(ROOT / "datasets/cambridge_estates_2019/UCam_Building_b2/electricity/2019.csv",
                     parse_dates=["datetime"], index_col="datetime").iloc[:, 0]
    day = b2.loc["2019-06-03"].to_numpy(dtype=float)  # 24 hourly kWh = mean kW
    load = np.repeat(day, 2) * (0.8 / day.mean())
    pv_file = SHARED / "pv_nrel_serf_east" / "serf_east_15min_ac_power.csv"
    if not pv_file.exists():
        sys.exit(f"needs {pv_file} (the shared NREL PV data beside the repository)")
    pv15 = pd.read_csv(pv_file, index_col="measured_on")
    pv15.index = pd.to_datetime(pv15.index, utc=False).map(lambda ts: ts.replace(tzinfo=None))
    pv_day = pv15.loc["2016-07-05", "ac_power"].clip(lower=0.0).to_numpy(dtype=float)
    pv = pv_day.reshape(-1, 2).mean(axis=1)
    pv = pv * (3.0 / pv.max())
    hours = np.arange(STEPS) * STEP_MIN / 60.0
    price = np.where((hours >= 16) & (hours < 21), 0.30, 0.12)
    return {"load": load, "pv": pv, "import": price, "export": np.full(STEPS, 0.05)}


BATTERY = {"capacity_kwh": 10.0, "power_kw": 5.0, "charge_efficiency": 0.95, "discharge_efficiency": 0.95,
           "soc_min": 0.1, "soc_max": 0.9, "soc_initial": 0.5, "soc_final": 0.5}


def product(data: dict[str, np.ndarray]) -> tuple[float, float]:
    b = BATTERY
    battery = Battery("battery", b["capacity_kwh"], b["power_kw"], b["power_kw"], b["charge_efficiency"],
                      b["discharge_efficiency"], b["soc_min"], b["soc_max"], b["soc_initial"], b["soc_final"])
    problem = ScheduleProblem(start=START, step_s=STEP_MIN * 60, load_kw=data["load"], pv_kw=data["pv"],
                              import_price=data["import"], export_price=data["export"], batteries=(battery,))
    began = time.perf_counter()
    sched = solve(problem)
    return sched.cost["total"], time.perf_counter() - began


def independent_lp(data: dict[str, np.ndarray]) -> float:
    """The same day as a dense LP: x = [import, export, charge, discharge, energy] per step."""
    n, dt, b = STEPS, STEP_MIN / 60.0, BATTERY
    cap = b["capacity_kwh"]
    cost = np.concatenate([data["import"] * dt, -data["export"] * dt, np.zeros(3 * n)])
    eq_rows, eq_rhs = [], []
    for t in range(n):  # import - export - charge + discharge = load - pv
        row = np.zeros(5 * n)
        row[t], row[n + t], row[2 * n + t], row[3 * n + t] = 1, -1, -1, 1
        eq_rows.append(row)
        eq_rhs.append(data["load"][t] - data["pv"][t])
    for t in range(n):  # energy[t] - energy[t-1] - 0.95 dt charge + dt / 0.95 discharge = 0
        row = np.zeros(5 * n)
        row[4 * n + t] = 1
        row[2 * n + t] = -b["charge_efficiency"] * dt
        row[3 * n + t] = dt / b["discharge_efficiency"]
        if t:
            row[4 * n + t - 1] = -1
        eq_rows.append(row)
        eq_rhs.append(b["soc_initial"] * cap if t == 0 else 0.0)
    row = np.zeros(5 * n)
    row[5 * n - 1] = 1
    eq_rows.append(row)
    eq_rhs.append(b["soc_final"] * cap)
    bounds = ([(0, None)] * 2 * n + [(0, b["power_kw"])] * 2 * n
              + [(b["soc_min"] * cap, b["soc_max"] * cap)] * n)
    res = linprog(cost, A_eq=np.array(eq_rows), b_eq=np.array(eq_rhs), bounds=bounds, method="highs")
    assert res.status == 0, res.message
    return float(res.fun)


def emhass(data: dict[str, np.ndarray], python: str) -> dict[str, object]:
    payload = {
        "start": START.isoformat(), "step_minutes": STEP_MIN, "timezone": "UTC",
        "load_kw": data["load"].tolist(), "pv_kw": data["pv"].tolist(),
        "import_price": data["import"].tolist(), "export_price": data["export"].tolist(), "battery": BATTERY,
    }
    out = subprocess.run([python, str(ROOT / "bench/peers/emhass_day.py")], input=json.dumps(payload),
                         capture_output=True, text=True, check=True)
    # HiGHS prints its banner on stdout; the answer is the last line.
    return json.loads(out.stdout.strip().splitlines()[-1])


def solve_time_96() -> float:
    """Median solve time (s) of a 96-step day with a battery and two deferrable loads, over 5 runs."""
    n = 96
    hours = np.arange(n) / 4.0
    load = 40 + 15 * np.sin((hours - 8) / 24 * 2 * np.pi)
    price = np.where((hours >= 16) & (hours < 21), 0.30, np.where(hours < 7, 0.10, 0.18))
    battery = Battery("battery", 100.0, 50.0, 50.0, 0.95, 0.95, 0.1, 0.9, 0.5, 0.5, degradation_cost_per_kwh=0.01)
    loads = (DeferrableLoad("oven", 30.0, 10.0, 24, 80, contiguous=True),
             DeferrableLoad("chiller", 60.0, 20.0, 0, 96))
    demand = (DemandCharge("demand", np.ones(n, dtype=bool), 12.0, 45.0),)
    problem = ScheduleProblem(start=START, step_s=900, load_kw=load, import_price=price,
                              export_price=np.full(n, 0.04), batteries=(battery,), deferrables=loads,
                              demand_charges=demand)
    times = []
    for _ in range(5):
        began = time.perf_counter()
        solve(problem)
        times.append(time.perf_counter() - began)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emhass", default=str(ROOT / ".venv-emhass/bin/python"), help="EMHASS's Python")
    args = parser.parse_args()
    data = inputs()
    ours, ours_s = product(data)
    lp = independent_lp(data)
    peer = emhass(data, args.emhass)
    diff = abs(ours - peer["cost"]) / abs(peer["cost"]) if peer["cost"] else abs(ours)
    print(f"day cost    product {ours:.6f}   EMHASS {peer['cost']:.6f} ({peer.get('emhass_version')})   "
          f"independent LP {lp:.6f}")
    print(f"difference  product vs EMHASS {100 * diff:.4f} % (target <= 0.1 %), "
          f"product vs LP {abs(ours - lp):.2e}")
    print(f"solve time  product {1000 * ours_s:.1f} ms   EMHASS {1000 * float(peer['solve_time_s']):.1f} ms   "
          f"ratio {ours_s / float(peer['solve_time_s']):.2f}")
    t96 = solve_time_96()
    print(f"96-step day, 1 battery + 2 deferrable loads: {1000 * t96:.1f} ms median of 5 (target < 1000 ms)")


if __name__ == "__main__":
    main()
