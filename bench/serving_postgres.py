"""Serving latency and throughput on PostgreSQL with 2 workers, against a bare reference, in one run.

Builds a fresh PostgreSQL database (the steel plant: 35,040 readings, a trained LightGBM model),
then serves it with ``digitaltwin serve --workers 2`` (``REDIS_URL`` set: live state, rate limit
and the session cache in Redis) and, in the same run, the bare reference app
(bench/serving_reference.py: FastAPI + psycopg, 2 uvicorn workers on SO_REUSEPORT sockets, the last 100 readings of
the same series, no authentication). The app reads energy from the rollups (``ENERGY_ROLLUPS=true``;
``BENCH_ENERGY_ROLLUPS=false`` measures the raw path) and keeps energy answers per process
(``ENERGY_CACHE_MB``, on by default); the energy routes are then driven again against a server
that keeps none (the "(computed)" rows: what a request costs after the asset's data changed).
The database is analysed after the import (a production server's autovacuum does that within a
minute; without statistics PostgreSQL sorts the whole series for the reference's ``ORDER BY ts
DESC LIMIT 100``). Each route is driven for BENCH_SECONDS with 16 keep-alive connections
(``wrk -t1 -c16 --latency`` when on the PATH, else a raw-socket client in one thread that times
every request), and the table prints requests/s, p50 and p99, the ratio to the reference and how
the 16 connections were spread over the worker processes (``ss``, with wrk only). Then the import of the steel file is timed against a raw COPY of the same rows
(bench/import_throughput.py), also in this run.

Targets: readings >= 0.6x the reference, energy of one year by month >= 0.5x, p99 < 50 ms on
every route at 16 connections, /healthz >= 0.9x the reference's /healthz, import >= 0.5x raw COPY.

Usage: ``.venv/bin/python bench/serving_postgres.py [--postgres URL] [--redis URL]``. The machine
is shared: figures are noisy, which is why each is printed with its ratio measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import create_engine, text

from digitaltwin.demo_data import STEEL_CSV

sys.path.insert(0, str(Path(__file__).resolve().parent))
import keepalive_client  # noqa: E402  (bench/keepalive_client.py)

ROOT = Path(__file__).resolve().parents[1]
SECONDS = float(os.environ.get("BENCH_SECONDS", "4"))
CONNECTIONS = 16
CLIENT = os.environ.get("BENCH_CLIENT") or ("wrk" if shutil.which("wrk") else "raw")
ASSET = "/api/v1/assets/steel-plant"
ROUTES = [
    ("/healthz", "/healthz", "/healthz"),
    ("readings, 100 rows", f"{ASSET}/readings?start=2018-12-30T14:00:00Z&limit=100", "/readings"),
    ("energy, one month by day", f"{ASSET}/energy?start=2018-12-01T00:00:00%2B09:00&end=2019-01-01T00:00:00%2B09:00&bucket=day", "/readings"),
    ("energy, one year by month", f"{ASSET}/energy?start=2018-01-01T00:00:00%2B09:00&end=2019-01-01T00:00:00%2B09:00&bucket=month", "/readings"),
    ("state", f"{ASSET}/state", "/readings"),
    ("forecast, 96 steps, cached", f"{ASSET}/forecast?horizon=PT24H&algorithm=lightgbm", "/readings"),
]
#: Energy routes driven again against a server that keeps no answers (ENERGY_CACHE_MB=0): what
#: a request costs when the asset's data changed since the last one.
COMPUTED = [(f"{name} (computed)", path, ref) for name, path, ref in ROUTES if name.startswith("energy")]
TARGETS = {"/healthz": 0.9, "readings, 100 rows": 0.6, "energy, one year by month": 0.5}
P99_TARGET_MS = 50.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_up(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, "server exited"
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{base} did not come up")


def connections_per_worker(port: int) -> list[int]:
    """Established connections to ``port`` per server process, largest first (``ss``; empty without it)."""
    try:
        out = subprocess.run(["ss", "-Htnp", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True).stdout
    except OSError:
        return []
    pids = re.findall(r"pid=(\d+)", out)
    return sorted((pids.count(pid) for pid in set(pids)), reverse=True)


def drive(port: int, path: str, headers: dict[str, str]) -> tuple[float, float, float, list[int]]:
    """(requests/s, p50 ms, p99 ms, connections per worker) of ``path`` with CONNECTIONS keep-alive connections for SECONDS."""
    if CLIENT == "wrk":
        args = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS:g}s", "--latency", "--timeout", "10s"]
        for key, value in headers.items():
            args += ["-H", f"{key}: {value}"]
        client = subprocess.Popen([*args, f"http://127.0.0.1:{port}{path}"], stdout=subprocess.PIPE, text=True)
        time.sleep(min(1.0, SECONDS / 3))
        spread = connections_per_worker(port)
        out, _ = client.communicate()
        assert client.returncode == 0, out
        assert "Non-2xx" not in out and "Socket errors" not in out, out

        def ms(label: str) -> float:
            value, unit = re.search(rf"^\s+{label}\s+([0-9.]+)(us|ms|s)", out, re.M).groups()  # type: ignore[union-attr]
            return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

        rate = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]
        return rate, ms("50%"), ms("99%"), spread
    return (*raw_client(port, path, headers), [])


def raw_client(port: int, path: str, headers: dict[str, str]) -> tuple[float, float, float]:
    """The raw-socket load generator (one thread, see keepalive_client.py): (req/s, p50 ms, p99 ms)."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n".encode()
    latencies, elapsed = keepalive_client.drive(port, request, connections=CONNECTIONS, seconds=SECONDS)
    p50, p99 = np.percentile(np.array(latencies) * 1000, [50, 99])
    return len(latencies) / elapsed, float(p50), float(p99)


def prepare(pg_url: str, env: dict[str, str]) -> tuple[str, int]:
    """Migrate, import the steel plant, train LightGBM, create an admin; returns (token, series id)."""
    cli = [sys.executable, "-m", "digitaltwin.cli"]
    subprocess.run([*cli, "migrate"], env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*cli, "import", str(STEEL_CSV), "--preset", "steel"],
                   env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*cli, "train", "--asset", "steel-plant", "--algorithm", "lightgbm"], env=env, cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    analysed = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    with analysed.connect() as conn:
        conn.execute(text("ANALYZE"))  # what autovacuum does after an import of this size
    analysed.dispose()
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        from digitaltwin.config import Settings
        from digitaltwin.security.roles import Role
        from digitaltwin.security.service import SecurityService
        from digitaltwin.storage.db import make_engine
        from digitaltwin.storage.repository import Repository

        settings = Settings(_env_file=None)
        engine = make_engine(settings)
        security = SecurityService(settings, engine)
        user = security.accounts.create(f"bench-{secrets.token_hex(3)}", secrets.token_urlsafe(18), Role.ADMIN, actor="bench")
        token = security.sessions.start(user, amr="pwd").access_token
        sid = Repository(engine).find_series("steel-plant", "energy").id  # type: ignore[union-attr]
        engine.dispose()
        return token, sid
    finally:
        os.environ.clear()
        os.environ.update(saved)


def serve(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_up(f"http://127.0.0.1:{port}", process)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()


def import_ratio(pg_admin: str) -> tuple[float, float]:
    """Steel import and raw COPY rows/s in this run (medians of 3, bench/import_throughput.py)."""
    sys.path.insert(0, str(ROOT / "bench"))
    import asyncio

    import import_throughput as it

    from digitaltwin.config import Settings
    from digitaltwin.storage.db import make_engine
    from digitaltwin.storage.repository import Repository

    admin = create_engine(pg_admin.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    db = f"dt_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db}"'))
    url = pg_admin.rsplit("/", 1)[0] + f"/{db}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(_env_file=None, DATABASE_URL=url, DATA_DIR=Path(tmp), LOG_DIR=Path(tmp), MODELS_DIR=Path(tmp))
            imports, copies = [], []
            for _ in range(3):
                elapsed, rows = it.time_import(settings)
                imports.append(rows / elapsed)
                repo = Repository(make_engine(settings))
                sid = repo.find_series("steel-plant", "energy").id  # type: ignore[union-attr]
                records = [(sid, r.ts, r.value) for r in repo.read_page("steel-plant", limit=50_000).rows]
                repo.engine.dispose()
                copies.append(len(records) / asyncio.run(it.time_raw_copy(url, records)))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()
    return statistics.median(imports), statistics.median(copies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    admin = create_engine(args.postgres.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    db = f"dt_serving_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db}"'))
    pg_url = args.postgres.rsplit("/", 1)[0] + f"/{db}"
    folder = Path(tempfile.mkdtemp(prefix="dt-serving-"))
    prefix = f"dt-bench-{uuid.uuid4().hex[:6]}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "MQTT_", "REDIS_", "PROMETHEUS_"))},
        "DATABASE_URL": pg_url, "REDIS_URL": args.redis, "DATA_DIR": str(folder / "data"), "MODELS_DIR": str(folder / "models"),
        "LOG_DIR": str(folder / "logs"), "SECRET_KEY": secrets.token_hex(32), "API_RATE_LIMIT": "100000000",
        "LOG_LEVEL": "WARNING", "RATE_LIMIT_KEY_PREFIX": prefix, "LIVE_STATE_KEY_PREFIX": f"{prefix}:live", "MQTT_BROKER": "",
        "ENERGY_ROLLUPS": os.environ.get("BENCH_ENERGY_ROLLUPS", "true"),
    }
    results: dict[str, tuple[float, float, float, list[int]]] = {}
    reference: dict[str, tuple[float, float, float, list[int]]] = {}  # by route: the run beside it
    try:
        token, sid = prepare(pg_url, env)
        port = free_port()
        command = [sys.executable, "-m", "digitaltwin.cli", "serve", "--workers", "2"]
        app = serve([*command, "--port", str(port)], env, port)
        ref_port = free_port()
        ref_env = {**env, "REF_DATABASE_URL": pg_url, "REF_SERIES_ID": str(sid)}
        ref = serve([sys.executable, str(ROOT / "bench" / "serving_reference.py"), "--workers", "2", "--port", str(ref_port)],
                    ref_env, ref_port)
        try:
            headers = {"Authorization": f"Bearer {token}"}
            for _, path, _ in ROUTES:  # warm every worker: forecast cache, session cache, imports
                for _ in range(10):
                    response = httpx.get(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=60)
                    assert response.status_code == 200, (path, response.status_code, response.text[:300])
            for ref_path in ("/healthz", "/readings"):
                assert len(httpx.get(f"http://127.0.0.1:{ref_port}{ref_path}").json()) > 0
            for name, path, ref_path in ROUTES:
                # Each route right after its own run of the reference, so both see the same load
                # from others; the computed rows below are compared with the last readings run.
                reference[name] = drive(ref_port, ref_path, {})
                results[name] = drive(port, path, headers if path != "/healthz" else {})
            stop(app)
            computing = serve([*command, "--port", str(port)], {**env, "ENERGY_CACHE_MB": "0"}, port)
            try:
                for _, path, _ in COMPUTED:
                    for _ in range(10):
                        assert httpx.get(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=60).status_code == 200
                for name, path, _ in COMPUTED:
                    results[name] = drive(port, path, headers)
            finally:
                stop(computing)
        finally:
            stop(app)
            stop(ref)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()
    imported, copied = import_ratio(args.postgres)

    client = f"wrk -t1 -c{CONNECTIONS} -d{SECONDS:g}s" if CLIENT == "wrk" else f"raw-socket client, {CONNECTIONS} connections, {SECONDS:g} s"
    rollups = "rollups" if env["ENERGY_ROLLUPS"] == "true" else "raw readings"
    print(f"\nPostgreSQL, serve --workers 2 with Redis (energy from {rollups}), vs bare FastAPI + psycopg (2 uvicorn workers); {client}")
    print(f"{'route':<38}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'ref req/s':>11}{'ratio':>7}{'target':>8}  p99<50ms  conns/worker")
    for name, path, ref_path in ROUTES + COMPUTED:
        rate, p50, p99, spread = results[name]
        ref_rate = reference.get(name, reference[ROUTES[-1][0]])[0]
        target = TARGETS.get(name)
        print(
            f"{name:<38}{rate:>9.0f}{p50:>9.1f}{p99:>9.1f}{ref_rate:>11.0f}{rate / ref_rate:>7.2f}"
            f"{(f'{target:.1f}x' if target else '-'):>8}  {'yes' if p99 < P99_TARGET_MS else 'NO ':<8}  {'/'.join(map(str, spread)) or '-'}"
        )
    for name, path, ref_path in ROUTES:
        rate, p50, p99, spread = reference[name]
        label = f"ref {ref_path} beside {name}"[:37]
        print(f"{label:<38}{rate:>9.0f}{p50:>9.1f}{p99:>9.1f}{'':>26}{'':>10}{'/'.join(map(str, spread)) or '-'}")
    print(f"import of the steel file: {imported:,.0f} rows/s, raw COPY {copied:,.0f} rows/s: ratio {imported / copied:.2f} (target 0.5)")


if __name__ == "__main__":
    main()
