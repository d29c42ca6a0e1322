"""Bills against NREL SAM's Utilityrate5: speed of an annual bill and the largest difference.

1. Time per annual bill: the steel plant's 2018 at 15 minutes (35,040 intervals) under PG&E
   E-19 (5 TOU energy periods, 4 TOU demand periods, seasonal flat demand, per-day fixed
   charge), median of repeated runs: the product's engine (URDB parse + 12 monthly bills with
   line items) next to SAM's Utilityrate5 (inputs assigned + execute), in the same process.
2. The bills' largest difference from SAM across the four valid URDB tariffs x (steel 15 min,
   Cambridge hourly) x (no PV, PV export at 1.5 x and at 6 x the mean load, the latter with months
   of net-metering surplus): 288 monthly bills, compared unrounded and rounded to cents.

Run: .venv/bin/python bench/bills_vs_sam.py  (needs nrel-pysam, in the test extra)
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digitaltwin.accounting.bill import round_money  # noqa: E402
from tests.accounting.sam_reference import (  # noqa: E402
    VALID_TARIFFS,
    cambridge_kw,
    load_tariff,
    product_monthly_bills,
    pv_kw,
    sam_monthly_bills,
    sam_rates,
    steel_kw,
)

REPEATS = 15


def _median_seconds(fn, repeats: int = REPEATS) -> float:  # noqa: ANN001
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _sam_once(record: dict, load: np.ndarray) -> None:
    import PySAM.Utilityrate5 as Utilityrate5

    model = Utilityrate5.new()
    model.ElectricityRates.assign(sam_rates(record, monthly_fixed=0.0))
    model.Lifetime.assign({"analysis_period": 1, "system_use_lifetime_output": 0, "inflation_rate": 0})
    model.SystemOutput.assign({"gen": [0.0] * load.size, "degradation": [0]})
    model.Load.assign({"load": load.tolist(), "load_escalation": [0]})
    model.execute(0)


def _stored_bill_seconds(record: dict) -> float:
    """Median time of the product's annual bill through the service, from the steel year stored in SQLite."""
    import tempfile
    from datetime import UTC, date, datetime, timedelta

    from digitaltwin.config import Settings
    from digitaltwin.ingest.csv_import import STEEL_PRESET, import_csv
    from digitaltwin.services import demo
    from digitaltwin.services.billing import BillingService
    from digitaltwin.storage.db import make_engine, migrate
    from digitaltwin.storage.repository import Repository

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(_env_file=None, DATA_DIR=Path(tmp) / "data", MODELS_DIR=Path(tmp) / "m", LOG_DIR=Path(tmp) / "l")
        engine = make_engine(settings)
        migrate(engine)
        repo = Repository(engine)
        demo.register_steel(repo)
        import_csv(repo, demo.find_dataset(), STEEL_PRESET)
        service = BillingService(repo, max_hold=timedelta(hours=1))
        service.import_tariff(record, tariff_id="e19")
        service.assign("e19", site_id=demo.SITE.id, valid_from=date(2018, 1, 1))
        start, end = datetime(2017, 12, 31, 15, tzinfo=UTC), datetime(2018, 12, 31, 15, tzinfo=UTC)
        seconds = _median_seconds(lambda: service.bills(site_id=demo.SITE.id, start=start, end=end), repeats=5)
        engine.dispose()
    return seconds


def main() -> None:
    kw, step, tz = steel_kw()
    e19 = load_tariff("pge_E19_5cef0a415457a33576f60fe2.json")
    ours = _median_seconds(lambda: product_monthly_bills(e19, kw, None, step, tz))
    sam = _median_seconds(lambda: _sam_once(e19, kw))
    print("Annual bill, steel 2018 at 15 min (35,040 intervals), PG&E E-19, median of", REPEATS)
    print(f"  product (parse + 12 bills with line items): {ours * 1000:8.1f} ms")
    print(f"  SAM Utilityrate5 (assign + execute, 1 run):  {sam * 1000:8.1f} ms")
    print(f"  ratio product / SAM: {ours / sam:.2f}  (target <= 1.00)")
    stored = _stored_bill_seconds(e19)
    print(f"  product from SQLite (service: read 15-min energy + bills): {stored * 1000:8.1f} ms, ratio to SAM {stored / sam:.2f}")

    worst = worst_cents = 0.0
    count = 0
    for load_name, (load, load_step, load_tz) in {"steel 15 min": (kw, step, tz), "Cambridge b105 hourly": cambridge_kw()}.items():
        for pv_scale in (0.0, 1.5, 6.0):
            gen = pv_kw(3600 // load_step, peak_kw=pv_scale * float(load.mean())) if pv_scale else None
            for name in VALID_TARIFFS:
                record = load_tariff(name)
                ours_bills = np.array([b.total for b in product_monthly_bills(record, load, gen, load_step, load_tz)])
                sam_bills = sam_monthly_bills(record, load, gen)
                diff = np.abs(ours_bills - sam_bills)
                cents = np.abs(np.array([round_money(x) for x in ours_bills]) - np.array([round_money(x) for x in sam_bills]))
                count += diff.size
                worst, worst_cents = max(worst, float(diff.max())), max(worst_cents, float(cents.max()))
                print(f"  {load_name:22s} {f'PV {pv_scale:g}x' if pv_scale else 'no PV':9s} {name[:26]:26s} "
                      f"max |product - SAM| = {diff.max():.2e} unrounded, {cents.max():.2f} in cents")
    print(f"Largest difference over {count} monthly bills: {worst_cents:.2f} USD with both rounded to cents "
          f"({worst:.2e} unrounded); target 0.00")


if __name__ == "__main__":
    main()
