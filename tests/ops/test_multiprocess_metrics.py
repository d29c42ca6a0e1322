"""Several worker processes report correct totals (prometheus_client multiprocess mode) and JSON access logs.

Runs the real ``digitaltwin serve --workers 2`` on the embedded SQLite database.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.tools import REPO_ROOT

pytestmark = pytest.mark.slow  # starts two real worker processes (~30 s on a loaded 2-core machine)

WORKERS = 2
REQUESTS = 40
STARTUP_DEADLINE_S = 120


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Base URL of ``digitaltwin serve --workers 2`` and its folder (data, logs, multiprocess dir)."""
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "PROMETHEUS_", "REDIS_", "MQTT_"))},
        "ENVIRONMENT": "test",
        "DATA_DIR": str(tmp_path / "data"),
        "MODELS_DIR": str(tmp_path / "models"),
        "LOG_DIR": str(tmp_path / "logs"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "multiproc"),
        "SECRET_KEY": secrets.token_urlsafe(48),
    }
    # a stale value from an "earlier run" must not leak into the totals
    (tmp_path / "multiproc").mkdir()
    (tmp_path / "multiproc" / "counter_999999.db").write_bytes(b"stale")
    command = [sys.executable, "-m", "digitaltwin.cli", "serve", "--port", str(port), "--workers", str(WORKERS)]
    output = tmp_path / "server.out"
    with output.open("wb") as sink:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited: {output.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server did not answer /healthz: {output.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base, tmp_path
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _healthz_total(text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "http_requests_total" and sample.labels["route"] == "/healthz"
    )


def test_every_worker_scrape_reports_the_total_of_all_workers(served: tuple[str, Path]) -> None:
    base, folder = served
    before = _healthz_total(httpx.get(f"{base}/metrics").text)  # the start-up probes
    assert before >= 1
    for _ in range(REQUESTS):
        with httpx.Client() as fresh:  # a new connection each time, so the kernel spreads them over workers
            assert fresh.get(f"{base}/healthz").status_code == 200
    pids = {p.stem.rsplit("_", 1)[-1] for p in (folder / "multiproc").glob("counter_*.db")}
    assert len(pids) == WORKERS, f"workers writing metrics: {pids}"
    for _ in range(6):  # whichever worker answers, it reports everyone's requests
        with httpx.Client() as fresh:
            assert _healthz_total(fresh.get(f"{base}/metrics").text) == before + REQUESTS
    lines = [json.loads(line) for line in (folder / "logs" / "access.log").read_text().splitlines()]
    healthz = [line for line in lines if line["route"] == "/healthz"]
    assert len(healthz) >= REQUESTS
    assert all(line["status"] == 200 and len(line["request_id"]) == 32 for line in healthz)
