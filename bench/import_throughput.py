"""Import throughput of the steel file (35,040 rows) into SQLite and PostgreSQL vs raw asyncpg COPY.

Prints rows/s for:
* ``import_csv`` end to end (parse, validate, localise, write) on SQLite and PostgreSQL;
* the storage write alone (``Repository.write_readings`` of parsed readings) on PostgreSQL;
* a raw asyncpg ``copy_records_to_table`` of the same rows into an empty table of the same shape,
  the reference, in the same run; and the ratios against it (the issue asks for >= 0.5 end to end).

Usage: ``.venv/bin/python bench/import_throughput.py [--postgres URL] [--repeat N]``
(default URL: the local server as ``postgres``). Not a test: it only prints.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

import asyncpg
from sqlalchemy import create_engine, text

from digitaltwin.demo_data import STEEL_CSV
from digitaltwin.config import Settings
from digitaltwin.ingest.csv_import import STEEL_PRESET, import_csv
from digitaltwin.services import demo
from digitaltwin.storage.db import make_engine, migrate
from digitaltwin.storage.repository import Repository
from digitaltwin.storage.tables import metadata

ROOT = Path(__file__).resolve().parents[1]


def fresh_repo(settings: Settings) -> Repository:
    engine = make_engine(settings)
    migrate(engine)
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    repo = Repository(engine)
    repo.create_site(demo.SITE, exist_ok=True)
    repo.create_asset(demo.PLANT, exist_ok=True)
    return repo


def time_import(settings: Settings) -> tuple[float, int]:
    repo = fresh_repo(settings)
    started = time.perf_counter()
    report = import_csv(repo, STEEL_CSV, STEEL_PRESET)
    elapsed = time.perf_counter() - started
    repo.engine.dispose()
    return elapsed, report.readings_stored


def time_write_only(settings: Settings) -> tuple[float, int]:
    """The storage write alone: the steel readings as arrays into an empty readings table."""
    repo = fresh_repo(settings)
    report = import_csv(repo, STEEL_CSV, STEEL_PRESET)
    sid = repo.find_series("steel-plant", "energy").id  # type: ignore[union-attr]
    ts, values = repo.series_arrays(sid, start=datetime(2000, 1, 1, tzinfo=UTC), end=datetime(2100, 1, 1, tzinfo=UTC))
    with repo.engine.begin() as conn:
        conn.execute(text("DELETE FROM readings"))
    ts_us = np.round(ts * 1e6).astype(np.int64)
    sids = np.full(len(ts_us), sid, dtype=np.int64)
    started = time.perf_counter()
    outcome = repo.store_arrays(sids, ts_us, values)
    elapsed = time.perf_counter() - started
    assert outcome.stored == report.readings_stored
    repo.engine.dispose()
    return elapsed, outcome.stored


async def time_raw_copy(url: str, records: list[tuple[int, object, float]]) -> float:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DROP TABLE IF EXISTS raw_copy_bench")
        await conn.execute(
            "CREATE TABLE raw_copy_bench (series_id integer, ts timestamptz, value double precision, PRIMARY KEY (series_id, ts))"
        )
        started = time.perf_counter()
        await conn.copy_records_to_table("raw_copy_bench", records=records, columns=["series_id", "ts", "value"])
        return time.perf_counter() - started
    finally:
        await conn.execute("DROP TABLE IF EXISTS raw_copy_bench")
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    admin = create_engine(args.postgres.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    db = f"dt_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db}"'))
    pg_url = args.postgres.rsplit("/", 1)[0] + f"/{db}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            sqlite = Settings(_env_file=None, DATA_DIR=Path(tmp) / "data", MODELS_DIR=Path(tmp) / "m", LOG_DIR=Path(tmp) / "l")
            postgres = sqlite.model_copy(update={"database_url": pg_url})
            results: dict[str, list[float]] = {"sqlite import": [], "postgres import": [], "postgres write only": [], "raw asyncpg COPY": []}
            rows = 0
            for _ in range(args.repeat):
                elapsed, rows = time_import(sqlite)
                results["sqlite import"].append(elapsed)
                elapsed, _ = time_import(postgres)
                results["postgres import"].append(elapsed)
                elapsed, _ = time_write_only(postgres)
                results["postgres write only"].append(elapsed)
                repo = Repository(make_engine(postgres))
                sid = repo.find_series("steel-plant", "energy").id  # type: ignore[union-attr]
                page = repo.read_page("steel-plant", limit=50_000)
                records = [(sid, r.ts, r.value) for r in page.rows]
                repo.engine.dispose()
                results["raw asyncpg COPY"].append(asyncio.run(time_raw_copy(pg_url, records)))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()

    reference = rows / statistics.median(results["raw asyncpg COPY"])
    print(f"steel file: {rows} rows, median of {args.repeat} runs")
    print(f"{'path':<22}{'rows/s':>12}{'vs raw COPY':>14}")
    for name, times in results.items():
        rate = rows / statistics.median(times)
        print(f"{name:<22}{rate:>12,.0f}{rate / reference:>14.2f}")


if __name__ == "__main__":
    main()
