"""MQTT ingest throughput into PostgreSQL: QoS 1 publishers -> Mosquitto -> subscriber -> batching writer (COPY).

For single-reading messages and for 50-reading array messages it prints: sustained readings/s
committed (first publish to last commit), lost readings (published, not in the table) and
duplicated ones (rows beyond the distinct keys; and readings delivered more than once), p50/p99
ingest lag (reading timestamp, set at publish time, to commit), and the peak RSS of the
subscriber process; next to a raw asyncpg ``copy_records_to_table`` of the same rows into an
empty table of the same shape, in the same run, as a ratio. Targets (issue 3): >= 10,000
single-reading messages/s, >= 60,000 readings/s in arrays, p99 lag < 1 s, nothing lost.

Publishers are ``--publishers`` processes (paho-mqtt, QoS 1, 1000 in flight) sharing ``--rate``
messages/s (0: as fast as they can). With Mosquitto's default ``max_queued_messages`` (1000 per
session) a publisher that outruns the subscriber by more than its receive maximum plus that
queue makes the *broker* drop messages; the bench reports them as lost.

Usage: ``.venv/bin/python bench/mqtt_ingest.py [--broker mqtt://127.0.0.1:1883] [--postgres URL]
[--seconds 10] [--rate 10000] [--array-rate 1400]``. Not a test: it only prints.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import threading
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import numpy as np
import psutil
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from import_throughput import time_raw_copy as raw_copy  # same reference as the import benchmark

from digitaltwin.config import Settings
from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.ingest.mqtt_subscriber import broker_address, build_subscriber
from digitaltwin.ingest.writer import Flush
from digitaltwin.observability.metrics import Metrics
from digitaltwin.storage.db import make_engine, migrate
from digitaltwin.storage.repository import Repository

ASSETS = 100


def publisher(broker: str, topic_fmt: str, assets: list[str], per_message: int, seconds: float, rate: float, out: "multiprocessing.Queue[int]") -> None:
    """Publish for ``seconds`` at ``rate`` messages/s (0: unthrottled); reports how many readings it published."""
    import paho.mqtt.client as mqtt

    host, port, _ = broker_address(broker)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    last = {a: 0 for a in assets}
    sent = 0
    started = time.monotonic()
    infos = []
    i = 0
    while (now := time.monotonic()) - started < seconds:
        if rate > 0 and sent / per_message > rate * (now - started):
            time.sleep(0.001)
            continue
        asset = assets[i % len(assets)]
        i += 1
        now_ms = int(time.time() * 1000)
        first = max(now_ms - per_message + 1, last[asset] + 1)
        last[asset] = first + per_message - 1
        items = [{"ts": first + k, "quantity": "power", "value": (first + k) % 1000 / 10, "unit": "kW"} for k in range(per_message)]
        payload = json.dumps(items[0] if per_message == 1 else items).encode()
        infos.append(client.publish(topic_fmt.format(asset=asset), payload, qos=1))
        sent += per_message
        if len(infos) >= 5000:
            for info in infos:
                info.wait_for_publish(60)
            infos.clear()
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()
    out.put(sent)


def run(mode: str, per_message: int, args: argparse.Namespace, db_url: str) -> None:
    settings = Settings(
        _env_file=None, DATABASE_URL=db_url, MQTT_BROKER=args.broker, MQTT_TOPIC_PREFIX=f"bench-{uuid.uuid4().hex[:8]}/",
        MQTT_CLIENT_ID=f"bench-{uuid.uuid4().hex[:8]}", MQTT_AUTO_REGISTER_ASSETS=False, LOG_DIR="/tmp",
    )
    engine = make_engine(settings)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE readings, series, assets, sites, dead_letters CASCADE"))
    repo = Repository(engine)
    repo.create_site(Site("bench", "bench", "UTC"))
    assets = [f"a{i:03d}" for i in range(ASSETS)]
    for a in assets:
        repo.create_asset(Asset(a, "bench", a, AssetKind.METER))

    lags: list[np.ndarray] = []
    delivered = 0
    first_commit: list[float] = []
    last_commit = 0.0

    def listen(flush: Flush) -> None:
        nonlocal delivered, last_commit
        now = flush.committed_at.timestamp()
        ts = np.fromiter((r.ts.timestamp() for r in flush.readings), dtype=np.float64, count=len(flush.readings))
        lags.append(now - ts)
        delivered += len(flush.readings)
        last_commit = time.time()
        if not first_commit:
            first_commit.append(now)

    subscriber = build_subscriber(settings, repo, metrics=Metrics())
    subscriber.writer.listeners.append(listen)
    process = psutil.Process()
    peak_rss = process.memory_info().rss
    base_rss = peak_rss
    sampling = threading.Event()

    def sample() -> None:
        nonlocal peak_rss
        while not sampling.wait(0.05):
            peak_rss = max(peak_rss, process.memory_info().rss)

    threading.Thread(target=sample, daemon=True).start()
    subscriber.start()
    assert subscriber.subscribed.wait(15), "subscription not confirmed"
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[int] = ctx.Queue()
    rate = (args.rate if per_message == 1 else args.array_rate) / args.publishers
    topic_fmt = settings.mqtt_topic_prefix + "dt/bench/{asset}/telemetry"
    shares = [assets[i :: args.publishers] for i in range(args.publishers)]
    started = time.time()
    procs = [ctx.Process(target=publisher, args=(args.broker, topic_fmt, s, per_message, args.seconds, rate, out)) for s in shares]
    for p in procs:
        p.start()
    published = sum(out.get(timeout=args.seconds + 120) for _ in procs)
    for p in procs:
        p.join()
    publish_end = time.time()
    deadline = time.time() + 60
    while delivered < published and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # let redeliveries, if any, arrive
    subscriber.stop()
    sampling.set()

    with engine.connect() as conn:
        rows, distinct = conn.execute(text("SELECT count(*), count(DISTINCT (series_id, ts)) FROM readings")).one()
        letters = conn.execute(text("SELECT count(*) FROM dead_letters")).scalar_one()
        copy_rows = [(r.series_id, r.ts, r.value) for r in conn.execute(text("SELECT series_id, ts, value FROM readings"))]
    elapsed = last_commit - started
    lag = np.concatenate(lags) if lags else np.array([np.nan])
    raw_s = asyncio.run(raw_copy(db_url, copy_rows)) if copy_rows else float("nan")
    readings_per_s = rows / elapsed
    print(f"\n== {mode}: {per_message} reading(s) per message, {args.publishers} publisher(s), "
          f"target {'unthrottled' if rate == 0 else f'{rate * args.publishers:,.0f} msg/s'}, {args.seconds:g} s")
    print(f"published        {published:,} readings ({published / per_message / (publish_end - started):,.0f} msg/s offered)")
    print(f"committed        {rows:,} readings in {elapsed:.2f} s: {readings_per_s:,.0f} readings/s = "
          f"{readings_per_s / per_message:,.0f} msg/s")
    print(f"lost             {published - distinct:,}   duplicated rows {rows - distinct:,}   "
          f"redelivered readings {delivered - rows:,}   dead letters {letters:,}")
    print(f"ingest lag       p50 {np.nanpercentile(lag, 50) * 1000:,.0f} ms   p99 {np.nanpercentile(lag, 99) * 1000:,.0f} ms")
    print(f"peak RSS         {peak_rss / 2**20:,.0f} MiB (start {base_rss / 2**20:,.0f} MiB)")
    print(f"raw asyncpg COPY {len(copy_rows) / raw_s:,.0f} rows/s; ingest / raw = {readings_per_s / (len(copy_rows) / raw_s):.2f}")
    purge = Settings(_env_file=None, MQTT_BROKER=args.broker)
    _purge(purge, settings.mqtt_client_id or "")
    engine.dispose()


def _purge(settings: Settings, client_id: str) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    host, port, _ = broker_address(settings.mqtt_broker or "")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    client.connect(host, port, clean_start=True, properties=props)
    client.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default=os.environ.get("MQTT_BROKER", "mqtt://127.0.0.1:1883"))
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=10_000, help="single-reading messages/s in total (0: unthrottled)")
    parser.add_argument("--array-rate", type=float, default=1_400, help="50-reading messages/s in total (0: unthrottled)")
    args = parser.parse_args()
    admin_url = args.postgres.replace("postgresql://", "postgresql+psycopg://", 1)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"dt_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    db_url = make_url(admin_url).set(database=name).render_as_string(hide_password=False).replace("postgresql+psycopg://", "postgresql://")
    try:
        migrate(make_engine(Settings(_env_file=None, DATABASE_URL=db_url)))
        print(f"MQTT ingest bench, {os.cpu_count()} CPU(s), broker {args.broker}, PostgreSQL database {name}")
        run("single", 1, args, db_url)
        run("array", 50, args, db_url)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
