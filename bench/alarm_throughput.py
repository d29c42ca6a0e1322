"""Detection throughput and alarm latency: 1,000 assets with a new interval each, per round, while ingest runs.

What runs is the product's path from a committed batch to a webhook:

* an *ingest* thread commits one new 1-minute energy interval for each of ``--assets`` assets per
  round (``Repository.write_readings`` in batches of ``--batch`` readings, as the MQTT writer
  commits) and hands every committed batch to the detection hook (``DetectionRunner.submit``), as
  the writer's post-commit listener does;
* the detection worker runs a rule detector per touched series (it reads the series' last ten
  intervals from storage and flags a value outside the expected range; the real rule and model
  detectors live in ``digitaltwin.monitoring`` beside the alarm model and plug in the same way),
  then the alarm life cycle (``AlarmService.apply``);
* ``--anomalous`` assets per round (a different set each round, the previous set back to normal)
  raise an alarm, which is delivered to a webhook receiver on a loopback port by the webhook
  workers (HMAC-signed, as in production), and clears two rounds later;
* after the rounds, the timer detector (the stale-device check over every series) is timed.

Printed: time per evaluation round (detection + life cycle of ``--assets`` touched series; the
budget is one minute, a new interval per asset per minute), the stale-device check's round, and
the alarm latency from the anomalous reading's commit to its webhook's arrival (p50, p99, max;
target p99 < 5 s), against that 5 s target.

Usage: ``.venv/bin/python bench/alarm_throughput.py [--postgres URL] [--rounds 6] [--assets 1000]``
(without ``--postgres``: a temporary SQLite file; with it, a throw-away database is created on that
server and dropped afterwards). Bounded: a few tens of seconds. Not a test: it only prints.
"""

from __future__ import annotations

import argparse
import logging
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

import orjson
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from digitaltwin.config import Settings
from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.domain.readings import Reading
from digitaltwin.monitoring.alarms import Detection, Severity, evidence
from digitaltwin.observability.metrics import Metrics
from digitaltwin.services.alarms import AlarmService
from digitaltwin.services.detection import DetectionRunner, StaleDeviceChecker, Touched
from digitaltwin.services.webhooks import WebhookNotifier
from digitaltwin.storage.db import make_engine, migrate
from digitaltwin.storage.monitoring_store import MonitoringStore
from digitaltwin.storage.repository import Repository

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NORMAL_KWH, ANOMALY_KWH, LIMIT_KWH = 1.0, 50.0, 10.0


class Receiver:
    """Loopback webhook receiver: arrival time per alarm id of ``raised`` events."""

    def __init__(self) -> None:
        self.arrivals: dict[int, float] = {}
        self.count = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                now = time.time()
                event = orjson.loads(body)
                outer.count += 1
                if event["event"] == "raised":
                    outer.arrivals[(event["asset_id"], event["started_at"])] = now  # type: ignore[index]
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


class RangeRule:
    """The bench's rule detector: the touched interval's value against the expected range [0, LIMIT_KWH],
    after reading the series' last ten intervals (a rule detector reads its window from storage)."""

    name = "range_rule"

    def __init__(self, repo: Repository) -> None:
        self.series: dict[str, int] = {}
        self.repo = repo

    def detect(self, touched: Touched, repo: Repository) -> list[Detection]:
        series_id = self.series.get(touched.asset_id)
        if series_id is None:
            info = repo.find_series(touched.asset_id, touched.quantity)
            assert info is not None
            series_id = self.series[touched.asset_id] = info.id
        _, values = repo.series_arrays(series_id, start=touched.start - timedelta(minutes=10), end=touched.end + timedelta(seconds=1))
        latest = float(values[-1])
        return [Detection(touched.asset_id, "range_rule", Severity.CRITICAL, touched.start, touched.end, latest,
                          evidence(latest, 0.0, LIMIT_KWH), active=latest > LIMIT_KWH)]


@contextmanager
def database(postgres: str | None) -> Iterator[Settings]:
    if postgres is None:
        with tempfile.TemporaryDirectory() as folder:
            yield Settings(_env_file=None, DATA_DIR=Path(folder), DATABASE_URL=None, SECRET_KEY="b" * 40)
        return
    name = f"bench_alarms_{uuid.uuid4().hex[:8]}"
    url = make_url(postgres.replace("postgresql://", "postgresql+psycopg://", 1))
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield Settings(_env_file=None, DATABASE_URL=postgres.rsplit("/", 1)[0] + f"/{name}", SECRET_KEY="b" * 40)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=None, help="e.g. postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--assets", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batch", type=int, default=200, help="readings per committed batch")
    parser.add_argument("--anomalous", type=int, default=20, help="assets raising an alarm per round")
    parser.add_argument("--round-seconds", type=float, default=3.0, help="wall time between rounds (a minute, compressed)")
    args = parser.parse_args()
    logging.getLogger("digitaltwin.services.alarms").setLevel(logging.ERROR)  # one WARNING line per raised alarm

    with database(args.postgres) as settings:
        engine = make_engine(settings)
        migrate(engine)
        repo = Repository(engine)
        repo.create_site(Site("bench", "bench", "UTC"))
        assets = [f"a{i:04d}" for i in range(args.assets)]
        for asset_id in assets:
            repo.create_asset(Asset(asset_id, "bench", asset_id, AssetKind.METER))
        # ten intervals of history per asset
        history = [Reading(a, "energy", T0 + timedelta(minutes=m), NORMAL_KWH) for m in range(10) for a in assets]
        repo.write_readings(history, interval_seconds=60)

        metrics = Metrics()
        store = MonitoringStore(engine)
        receiver = Receiver()
        notifier = WebhookNotifier(store, metrics=metrics, max_attempts=5, backoff_s=0.5)
        notifier.start()
        store.create_webhook(url=receiver.url, secret="bench-secret-0123456789", site_id=None,
                             min_severity=Severity.WARNING, created_at=datetime.now(UTC), created_by="bench")
        alarms = AlarmService(store, repo, metrics=metrics, notifier=notifier)
        runner = DetectionRunner(alarms, repo, [RangeRule(repo)], metrics=metrics, queue_size=10_000)
        round_times: list[float] = []
        original = runner.evaluate

        def timed(touched: list[Touched]) -> list[Detection]:
            started = time.perf_counter()
            try:
                return original(touched)
            finally:
                round_times.append(time.perf_counter() - started)

        runner.evaluate = timed  # type: ignore[method-assign]
        runner.start()
        committed: dict[tuple[str, str], float] = {}
        batch_evals: list[int] = []
        started_all = time.perf_counter()
        for r in range(args.rounds):
            ts = T0 + timedelta(minutes=10 + r)
            anomalous = set(assets[(r * args.anomalous) % args.assets:][: args.anomalous])
            readings = [Reading(a, "energy", ts, ANOMALY_KWH if a in anomalous else NORMAL_KWH) for a in assets]
            before = len(round_times)
            round_start = time.perf_counter()
            for i in range(0, len(readings), args.batch):  # ingest: commit, then the post-commit hook
                batch = readings[i:i + args.batch]
                repo.write_readings(batch, interval_seconds=60)
                now = time.time()
                for reading in batch:
                    if reading.asset_id in anomalous:
                        committed[(reading.asset_id, ts.isoformat().replace("+00:00", "Z"))] = now
                runner.submit(batch)
            while not runner.idle():
                time.sleep(0.005)
            batch_evals.append(len(round_times) - before)
            detect_s = time.perf_counter() - round_start
            print(f"round {r + 1}: {args.assets} intervals ingested and evaluated in {detect_s:.2f} s "
                  f"({len(round_times) - before} batches)")
            time.sleep(max(0.0, args.round_seconds - detect_s))
        deadline = time.monotonic() + 30
        while not notifier.idle() and time.monotonic() < deadline:
            time.sleep(0.01)
        total_s = time.perf_counter() - started_all

        stale = StaleDeviceChecker(store, repo, alarms, metrics=metrics)
        stale_times = []
        for _ in range(3):
            t = time.perf_counter()
            stale.detections(now=T0 + timedelta(minutes=10 + args.rounds))  # detections only (no mass alarm)
            stale_times.append(time.perf_counter() - t)

        latencies = [receiver.arrivals[k] - committed[k] for k in committed if k in receiver.arrivals]
        runner.stop()
        notifier.stop()
        receiver.close()
        engine.dispose()

    per_round = [sum(round_times[i - n:i]) for i, n in zip(
        [sum(batch_evals[: j + 1]) for j in range(len(batch_evals))], batch_evals, strict=True)]
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(f"\n{backend}, {args.assets} assets, {args.rounds} rounds, batches of {args.batch}, {args.anomalous} anomalous per round")
    print(f"detection (rule detector + life cycle) per round of {args.assets} intervals: "
          f"median {statistics.median(per_round):.3f} s, max {max(per_round):.3f} s "
          f"= {max(per_round) / 60:.1%} of the 60 s budget")
    print(f"stale-device check over {args.assets} series: median {statistics.median(stale_times):.3f} s")
    expected = args.rounds * args.anomalous
    if latencies:
        p99 = pct(latencies, 0.99)
        print(f"alarm latency commit -> webhook delivered, {len(latencies)}/{expected} alarms: "
              f"p50 {pct(latencies, 0.5):.3f} s, p99 {p99:.3f} s, max {max(latencies):.3f} s; "
              f"p99 / 5 s target = {p99 / 5:.2f} ({'met' if p99 < 5 else 'MISSED'})")
    else:
        print("no alarm reached the receiver")
    print(f"webhook deliveries received: {receiver.count}; wall time {total_s:.1f} s")


if __name__ == "__main__":
    main()
