"""Several worker processes report correct totals (prometheus_client multiprocess mode) and JSON access logs.

Runs the real ``digitaltwin serve --workers 2`` on the embedded SQLite database.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.serve_support import serving

pytestmark = pytest.mark.slow  # starts two real worker processes (~30 s on a loaded 2-core machine)

WORKERS = 2
REQUESTS = 40


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Base URL of ``digitaltwin serve --workers 2`` and its folder (data, logs, multiprocess dir)."""
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
    with serving(env, tmp_path / "server.out", "--workers", str(WORKERS), cwd=tmp_path) as (base, _):
        yield base, tmp_path


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
