"""Jobs outlive the process that runs them: real ``digitaltwin serve`` and ``digitaltwin worker`` processes.

* embedded default (the runner inside serve), on SQLite and PostgreSQL: a backtest is running
  when serve is killed (SIGKILL); the restarted serve finds the job lost with its process, queues
  it again and runs it to the end (``attempts`` 2), and GET shows it;
* production queue (serve with JOBS_IN_PROCESS=false, separate worker processes, PostgreSQL): a
  worker killed mid-job leaves it to the next worker; a worker stopped with SIGTERM puts its job
  back in the queue at once, without counting the attempt.

Before, the work ran inside the request: a killed process lost it without a trace.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from digitaltwin.config import Settings
from digitaltwin.security.roles import Role
from digitaltwin.security.secret_key import resolve_signing_keys
from digitaltwin.security.service import SecurityService
from digitaltwin.storage.repository import Repository
from tests.api.test_forecast_api import load_profile, store_hourly
from tests.api.test_jobs import LONG_BACKTEST
from tests.integration.mqtt_support import child_env, register
from tests.serve_support import free_port


def bearer(settings: Settings, repo: Repository) -> dict[str, str]:
    """The header of a new operator (created in the database the children use)."""
    security = SecurityService(settings, repo.engine, keys=resolve_signing_keys(settings))
    user = security.accounts.create(f"op-{secrets.token_hex(3)}", secrets.token_urlsafe(18), Role.OPERATOR, actor="test")
    return {"Authorization": f"Bearer {security.sessions.start(user, amr='pwd').access_token}"}


class Child:
    """A ``digitaltwin`` child process with its output in a file."""

    def __init__(self, args: list[str], env: dict[str, str], output: Path) -> None:
        self.output = output
        with output.open("ab") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "digitaltwin.cli", *args], env=env, stdout=sink, stderr=subprocess.STDOUT
            )

    def alive(self) -> None:
        assert self.process.poll() is None, self.output.read_text()[-3000:]

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def until(check: Callable[[], Any], what: str, timeout_s: float = 300, *, child: Child | None = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        if child is not None:
            child.alive()
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.fixture
def env(settings: Settings, repo: Repository, tmp_path: Path) -> dict[str, str]:
    register(repo, "site-p", "meter-p")
    store_hourly(repo, "meter-p", load_profile(35))
    return child_env(settings, tmp_path / "logs") | {
        "JOBS_HEARTBEAT_SECONDS": "0.5", "JOBS_POLL_SECONDS": "0.2", "API_RATE_LIMIT": "100000",  # the test polls
    }


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        child.stop(signal.SIGKILL)


def serve(env: dict[str, str], tmp_path: Path, children: list[Child]) -> str:
    port = free_port()
    child = Child(["serve", "--port", str(port)], env, tmp_path / "serve.out")
    children.append(child)
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    until(healthy, "serve did not answer /healthz", 120, child=child)
    return base


def job(base: str, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    return httpx.get(f"{base}/api/v1/jobs/{job_id}", headers=headers, timeout=10).json()


def test_a_job_running_when_serve_is_killed_ends_after_the_restart(
    settings: Settings, repo: Repository, env: dict[str, str], tmp_path: Path, children: list[Child]
) -> None:
    env = env | {"JOBS_IN_PROCESS": "true"}
    headers = bearer(settings, repo)
    base = serve(env, tmp_path, children)
    submitted = httpx.post(f"{base}/api/v1/assets/meter-p/backtests", json=LONG_BACKTEST, headers=headers, timeout=30)
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]
    first = until(lambda: (j := job(base, headers, job_id))["progress"] > 0 and j, "never running", child=children[0])
    assert first["state"] == "running" and first["attempts"] == 1

    children[0].stop(signal.SIGKILL)  # no shutdown: the row still says running, under a dead pid
    base = serve(env, tmp_path, children)
    done = until(lambda: (j := job(base, headers, job_id))["state"] in ("succeeded", "failed") and j, "not resumed", child=children[1])
    assert done["state"] == "succeeded" and done["attempts"] == 2, done
    assert done["worker_id"] != first["worker_id"]
    stored = httpx.get(f"{base}{done['result_url']}", headers=headers, timeout=10).json()
    assert stored["algorithms"] == ["lightgbm", "random_forest"] and stored["retrain_every"] == 1


def test_worker_processes_run_the_queue_and_take_over_lost_jobs(
    settings: Settings, repo: Repository, env: dict[str, str], tmp_path: Path, children: list[Child]
) -> None:
    if not settings.database_url:
        pytest.skip("the production queue runs on PostgreSQL")
    env = env | {"JOBS_IN_PROCESS": "false"}
    headers = bearer(settings, repo)
    base = serve(env, tmp_path, children)
    submitted = httpx.post(f"{base}/api/v1/assets/meter-p/backtests", json=LONG_BACKTEST, headers=headers, timeout=30)
    job_id = submitted.json()["job_id"]
    time.sleep(1.0)
    assert job(base, headers, job_id)["state"] == "queued"  # serve does not run jobs here

    worker_a = Child(["worker"], env, tmp_path / "worker-a.out")
    children.append(worker_a)
    running = until(lambda: (j := job(base, headers, job_id))["progress"] > 0 and j, "worker a never ran it", child=worker_a)
    assert running["worker_id"].split("/")[1] == str(worker_a.process.pid)
    worker_a.stop(signal.SIGKILL)

    worker_b = Child(["worker", "--concurrency", "1"], env, tmp_path / "worker-b.out")
    children.append(worker_b)
    done = until(lambda: (j := job(base, headers, job_id))["state"] in ("succeeded", "failed") and j, "not taken over", child=worker_b)
    assert done["state"] == "succeeded" and done["attempts"] == 2, done
    assert done["worker_id"].split("/")[1] == str(worker_b.process.pid)

    # SIGTERM: the running job stops at its next checkpoint and goes back to the queue, attempt not counted
    second = httpx.post(f"{base}/api/v1/assets/meter-p/backtests", json=LONG_BACKTEST, headers=headers, timeout=30).json()
    until(lambda: job(base, headers, second["job_id"])["progress"] > 0, "worker b never ran the second job", child=worker_b)
    assert worker_b.stop(signal.SIGTERM) == 0
    back = job(base, headers, second["job_id"])
    assert back["state"] == "queued" and back["attempts"] == 0 and back["progress"] == 0, back
    assert httpx.post(f"{base}/api/v1/jobs/{second['job_id']}/cancel", headers=headers, timeout=10).json()["state"] == "cancelled"
