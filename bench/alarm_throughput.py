"""Anomaly detection throughput and alarm latency: 1,000 assets, a new closed hour each per round, while ingest runs.

What runs is the product's monitoring as a process builds it (``open_monitoring``): the detection
runner with the real consumption-anomaly detector (``ConsumptionAnomalies``: eight weeks of hourly
energy per series, the robust hour-of-week profile, flatline, zero-in-busy-hours and spike rules,
3-of-6 persistence), the alarm life cycle and the webhook workers.

* **Data.** ``--assets`` assets on one site (Asia/Seoul), each with hourly interval energy shaped
  like the UCI steel plant (``digitaltwin.demo_data.STEEL_CSV``: its hourly load, each asset a
  different week of the year, its own scale and 3 % noise). Eight weeks and a day of history per
  asset are written first in bulk (``Repository.store_arrays``).
* **Rounds.** Each round (a minute, compressed to ``--round-seconds``) delivers the next hour's
  reading of every asset in committed batches of ``--batch`` (``write_readings``, then
  ``runner.submit``, as the MQTT writer's post-commit listener does); each reading closes the
  asset's previous hour, so the detector evaluates 1,000 closed hours per round. The first round
  only opens the hour; the second is the *cold* round: every series' window is read whole (what
  a process does after it starts), reported apart. The measured rounds follow.
* **Anomalies.** From the first measured round on, each round a new set of ``--anomalous`` assets
  starts a three-hour anomaly (alternately the load tripled, or nothing metered): the real detector
  flags it when the third hour closes (3-of-6 persistence), one round after the third anomalous
  reading; the alarm is delivered to a webhook receiver on a loopback port (HMAC-signed, as in
  production) and clears after the anomaly (hysteresis 2).

Printed: the cold round; per measured round the evaluation time (detector plus alarm life cycle,
summed over the round's batches) against the 60 s of a real minute, and the life cycle
(``AlarmService.apply``, 4 detections per asset) apart; the stale-device check over every series;
the alarm latency from the commit of the reading that closed the third anomalous hour to the
webhook's arrival (p50, p99, max) against the 5 s target, and how many of the expected alarms fired.

Usage: ``.venv/bin/python bench/alarm_throughput.py [--postgres URL] [--assets 1000] [--rounds 8]``
(without ``--postgres``: a temporary SQLite file; with it, a throw-away database is created on that
server and dropped afterwards). Bounded: about three minutes, most of it loading the history and
the cold round. Not a test: it only prints.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from digitaltwin.config import Settings
from digitaltwin.demo_data import STEEL_CSV
from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.domain.readings import Reading
from digitaltwin.monitoring.alarms import Detection, Severity
from digitaltwin.observability.metrics import Metrics
from digitaltwin.services.anomaly_alarms import HISTORY_WEEKS, ConsumptionAnomalies
from digitaltwin.services.detection import StaleDeviceChecker, Touched
from digitaltwin.services.monitoring import open_monitoring
from digitaltwin.storage.db import make_engine, migrate
from digitaltwin.storage.monitoring_store import MonitoringStore
from digitaltwin.storage.repository import Repository
from digitaltwin.storage.tables import to_epoch_us

#: The steel plant's first hour: local midnight of 1 January 2018 in Seoul.
STEEL_T0 = datetime(2017, 12, 31, 15, tzinfo=UTC)
HISTORY_HOURS = HISTORY_WEEKS * 168 + 24
#: Hours of an anomaly: 3-of-6 persistence flags it when the third closes.
ANOMALY_HOURS = 3


class Receiver:
    """Loopback webhook receiver: arrival time of each ``raised`` event by (asset, started_at)."""

    def __init__(self) -> None:
        self.arrivals: dict[tuple[str, str], float] = {}
        self.types: dict[tuple[str, str], str] = {}
        self.raised: dict[str, list[str]] = {}
        self.count = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                now = time.time()
                event = orjson.loads(body)
                outer.count += 1
                if event["event"] == "raised":
                    key = (event["asset_id"], event["started_at"])
                    outer.arrivals.setdefault(key, now)
                    outer.types[key] = event["type"]
                    outer.raised.setdefault(event["asset_id"], []).append(event["started_at"])
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def steel_hourly() -> np.ndarray:
    """The steel plant's hourly energy (kWh) of 2018, local hours from 1 January 00:00."""
    df = pd.read_csv(STEEL_CSV, usecols=["date", "Usage_kWh"], encoding="utf-8-sig")
    ends = pd.to_datetime(df["date"], format="%d/%m/%Y %H:%M")
    starts = ends - pd.Timedelta(minutes=15)  # stamped at the end of each quarter hour
    hourly = df.groupby(starts.dt.floor("h"))["Usage_kWh"].sum()
    return hourly.to_numpy(dtype=float)


def asset_loads(count: int, hours: int, seed: int = 7) -> np.ndarray:
    """Hourly kWh per asset, shape ``(count, hours)``: the steel load from a different week of the
    year per asset (weekdays kept), its own scale and 3 % multiplicative noise."""
    base = steel_hourly()
    rng = np.random.default_rng(seed)
    out = np.empty((count, hours))
    weeks = (base.size - hours) // 168
    for i in range(count):
        offset = 168 * (i % weeks)
        out[i] = base[offset : offset + hours] * rng.uniform(0.5, 2.0) * (1.0 + rng.normal(0.0, 0.03, hours))
    return np.maximum(out, 0.0)


@contextmanager
def database(postgres: str | None) -> Iterator[Settings]:
    # the webhook receiver listens on the loopback, which webhooks may reach only when allowed
    common = {"_env_file": None, "SECRET_KEY": "b" * 40, "ALARM_CLEAR_AFTER": 2, "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1"}
    if postgres is None:
        with tempfile.TemporaryDirectory() as folder:
            yield Settings(DATA_DIR=Path(folder), DATABASE_URL=None, **common)
        return
    name = f"bench_alarms_{uuid.uuid4().hex[:8]}"
    url = make_url(postgres.replace("postgresql://", "postgresql+psycopg://", 1))
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield Settings(DATABASE_URL=postgres.rsplit("/", 1)[0] + f"/{name}", **common)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=None, help="e.g. postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--assets", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=8, help="measured rounds (after the opening and the cold round)")
    parser.add_argument("--batch", type=int, default=200, help="readings per committed batch")
    parser.add_argument("--anomalous", type=int, default=40, help="assets starting a three-hour anomaly per round")
    parser.add_argument("--round-seconds", type=float, default=10.0, help="wall time of a round (a minute, compressed)")
    args = parser.parse_args()
    logging.getLogger("digitaltwin.services.alarms").setLevel(logging.ERROR)  # one WARNING line per raised alarm
    total_rounds = 2 + args.rounds
    loads = asset_loads(args.assets, HISTORY_HOURS + total_rounds)
    assets = [f"a{i:04d}" for i in range(args.assets)]
    first_round_hour = STEEL_T0 + timedelta(hours=HISTORY_HOURS)

    with database(args.postgres) as settings:
        engine = make_engine(settings)
        migrate(engine)
        repo = Repository(engine)
        repo.create_site(Site("bench", "bench", "Asia/Seoul"))
        started = time.perf_counter()
        sids = np.empty(args.assets, dtype=np.int64)
        for i, asset_id in enumerate(assets):
            repo.create_asset(Asset(asset_id, "bench", asset_id, AssetKind.METER))
            sids[i] = repo.ensure_series(asset_id, "energy", interval_seconds=3600).id
        ts_us = to_epoch_us(STEEL_T0) + 3_600_000_000 * np.arange(HISTORY_HOURS, dtype=np.int64)
        per_call = max(1, 200_000 // HISTORY_HOURS)
        for a in range(0, args.assets, per_call):
            chunk = slice(a, min(a + per_call, args.assets))
            n = chunk.stop - chunk.start
            repo.store_arrays(np.repeat(sids[chunk], HISTORY_HOURS), np.tile(ts_us, n), loads[chunk, :HISTORY_HOURS].ravel())
        load_s = time.perf_counter() - started

        receiver = Receiver()
        MonitoringStore(engine).create_webhook(url=receiver.url, secret="bench-secret-0123456789", site_id=None,
                                               min_severity=Severity.WARNING, created_at=datetime.now(UTC), created_by="bench")
        metrics = Metrics()
        monitoring = open_monitoring(settings, repo, metrics=metrics, live=None, timers=False)
        runner, alarms, notifier, store = monitoring.runner, monitoring.alarms, monitoring.notifier, monitoring.store
        detector = next(d for d in runner.interval_detectors if isinstance(d, ConsumptionAnomalies))

        evaluate_s: list[float] = []
        evaluate_cpu_s: list[float] = []  # CPU time of the detection thread (the machine is shared: wall time waits for it)
        apply_s: list[float] = []
        evaluate, apply = runner.evaluate, alarms.apply

        def timed_evaluate(touched: list[Touched]) -> list[Detection]:
            t, cpu = time.perf_counter(), time.thread_time()
            try:
                return evaluate(touched)
            finally:
                evaluate_s.append(time.perf_counter() - t)
                evaluate_cpu_s.append(time.thread_time() - cpu)

        def timed_apply(detections: list[Detection]):  # type: ignore[no-untyped-def]
            t = time.perf_counter()
            try:
                return apply(detections)
            finally:
                apply_s.append(time.perf_counter() - t)

        runner.evaluate = timed_evaluate  # type: ignore[method-assign]
        alarms.apply = timed_apply  # type: ignore[method-assign]

        committed: dict[tuple[str, str], float] = {}  # (asset, anomaly start) -> commit of the reading that closes its third hour
        expected: dict[tuple[str, str], str] = {}
        anomalies: dict[str, tuple[int, str]] = {}  # asset -> (first round, "surge" | "outage")
        rounds: list[tuple[float, float, float, dict[str, int]]] = []
        cold: tuple[float, float] | None = None
        for r in range(total_rounds):
            hour = first_round_hour + timedelta(hours=r)
            s = r - 2  # anomaly set starting this round
            if 0 <= s and r + ANOMALY_HOURS < total_rounds:
                kind = "surge" if s % 2 == 0 else "outage"
                stride = max(1, args.assets // args.anomalous)  # spread over the fleet, so over every batch
                for asset_id in [assets[(s + k * stride) % args.assets] for k in range(args.anomalous)]:
                    anomalies[asset_id] = (r, kind)
                    expected[(asset_id, iso(hour))] = kind
            readings = []
            for i, asset_id in enumerate(assets):
                value = float(loads[i, HISTORY_HOURS + r])
                first, kind = anomalies.get(asset_id, (-99, ""))
                if first <= r < first + ANOMALY_HOURS:
                    value = value * 3.0 if kind == "surge" else 0.0
                readings.append(Reading(asset_id, "energy", hour, value))
            before_eval, before_apply = len(evaluate_s), len(apply_s)
            reads_before = dict(detector.reads)
            round_start = time.perf_counter()
            for i in range(0, len(readings), args.batch):  # ingest: commit, then the post-commit hook
                batch = readings[i : i + args.batch]
                repo.write_readings(batch, interval_seconds=3600)
                now = time.time()
                for reading in batch:
                    first, _ = anomalies.get(reading.asset_id, (-99, ""))
                    if r == first + ANOMALY_HOURS:  # this reading closes the anomaly's third hour
                        committed[(reading.asset_id, iso(first_round_hour + timedelta(hours=first)))] = now
                runner.submit(batch)
            while not runner.idle():
                time.sleep(0.005)
            wall = time.perf_counter() - round_start
            eval_s, life_s, cpu_s = sum(evaluate_s[before_eval:]), sum(apply_s[before_apply:]), sum(evaluate_cpu_s[before_eval:])
            reads = {k: detector.reads[k] - reads_before[k] for k in reads_before}
            if r == 1:
                cold = (cpu_s, eval_s)
                print(f"cold round: {args.assets} windows read whole in {eval_s:.1f} s (CPU {cpu_s:.1f} s; reads {reads})")
            elif r >= 2:
                rounds.append((eval_s, life_s, cpu_s, reads))
                print(f"round {r - 1}: {args.assets} closed hours evaluated in {eval_s:.2f} s, CPU {cpu_s:.2f} s "
                      f"(alarm life cycle {life_s:.3f} s; {len(evaluate_s) - before_eval} batches; reads {reads}; wall {wall:.2f} s)")
            time.sleep(max(0.0, args.round_seconds - wall))
        deadline = time.monotonic() + 30
        while not notifier.idle() and time.monotonic() < deadline:
            time.sleep(0.01)

        stale = StaleDeviceChecker(store, repo, alarms, metrics=metrics)
        stale_times = []
        for _ in range(3):
            t = time.perf_counter()
            stale.detections(now=first_round_hour + timedelta(hours=total_rounds))  # detections only (no mass alarm)
            stale_times.append(time.perf_counter() - t)
        latencies = [receiver.arrivals[k] - committed[k] for k in committed if k in receiver.arrivals]
        fired = {k: receiver.types[k] for k in expected if k in receiver.arrivals}
        missed = [k for k in expected if k not in receiver.arrivals]
        already = sum(1 for a, _ in missed if receiver.raised.get(a))  # raised earlier for the asset and still open
        others = len(receiver.arrivals) - len(fired)
        monitoring.stop()
        receiver.close()
        engine.dispose()

    backend = "PostgreSQL" if args.postgres else "SQLite"
    per_round = [e for e, _, _, _ in rounds]
    load = os.getloadavg()
    life = [lf for _, lf, _, _ in rounds]
    print(f"\n{backend} (load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} cores), {args.assets} assets x {HISTORY_HOURS} hours of history loaded in {load_s:.1f} s; "
          f"{args.rounds} measured rounds, batches of {args.batch}, {args.anomalous} assets starting an anomaly per round")
    if cold is not None:
        print(f"cold round (every window read whole, once per process start): {cold[1]:.1f} s (CPU of the detection thread {cold[0]:.1f} s)")
    cpu = [c for _, _, c, _ in rounds]
    print(f"evaluation per round of {args.assets} closed hours (detector + alarm life cycle): "
          f"median {statistics.median(per_round):.2f} s, max {max(per_round):.2f} s = {max(per_round) / 60:.1%} of the 60 s budget; "
          f"CPU of the detection thread median {statistics.median(cpu):.2f} s, max {max(cpu):.2f} s")
    print(f"  of which the alarm life cycle ({4 * args.assets} detections): median {statistics.median(life):.3f} s, max {max(life):.3f} s")
    print(f"stale-device check over {args.assets} series: median {statistics.median(stale_times):.3f} s")
    kinds = {k: sum(1 for v in fired.values() if v == k) for k in sorted(set(fired.values()))}
    print(f"alarms raised for the injected anomalies: {len(fired)}/{len(expected)} (types {kinds}; of the {len(missed)} others, "
          f"{already} on assets with an alarm raised otherwise); other raised alarms: {others}")
    if latencies:
        p99 = pct(latencies, 0.99)
        print(f"alarm latency, commit of the closing reading -> webhook delivered ({len(latencies)} alarms): "
              f"p50 {pct(latencies, 0.5):.3f} s, p99 {p99:.3f} s, max {max(latencies):.3f} s; "
              f"p99 / 5 s target = {p99 / 5:.2f} ({'met' if p99 < 5 else 'MISSED'})")
    else:
        print("no alarm reached the receiver")
    print(f"webhook deliveries received: {receiver.count}")


if __name__ == "__main__":
    main()
