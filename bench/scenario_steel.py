"""What-if scenarios on the steel plant: a battery over a period of 2018, forecast-based against perfect foresight.

The demo site (DAEWOO Steel, Gwangyang, 15-minute meter, KEPCO Industrial (B) TOU tariff with a
12-month demand ratchet) in a temporary SQLite database. For each forecaster given, the battery
(600 kWh, 300 kW, SOC 0.1-0.9, 95 % one-way efficiencies) is planned every local midnight from the
forecasts available then (``services/scenario_inputs.backtest_forecast``), followed by the local
controller on the actual load, and the period billed against the metered baseline; perfect
foresight is the reference (the most a daily-planned battery could save). Prints the savings
by line item, the peak and the wall time of each run.

Run: ``python bench/scenario_steel.py [--start 2018-02-01] [--end 2019-01-01] [--algorithms seasonal_naive_daily lightgbm]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from digitaltwin.config import Settings  # noqa: E402
from digitaltwin.optimization.flexibility import Battery  # noqa: E402
from digitaltwin.services import demo  # noqa: E402
from digitaltwin.services.billing import BillingService  # noqa: E402
from digitaltwin.services.scenarios import BatteryChange, ScenarioRequest, ScenarioService, summary  # noqa: E402
from digitaltwin.storage.db import make_engine, migrate  # noqa: E402
from digitaltwin.storage.repository import Repository  # noqa: E402

BATTERY = Battery("bess", 600.0, 300.0, 300.0, soc_min=0.1, soc_max=0.9, soc_initial=0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", default="2018-02-01")
    parser.add_argument("--end", default="2019-01-01")
    parser.add_argument("--algorithms", nargs="+", default=["seasonal_naive_daily"])
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-scenario-"))
    settings = Settings(_env_file=None, ENVIRONMENT="test", DATA_DIR=folder / "data", MODELS_DIR=folder / "models",
                        LOG_DIR=folder / "logs", REDIS_URL=None, MQTT_BROKER=None, SECRET_KEY="bench-" + "x" * 40)
    engine = make_engine(settings)
    migrate(engine)
    repo = Repository(engine)
    demo.setup_and_import(repo, demo.find_dataset())
    demo.assign_demo_tariff(repo)
    service = ScenarioService(BillingService(repo, max_hold=timedelta(hours=1)))
    start, end = date.fromisoformat(args.start), date.fromisoformat(args.end)
    print(f"steel plant {start}..{end}, battery 600 kWh / 300 kW, KRW (savings = baseline - scenario)")
    print(f"{'plans from':<24} {'energy':>12} {'demand':>12} {'taxes':>10} {'total':>12} {'peak kW':>16} {'wall s':>7}")
    runs = [("perfect foresight", BatteryChange(BATTERY, perfect_foresight=True))]
    runs += [(a, BatteryChange(BATTERY, forecast_algorithm=a)) for a in args.algorithms]
    for label, change in runs:
        t0 = time.perf_counter()
        out = summary(service.run(demo.SITE.id, ScenarioRequest(start, end, battery=change)))
        wall = time.perf_counter() - t0
        sv, tot = out["total"]["savings"], out["total"]
        peaks = f"{tot['baseline']['peak_kw']:.0f} -> {tot['scenario']['peak_kw']:.0f}"
        print(f"{label:<24} {sv['energy']:>12,.0f} {sv['demand']:>12,.0f} {sv['other']:>10,.0f} {sv['total']:>12,.0f} {peaks:>16} {wall:>7.1f}")
    print(f"baseline total {out['total']['baseline']['bill']['total']:,.0f} KRW over {len(out['periods'])} billing periods")


if __name__ == "__main__":
    main()
