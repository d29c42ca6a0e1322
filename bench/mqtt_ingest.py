"""MQTT ingest into PostgreSQL: QoS 1 publishers -> Mosquitto -> ingest worker(s) -> batching writer (COPY).

Protocol. Two cases: single-reading messages and 50-reading array messages, on 100
assets (``dt/bench/a000..a099/telemetry``). Each case has two phases, each on a fresh
``readings`` table, fresh MQTT sessions and a fresh topic prefix:

1. **max sustained throughput**: the publishers send, as fast as they can, twice the messages
   the target rate would send in ``--seconds``; the broker queues what the subscriber cannot
   take yet (the private broker has unlimited queues), and the figure is readings committed /
   (last commit - first publish), i.e. including the time to drain the backlog. Its lag is that of a growing backlog and is printed only for
   completeness.
2. **lag at the target rate**: the publishers are paced at the target (``--rate`` 10,000
   single-reading messages/s; ``--array-rate`` 1,200 messages/s = 60,000 readings/s) for
   ``--seconds``; p50/p99 ingest lag is reading timestamp (event time, set when the message
   is published) to commit, over every reading. The offered rate (messages / (last publish -
   first publish)) is printed, so a publisher that fell short of the target shows.

Each phase prints: readings/s committed and its ratio to the target; lost readings (PUBACKed
by the broker, not in the table), duplicated rows, redelivered readings (committed more than
once) and dead letters, all of which must be 0; p50/p99 lag (and p99 over the 1 s limit);
the peak RSS of the ingest worker process(es), summed; and a raw asyncpg
``copy_records_to_table`` of the same rows into an empty table of the same primary key in the
same run, as the ratio ingest / raw.

Configuration, printed in the header: the product's ingest worker
(:func:`digitaltwin.ingest.workers.run_worker`, as ``digitaltwin ingest`` runs it) in
``--workers`` processes of one shared-subscription group (``digitaltwin ingest --workers N``),
each with the writer's default threads, and the live state ``--live`` (Redis by default, as a
deployment with ``REDIS_URL`` has; ``memory`` is the in-process state of a deployment without
Redis). The publishers are
``--publishers`` processes speaking MQTT v5 on a plain socket (:class:`RawPublisher`: QoS 1,
up to the broker's receive maximum in flight, PUBACKs counted), because a Python client
library would spend more of the 2 shared cores publishing than the subscriber spends
receiving; they send ``{"ts": <epoch ms>, "quantity": "power", "value": v, "unit": "kW"}``
items. By default the broker is a private Mosquitto started here on a free port
(``listener``, ``allow_anonymous true``, ``persistence false``, ``max_queued_messages 0``);
``--broker URL`` uses another one (with Mosquitto's default 1000 queued messages per session
the unthrottled phase then loses messages *at the broker*, and says so).

Usage: ``flock /tmp/cpu.lock .venv/bin/python bench/mqtt_ingest.py [--workers 1] [--seconds 10]
[--live redis|memory]``. Not a test: it only prints.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import select
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from import_throughput import time_raw_copy as raw_copy  # same reference as the import benchmark
from mqtt_client_choice import private_broker

from digitaltwin.config import Settings
from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.ingest.mqtt_subscriber import broker_address
from digitaltwin.storage.db import make_engine, migrate
from digitaltwin.storage.repository import Repository

ASSETS = 100
TARGET_SINGLE_MSGS = 10_000
TARGET_ARRAY_READINGS = 60_000
LAG_LIMIT_S = 1.0
#: The unthrottled phase publishes this many times the messages the target rate would send in ``--seconds``.
UNTHROTTLED_BACKLOG = 2


# -- load generator ---------------------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s: bytes) -> bytes:
    return struct.pack("!H", len(s)) + s


class RawPublisher:
    """MQTT v5 QoS 1 publishing on a plain socket: CONNECT, pipelined PUBLISH, PUBACKs counted.

    Keeps at most the broker's *receive maximum* (CONNACK property 0x21) messages in flight;
    ``acked`` counts messages the broker acknowledged (raises on a PUBACK error code).
    """

    def __init__(self, host: str, port: int, client_id: str) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        body = _utf8(b"MQTT") + bytes([5, 0x02]) + struct.pack("!H", 60) + b"\x00" + _utf8(client_id.encode())
        self.sock.sendall(b"\x10" + _varint(len(body)) + body)
        self.buf = b""
        kind, packet = self._packet(block=True)  # type: ignore[misc]
        if kind >> 4 != 2 or packet[1] != 0:
            raise RuntimeError(f"CONNACK refused: {packet!r}")
        self.window = min(1000, self._receive_maximum(packet[2:]))
        self.inflight = self.acked = self.mid = 0
        self.out: list[bytes] = []

    @staticmethod
    def _receive_maximum(props: bytes) -> int:
        length, shift, i = 0, 0, 0
        while True:
            length |= (props[i] & 127) << shift
            shift, i = shift + 7, i + 1
            if not props[i - 1] & 128:
                break
        fixed = {0x01: 1, 0x17: 1, 0x19: 1, 0x24: 1, 0x25: 1, 0x28: 1, 0x29: 1, 0x2A: 1, 0x13: 2, 0x21: 2, 0x22: 2, 0x23: 2,
                 0x02: 4, 0x11: 4, 0x18: 4, 0x27: 4}
        p, j = props[i : i + length], 0
        while j < len(p):
            pid, j = p[j], j + 1
            if pid == 0x21:
                return int(struct.unpack("!H", p[j : j + 2])[0])
            if pid in fixed:
                j += fixed[pid]
            elif pid == 0x26:  # user property: two strings
                for _ in range(2):
                    j += 2 + struct.unpack("!H", p[j : j + 2])[0]
            else:  # a string or binary property
                j += 2 + struct.unpack("!H", p[j : j + 2])[0]
        return 65_535

    def _packet(self, *, block: bool) -> tuple[int, bytes] | None:
        while True:
            if len(self.buf) >= 2:
                length, shift, i = 0, 0, 1
                while i < len(self.buf):
                    length |= (self.buf[i] & 127) << shift
                    shift, i = shift + 7, i + 1
                    if not self.buf[i - 1] & 128:
                        break
                else:
                    i = -1
                if i > 0 and len(self.buf) >= i + length:
                    packet = (self.buf[0], self.buf[i : i + length])
                    self.buf = self.buf[i + length :]
                    return packet
            if not block:
                return None
            self._read()

    def _read(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("broker closed the connection")
        self.buf += data

    def _take_acks(self, *, block: bool) -> None:
        if block or select.select([self.sock], [], [], 0)[0]:
            self._read()
        while (packet := self._packet(block=False)) is not None:
            if packet[0] >> 4 == 4:
                if len(packet[1]) > 2 and packet[1][2] >= 0x80:
                    raise RuntimeError(f"PUBACK reason code {packet[1][2]:#x}")
                self.inflight -= 1
                self.acked += 1

    def publish(self, topic: bytes, payload: bytes) -> None:
        """Queue one QoS 1 PUBLISH (sent in groups of 64)."""
        while self.inflight >= self.window:
            self.flush()
            self._take_acks(block=True)
        self.mid = self.mid % 65_535 + 1
        self.out.append(
            b"\x32" + _varint(2 + len(topic) + 3 + len(payload)) + _utf8(topic) + struct.pack("!HB", self.mid, 0) + payload
        )
        self.inflight += 1
        if len(self.out) >= 64:
            self.flush()
            self._take_acks(block=False)

    def flush(self) -> None:
        if self.out:
            self.sock.sendall(b"".join(self.out))
            self.out.clear()

    def close(self, timeout_s: float = 120.0) -> None:
        """Wait for every PUBACK, then DISCONNECT."""
        self.flush()
        deadline = time.monotonic() + timeout_s
        while self.inflight > 0 and time.monotonic() < deadline:
            self._take_acks(block=True)
        self.sock.sendall(b"\xe0\x00")
        self.sock.close()


def publisher(broker: str, topic_fmt: str, assets: list[str], per_message: int, seconds: float, rate: float, limit: int,
              out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """Publish for ``seconds`` at ``rate`` messages/s (0: unthrottled, then at most ``limit`` messages);
    reports (messages acknowledged, readings acknowledged, first publish, last publish) as epoch seconds."""
    host, port, _ = broker_address(broker)
    pub = RawPublisher(host, port, f"bench-pub-{uuid.uuid4().hex[:8]}")
    topics = [topic_fmt.format(asset=a).encode() for a in assets]
    last = [0] * len(assets)
    sent = i = 0
    first_publish = time.time()
    started = time.monotonic()
    while (now := time.monotonic()) - started < seconds and (rate > 0 or sent < limit):
        if rate > 0 and sent > rate * (now - started):
            pub.flush()
            time.sleep(0.0005)
            continue
        k = i % len(assets)
        i += 1
        now_ms = int(time.time() * 1000)
        first = max(now_ms - per_message + 1, last[k] + 1)
        last[k] = first + per_message - 1
        items = [b'{"ts":%d,"quantity":"power","value":%d.%d,"unit":"kW"}' % (first + j, (first + j) % 1000, j % 10)
                 for j in range(per_message)]
        pub.publish(topics[k], items[0] if per_message == 1 else b"[" + b",".join(items) + b"]")
        sent += 1
    pub.flush()
    last_publish = time.time()
    pub.close()
    out.put((pub.acked, pub.acked * per_message, first_publish, last_publish))


# -- ingest workers -----------------------------------------------------------------------
def worker(env: dict[str, str], client_id: str, started: threading.Event, stop: threading.Event,
           out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """One ingest worker (the product's :func:`run_worker`) with a listener that records lag per reading."""
    import psutil

    from digitaltwin.ingest.workers import run_worker

    os.environ.update(env)
    settings = Settings(_env_file=None)
    lags: list[np.ndarray] = []
    delivered = 0
    last_commit = 0.0

    def listen(flush) -> None:  # type: ignore[no-untyped-def]
        nonlocal delivered, last_commit
        now = flush.committed_at.timestamp()
        ts = np.fromiter((r.ts.timestamp() for r in flush.readings), dtype=np.float64, count=len(flush.readings))
        lags.append((now - ts).astype(np.float32))
        delivered += len(flush.readings)
        last_commit = now

    process = psutil.Process()
    peak = process.memory_info().rss
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.05):
            peak = max(peak, process.memory_info().rss)

    threading.Thread(target=sample, daemon=True).start()
    local_stop = threading.Event()
    threading.Thread(target=lambda: (stop.wait(), local_stop.set()), daemon=True).start()
    run_worker(settings, client_id=client_id, stop=local_stop, listeners=[listen], started=started)  # type: ignore[arg-type]
    done.set()
    out.put((client_id, np.concatenate(lags) if lags else np.zeros(0, np.float32), delivered, last_commit, peak))


@dataclass
class Outcome:
    published_msgs: int
    published: int
    offered_msgs_per_s: float
    rows: int
    distinct: int
    delivered: int
    letters: int
    elapsed: float
    lag: np.ndarray
    peak_rss: int
    raw_rows_per_s: float


def phase(per_message: int, rate: float, args: argparse.Namespace, db_url: str) -> Outcome:
    """One run (see the module docstring): fresh table, sessions and prefix; ``rate`` messages/s (0: unthrottled)."""
    tag = uuid.uuid4().hex[:8]
    env = {
        "DATABASE_URL": db_url, "MQTT_BROKER": args.broker, "MQTT_TOPIC_PREFIX": f"bench-{tag}/",
        "MQTT_AUTO_REGISTER_ASSETS": "false", "LOG_DIR": "/tmp", "LIVE_STATE_KEY_PREFIX": f"bench-{tag}",
        "LOG_LEVEL": "WARNING",
    }
    env["REDIS_URL"] = args.redis if args.live == "redis" else ""
    engine = make_engine(Settings(_env_file=None, DATABASE_URL=db_url))
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE readings, series, assets, sites, dead_letters CASCADE"))
    repo = Repository(engine)
    repo.create_site(Site("bench", "bench", "UTC"))
    assets = [f"a{i:03d}" for i in range(ASSETS)]
    for a in assets:
        repo.create_asset(Asset(a, "bench", a, AssetKind.METER))

    ctx = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    stop = ctx.Event()
    client_ids = [f"bench-{tag}-{i}" for i in range(args.workers)]
    starts = [ctx.Event() for _ in client_ids]
    workers = [ctx.Process(target=worker, args=(env, cid, s, stop, results)) for cid, s in zip(client_ids, starts, strict=True)]
    for w in workers:
        w.start()
    for s in starts:
        if not s.wait(60):
            raise RuntimeError("an ingest worker did not subscribe within 60 s")

    out: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    topic_fmt = env["MQTT_TOPIC_PREFIX"] + "dt/bench/{asset}/telemetry"
    shares = [assets[i :: args.publishers] for i in range(args.publishers)]
    target_msgs = (TARGET_SINGLE_MSGS if per_message == 1 else TARGET_ARRAY_READINGS / per_message) * args.seconds
    limit = int(UNTHROTTLED_BACKLOG * target_msgs / args.publishers)
    pubs = [ctx.Process(target=publisher, args=(args.broker, topic_fmt, s, per_message, args.seconds if rate else 600,
                                                rate / args.publishers, limit, out))
            for s in shares]
    for p in pubs:
        p.start()
    counts = [out.get(timeout=args.seconds + 600) for _ in pubs]
    for p in pubs:
        p.join()
    published_msgs = sum(c[0] for c in counts)
    published = sum(c[1] for c in counts)
    started, publish_end = min(c[2] for c in counts), max(c[3] for c in counts)

    def stored() -> int:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM readings")).scalar_one())

    deadline = time.time() + 180
    while stored() < published and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # let redeliveries, if any, arrive
    stop.set()
    reports = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(30)

    with engine.connect() as conn:
        rows, distinct = conn.execute(text("SELECT count(*), count(DISTINCT (series_id, ts)) FROM readings")).one()
        letters = conn.execute(text("SELECT count(*) FROM dead_letters")).scalar_one()
        copy_rows = [(r.series_id, r.ts, r.value) for r in conn.execute(text("SELECT series_id, ts, value FROM readings"))]
    engine.dispose()
    raw_s = asyncio.run(raw_copy(db_url, copy_rows)) if copy_rows else float("nan")
    last_commit = max(r[3] for r in reports)
    _purge(args.broker, client_ids)
    return Outcome(
        published_msgs=published_msgs, published=published,
        offered_msgs_per_s=published_msgs / (publish_end - started),
        rows=rows, distinct=distinct, delivered=sum(r[2] for r in reports), letters=letters,
        elapsed=last_commit - started, lag=np.concatenate([r[1] for r in reports]),
        peak_rss=sum(r[4] for r in reports), raw_rows_per_s=len(copy_rows) / raw_s,
    )


def _purge(broker: str, client_ids: list[str]) -> None:
    """Remove the bench's persistent sessions from the broker (clean start, session expiry 0)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    host, port, _ = broker_address(broker)
    for client_id in client_ids:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        client.connect(host, port, clean_start=True, properties=props)
        client.disconnect()


def report(label: str, o: Outcome, per_message: int, target_readings: float, rate: float) -> None:
    readings_per_s = o.rows / o.elapsed
    lag_ms = np.percentile(o.lag, [50, 99]) * 1000 if o.lag.size else np.array([np.nan, np.nan])
    offered = "unthrottled" if rate == 0 else f"paced at {rate:,.0f} msg/s"
    print(f"  {label} ({offered}): offered {o.offered_msgs_per_s:,.0f} msg/s, published {o.published:,} readings")
    print(f"    committed    {o.rows:,} readings in {o.elapsed:.2f} s = {readings_per_s:,.0f} readings/s "
          f"= {readings_per_s / per_message:,.0f} msg/s -> {readings_per_s / target_readings:.2f}x target "
          f"({target_readings / per_message:,.0f} msg/s)")
    print(f"    lost {o.published - o.distinct:,}   duplicated rows {o.rows - o.distinct:,}   "
          f"redelivered readings {o.delivered - o.rows:,}   dead letters {o.letters:,}")
    print(f"    ingest lag   p50 {lag_ms[0]:,.0f} ms   p99 {lag_ms[1]:,.0f} ms"
          + (" (backlog of an unthrottled run)" if rate == 0 else f" -> p99 / {LAG_LIMIT_S:g} s limit = {lag_ms[1] / 1000 / LAG_LIMIT_S:.2f}"))
    print(f"    peak RSS     {o.peak_rss / 2**20:,.0f} MiB (ingest process(es))   raw asyncpg COPY {o.raw_rows_per_s:,.0f} rows/s, "
          f"ingest / raw = {readings_per_s / o.raw_rows_per_s:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default=None, help="MQTT broker URL (default: a private Mosquitto started here)")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--live", choices=("redis", "memory"), default="redis")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--publishers", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="ingest worker processes (digitaltwin ingest --workers)")
    parser.add_argument("--rate", type=float, default=TARGET_SINGLE_MSGS, help="single-reading messages/s of the lag phase")
    parser.add_argument("--array-rate", type=float, default=TARGET_ARRAY_READINGS / 50, help="50-reading messages/s of the lag phase")
    parser.add_argument("--cases", default="single,array")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.broker is None:
            args.broker = f"mqtt://127.0.0.1:{stack.enter_context(private_broker())}"
        admin_url = args.postgres.replace("postgresql://", "postgresql+psycopg://", 1)
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        name = f"dt_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        db_url = make_url(admin_url).set(database=name).render_as_string(hide_password=False).replace(
            "postgresql+psycopg://", "postgresql://")
        try:
            migrate(make_engine(Settings(_env_file=None, DATABASE_URL=db_url)))
            print(f"MQTT ingest bench, {os.cpu_count()} CPU(s), broker {args.broker}, PostgreSQL database {name}")
            print(f"configuration: {args.workers} ingest worker process(es) (digitaltwin ingest --workers {args.workers}), "
                  f"live state {args.live}, {args.publishers} raw-socket QoS 1 publisher process(es), {ASSETS} assets, "
                  f"{args.seconds:g} s per phase")
            for case in args.cases.split(","):
                per_message = 1 if case == "single" else 50
                target = TARGET_SINGLE_MSGS if per_message == 1 else TARGET_ARRAY_READINGS
                rate = args.rate if per_message == 1 else args.array_rate
                print(f"\n== {case}: {per_message} reading(s) per message; target >= {target:,} "
                      f"{'messages' if per_message == 1 else 'readings'}/s, p99 lag < {LAG_LIMIT_S:g} s, nothing lost")
                report("max sustained throughput", phase(per_message, 0, args, db_url), per_message, target, 0)
                report("lag at the target rate", phase(per_message, rate, args, db_url), per_message, target, rate)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
