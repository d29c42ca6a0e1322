"""Cost of the year-by-month energy query against the length and rate of the history.

Four meters of one site (Asia/Seoul) with interval energy generated from the steel plant's
profile (``digitaltwin/demo_data/steel_industry``, 15-minute kWh, repeated year after year with a per-year
scale): 1, 3 and 10 years of 15-minute readings and 1 year of one-minute readings. For each, the
last full year by month (``energy_report``, 12 buckets) is timed from rollups (after they were
built; the build is timed separately) and from raw readings (``use_rollups=False``), best of
``--repeat`` runs, and printed with its ratio to the 1-year figure of the same path (target: the
rollup path within 2x). Also printed: the ingest cost the rollups add (the dirty mark of one
batch, and the refresh the next query does after a day of new readings).

Run: ``.venv/bin/python bench/energy_history.py [--postgres URL] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import create_engine, text

from digitaltwin.analytics.buckets import Bucket
from digitaltwin.config import Settings
from digitaltwin.demo_data import STEEL_CSV as CSV
from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.domain.readings import Reading
from digitaltwin.services.energy import energy_report
from digitaltwin.storage.db import make_engine, migrate
from digitaltwin.storage.repository import Repository
from digitaltwin.storage.rollups import mark_changed

END = datetime(2025, 1, 1, tzinfo=UTC)
HOLD = timedelta(hours=1)
HISTORIES = (("1 year, 15 min", 1, 900), ("3 years, 15 min", 3, 900), ("10 years, 15 min", 10, 900), ("1 year, 1 min", 1, 60))


def profile() -> np.ndarray:
    """One year of the steel plant's 15-minute kWh (35,040 values)."""
    return pd.read_csv(CSV)["Usage_kWh"].to_numpy(dtype=float)


def load(repo: Repository, asset_id: str, years: int, step_s: int, base: np.ndarray) -> None:
    """``years`` years of interval energy ending at :data:`END`, one reading per ``step_s`` seconds."""
    start = END - timedelta(days=365 * years)
    per_cell = 900 // step_s
    repo.create_asset(Asset(asset_id, "bench", asset_id, AssetKind.METER))
    n = int((END - start).total_seconds()) // step_s
    cells = np.resize(base, -(-n // per_cell))
    scale = 1.0 + 0.05 * (np.arange(cells.size) // base.size)
    values = np.repeat(cells * scale / per_cell, per_cell)[:n]
    t0 = start.timestamp()
    batch = 50_000
    for i in range(0, n, batch):
        repo.write_readings(
            [Reading(asset_id, "energy", datetime.fromtimestamp(t0 + k * step_s, UTC), float(values[k])) for k in range(i, min(i + batch, n))],
            interval_seconds=step_s,
        )


def best_s(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def run(name: str, settings: Settings, repeat: int) -> None:
    engine = make_engine(settings)
    migrate(engine)
    repo = Repository(engine)
    repo.create_site(Site("bench", "Bench", "Asia/Seoul", "KR"))
    base = profile()
    year = (datetime(2024, 1, 1, tzinfo=UTC), END)
    print(f"\n{name}: year-by-month query of the last year (best of {repeat})")
    print(f"{'history':18s} {'readings':>9s} {'build s':>8s} {'rollups ms':>11s} {'x 1 year':>9s} {'raw ms':>9s} {'x 1 year':>9s} {'raw/rollups':>12s}")
    first: dict[str, float] = {}
    for i, (label, years, step) in enumerate(HISTORIES):
        asset_id = f"meter-{i}"
        load(repo, asset_id, years, step, base)
        readings = int(365 * years * 86400 // step)
        started = time.perf_counter()
        energy_report(repo, asset_id, start=year[0], end=year[1], bucket=Bucket.MONTH, max_hold=HOLD, now=END)  # builds the rollups
        build = time.perf_counter() - started
        query = {
            path: best_s(lambda p=path: energy_report(repo, asset_id, start=year[0], end=year[1], bucket=Bucket.MONTH, max_hold=HOLD, now=END, use_rollups=p), repeat)
            for path in (True, False)
        }
        first = first or {"rollups": query[True], "raw": query[False]}
        print(
            f"{label:18s} {readings:9d} {build:8.2f} {query[True] * 1000:11.1f} {query[True] / first['rollups']:9.2f} "
            f"{query[False] * 1000:9.1f} {query[False] / first['raw']:9.2f} {query[False] / query[True]:12.1f}"
        )
    # Ingest cost: the mark of one batch, and the next query's refresh after a day of new readings.
    info = repo.find_series("meter-0", "energy")
    assert info is not None
    mark = best_s(lambda: _mark(engine, info.id), repeat)
    day = [Reading("meter-0", "energy", END + timedelta(minutes=15 * k), 1.0) for k in range(96)]
    started = time.perf_counter()
    repo.write_readings(day, interval_seconds=900)
    write = time.perf_counter() - started
    started = time.perf_counter()
    energy_report(repo, "meter-0", start=year[0], end=year[1], bucket=Bucket.MONTH, max_hold=HOLD, now=END + timedelta(days=2))
    with_refresh = time.perf_counter() - started
    print(f"ingest: dirty mark of one batch {mark * 1000:.2f} ms; write of a day (96 readings, mark included) {write * 1000:.1f} ms; "
          f"next query with its refresh {with_refresh * 1000:.1f} ms")
    engine.dispose()


def _mark(engine, series_id: int) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        mark_changed(conn, [(series_id, END, END)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres", help="admin URL; empty to skip PostgreSQL")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = Settings(_env_file=None, DATA_DIR=Path(tmp) / "data", MODELS_DIR=Path(tmp) / "m", LOG_DIR=Path(tmp) / "l")
        run("SQLite", sqlite, args.repeat)
        if not args.postgres:
            return
        admin = create_engine(args.postgres.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
        db = f"dt_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{db}"'))
        try:
            run("PostgreSQL", sqlite.model_copy(update={"database_url": args.postgres.rsplit("/", 1)[0] + f"/{db}"}), args.repeat)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
