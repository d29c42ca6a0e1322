"""A battery on a real building for a month: billing-period demand and upper-quantile peaks against EMHASS-style planning.

Cambridge building b2 (hourly, 2019, Europe/London), November 2019, under a hypothetical
tariff: energy 0.25 per kWh on weekdays 16:00-19:00 local and 0.12 otherwise, and a monthly
demand charge of 12 per kW on the month's highest hourly import (currency units; no export
payment). A battery of two hours of the building's mean load in energy and one hour in
power (95 % one-way efficiencies, SOC 0.1-0.9, 0.5 at every local midnight).

Every local midnight the day is planned from the product's day-ahead LightGBM forecast
with conformal quantiles, trained only on data before that midnight (refitted weekly,
Bedford temperature standing in for a weather forecast, as in bench/forecast_cambridge.py).
The battery then follows its plan on the *actual* load, and the realised month is billed:

* (a) no battery;
* (b) EMHASS-style: the demand charge priced once per daily horizon (as if each day were a
  billing period) and the median forecast only;
* (c) the product: the demand charge over the billing period (the month's realised peak
  so far is a sunk floor) and the peak planned for the P90 load (``robust`` mode).

Target: (c) strictly cheaper than (b); the table splits the difference by line item, and an
ablation (c') with the billing-period demand but the median forecast shows what each change brings.
Run: ``python bench/schedule_cambridge.py [--building b2] [--month 2019-11]``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forecast_common import load_bedford_temperature, load_cambridge  # noqa: E402

from digitaltwin.forecasting import backtest, daily_origins  # noqa: E402
from digitaltwin.optimization.flexibility import Battery  # noqa: E402
from digitaltwin.optimization.whatif import simulate_battery  # noqa: E402

TZ = "Europe/London"
DEMAND_RATE = 12.0


def prices(index: pd.DatetimeIndex) -> np.ndarray:
    """Energy price per hour starting at ``index`` (UTC): 0.25 on local weekdays 16-19 h, else 0.12."""
    local = index.tz_convert(TZ)
    peak = (local.day_of_week < 5) & (local.hour >= 16) & (local.hour < 19)
    return np.where(peak, 0.25, 0.12)


def bill(imports_kw: np.ndarray, price: np.ndarray) -> dict[str, float]:
    """Line items of the month: energy (hourly kWh = kW), demand on the highest hour, total."""
    energy = float(np.sum(imports_kw * price))
    demand = DEMAND_RATE * float(np.max(imports_kw))
    return {"energy": energy, "demand": demand, "total": energy + demand, "peak_kw": float(np.max(imports_kw))}


def run(policy: str, load: pd.Series, forecasts: pd.DataFrame, battery: Battery) -> np.ndarray:
    """Realised grid import (kW per hour) of the month under ``policy`` (the product's what-if simulation)."""
    by_start = {origin: part.sort_values("ts") for origin, part in forecasts.groupby("origin")}

    def forecast(start: pd.Timestamp, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        day = by_start[start]
        upper = day["q0.9"].to_numpy()[:n] if policy == "product" else None
        return day["predicted"].to_numpy()[:n], upper

    result = simulate_battery(
        load, battery, step_s=3600, timezone=TZ, import_price=pd.Series(prices(load.index), index=load.index),
        export_price=pd.Series(0.0, index=load.index), demand_rate_per_kw=DEMAND_RATE, forecast=forecast,
        mode="robust" if policy == "product" else "expected", sunk_peak=policy != "emhass_style",
    )
    return np.maximum(result.net_kw.to_numpy(), 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--building", default="b2")
    parser.add_argument("--month", default="2019-11", help="YYYY-MM, local calendar")
    args = parser.parse_args()
    y = load_cambridge(args.building)
    first = date.fromisoformat(args.month + "-01")
    last = (pd.Timestamp(first) + pd.offsets.MonthEnd(0)).date()
    origins = daily_origins(y, timezone=TZ, start=first, end=last)
    result = backtest(y, algorithms=["lightgbm"], origins=origins, horizon_steps=24, timezone=TZ, country="GB",
                      retrain_every=7, exog=load_bedford_temperature(), levels=(0.1, 0.5, 0.9))
    fc = result.forecasts
    load = y.loc[fc["ts"].min(): fc["ts"].max()]
    mean_kw = float(y.loc[: origins[0]].iloc[:-1].tail(24 * 28).mean())
    battery = Battery("battery", capacity_kwh=round(2 * mean_kw), max_charge_kw=round(mean_kw),
                      max_discharge_kw=round(mean_kw), charge_efficiency=0.95, discharge_efficiency=0.95,
                      soc_min=0.1, soc_max=0.9, soc_initial=0.5, soc_final=0.5)
    price = prices(load.index)
    bills = {
        "(a) no battery": bill(load.to_numpy(), price),
        "(b) EMHASS-style: demand per horizon, median": bill(run("emhass_style", load, fc, battery), price),
        "(c) product: billing-period demand, P90 peak": bill(run("product", load, fc, battery), price),
        "(c') billing-period demand, median (ablation)": bill(run("period_median", load, fc, battery), price),
    }
    table = pd.DataFrame(bills).T
    print(f"building {args.building}, {args.month} ({len(load) // 24} days), battery {battery.capacity_kwh:g} kWh / "
          f"{battery.max_charge_kw:g} kW; demand charge {DEMAND_RATE:g} per kW-month")
    print(table.to_string(float_format=lambda v: f"{v:,.2f}"))
    b, c = bills["(b) EMHASS-style: demand per horizon, median"], bills["(c) product: billing-period demand, P90 peak"]
    print(f"(c) - (b): energy {c['energy'] - b['energy']:+,.2f}, demand {c['demand'] - b['demand']:+,.2f}, "
          f"total {c['total'] - b['total']:+,.2f} ({'strictly cheaper' if c['total'] < b['total'] else 'NOT cheaper'}; "
          f"saving against no battery: (b) {bills['(a) no battery']['total'] - b['total']:,.2f}, "
          f"(c) {bills['(a) no battery']['total'] - c['total']:,.2f})")


if __name__ == "__main__":
    main()
