"""Unauthenticated login flood against a real ``digitaltwin serve``: memory and authenticated latency.

The review's attack: many parallel logins with random user names, each costing one argon2id
verification (64 MiB, about 0.35 s). Here ATTACKERS (default 240) logins are kept in flight for
ATTACK_SECONDS (default 8) on loopback, each with a random user name and its own
``X-Forwarded-For`` address, sent to a serve that trusts 127.0.0.1 as its proxy: so they look
like 240 different clients and the per-client ``AUTH_RATE_LIMIT`` does not hide the hashing
cost; what is measured is the bound on the hashing itself (``LOGIN_HASH_CONCURRENCY``,
``LOGIN_HASH_QUEUE``).

Printed per configuration, each on a fresh server (one uvicorn process, embedded SQLite):

* the server's resident memory (VmRSS) before, its peak (VmHWM) and after the attack, in MiB;
* the median and p95 of an authenticated ``GET /api/v1/auth/me`` (sequential, one keep-alive
  connection) before and during the attack, and their ratio (target: within 2x);
* how the attack's logins were answered (401 checked, 429 refused at once).

Configurations: ``bounded`` (the defaults: one check per CPU, a queue of 8) and ``unbounded``
(``LOGIN_HASH_CONCURRENCY=64``, ``LOGIN_HASH_QUEUE=100000``: as before the bound, every worker
thread may hash). ``BENCH_CONFIGS=bounded`` runs one. Loopback only; the attack stops after
ATTACK_SECONDS.

Run: ``.venv/bin/python bench/login_flood.py``
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

ATTACKERS = int(os.environ.get("BENCH_ATTACKERS", "240"))
ATTACK_SECONDS = float(os.environ.get("BENCH_ATTACK_SECONDS", "8"))
PROBES = int(os.environ.get("BENCH_PROBES", "40"))
CONFIGS = {
    "bounded": {},
    "unbounded": {"LOGIN_HASH_CONCURRENCY": "64", "LOGIN_HASH_QUEUE": "100000"},
}
SELECTED = [c for c in os.environ.get("BENCH_CONFIGS", "bounded,unbounded").split(",") if c in CONFIGS]
LATENCY_TARGET_RATIO = 2.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def memory_mib(pid: int, field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of a process, in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def prepare(folder: Path, env: dict[str, str]) -> str:
    """Migrate the embedded database and return an admin's access token (signed with the server's key)."""
    os.environ.update(env)  # this script is an edge: Settings read the same variables the server gets
    from digitaltwin.config import Settings
    from digitaltwin.security.roles import Role
    from digitaltwin.security.service import SecurityService
    from digitaltwin.storage.db import make_engine, migrate

    settings = Settings(_env_file=None)
    engine = make_engine(settings)
    migrate(engine, settings=settings)
    security = SecurityService(settings, engine)
    name = f"bench-{secrets.token_hex(3)}"
    user = security.accounts.create(name, secrets.token_urlsafe(18), Role.ADMIN, actor="bench")
    token = security.sessions.start(user, amr="pwd").access_token
    engine.dispose()
    return token


def probe(base: str, token: str, count: int) -> list[float]:
    """Latencies in ms of ``count`` sequential authenticated GETs."""
    times = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": "192.0.2.1"}) as client:
        for _ in range(count):
            started = time.perf_counter()
            response = client.get("/api/v1/auth/me", timeout=60)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
    return times


async def attack(base: str, stop_at: float) -> Counter[int]:
    """ATTACKERS logins in flight until ``stop_at``, each a random name from its own address."""
    statuses: Counter[int] = Counter()
    limits = httpx.Limits(max_connections=ATTACKERS, max_keepalive_connections=ATTACKERS)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as client:

        async def one(n: int) -> None:
            while time.monotonic() < stop_at:
                address = f"10.{n // 256 % 256}.{n % 256}.{secrets.randbelow(250) + 1}"
                try:
                    response = await client.post(
                        "/api/v1/auth/token", json={"username": secrets.token_hex(6), "password": secrets.token_urlsafe(12)},
                        headers={"X-Forwarded-For": address},
                    )
                    statuses[response.status_code] += 1
                except httpx.HTTPError:
                    statuses[0] += 1

        await asyncio.gather(*(one(n) for n in range(ATTACKERS)))
    return statuses


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(config: str) -> None:
    with tempfile.TemporaryDirectory(prefix="dt-login-flood-") as tmp:
        folder = Path(tmp)
        env = {
            "ENVIRONMENT": "test", "SECRET_KEY": secrets.token_urlsafe(48), "DATA_DIR": str(folder / "data"),
            "MODELS_DIR": str(folder / "models"), "LOG_DIR": str(folder / "logs"), "LOG_LEVEL": "WARNING",
            "TRUSTED_PROXIES": "127.0.0.1/32", "API_RATE_LIMIT": "1000000", "MODELS_WATCH": "false",
            **CONFIGS[config],
        }
        child_env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_", "MQTT_", "PROMETHEUS_"))}
        child_env.update(env)
        token = prepare(folder, env)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "digitaltwin.cli", "serve", "--port", str(port)], env=child_env, cwd=folder,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("serve did not start")
                time.sleep(0.3)
            probe(base, token, 5)  # warm-up
            rss_before = memory_mib(server.pid, "VmRSS")
            baseline = probe(base, token, PROBES)
            stop_at = time.monotonic() + ATTACK_SECONDS
            result: dict[str, Counter[int]] = {}
            attacker = threading.Thread(target=lambda: result.setdefault("statuses", asyncio.run(attack(base, stop_at))))
            attacker.start()
            time.sleep(1.0)  # let the flood build up
            during: list[float] = []
            while time.monotonic() < stop_at - 0.5:
                during.extend(probe(base, token, 5))
            attacker.join()
            peak = memory_mib(server.pid, "VmHWM")
            rss_after = memory_mib(server.pid, "VmRSS")
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
    base_median, attack_median = statistics.median(baseline), statistics.median(during)
    ratio = attack_median / base_median
    statuses = result.get("statuses", Counter())
    print(f"[{config}] {ATTACKERS} logins in flight for {ATTACK_SECONDS:g} s, cores={os.cpu_count()} {CONFIGS[config] or '(defaults)'}")
    print(f"  server RSS: before {rss_before:.0f} MiB, peak {peak:.0f} MiB, after {rss_after:.0f} MiB")
    print(
        f"  GET /api/v1/auth/me: baseline median {base_median:.1f} ms (p95 {pct(baseline, 0.95):.1f}), "
        f"under attack median {attack_median:.1f} ms (p95 {pct(during, 0.95):.1f}, n={len(during)})"
    )
    verdict = "within" if ratio <= LATENCY_TARGET_RATIO else "OVER"
    print(f"  latency ratio (attack / baseline median): {ratio:.2f}x  [{verdict} the {LATENCY_TARGET_RATIO:g}x target]")
    print(f"  attack answers: {dict(sorted(statuses.items()))}  (401 = checked, 429 = refused before hashing, 0 = transport error)")


if __name__ == "__main__":
    for name in SELECTED:
        run(name)
