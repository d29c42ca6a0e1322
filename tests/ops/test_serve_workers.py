"""``digitaltwin serve --workers 2`` on Linux: one SO_REUSEPORT socket per worker, a dead worker is
replaced, SIGTERM stops everything gracefully, and a second serve on the same port refuses to start.

Runs the real command on the embedded SQLite database.
"""

from __future__ import annotations

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

from digitaltwin.api.workers import reuse_port_supported

pytestmark = [
    pytest.mark.slow,  # starts real worker processes
    pytest.mark.skipif(not reuse_port_supported(), reason="SO_REUSEPORT workers are Linux only"),
]

DEADLINE_S = 120


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "PROMETHEUS_", "REDIS_", "MQTT_"))},
        "ENVIRONMENT": "test", "DATA_DIR": str(tmp_path / "data"), "MODELS_DIR": str(tmp_path / "models"),
        "LOG_DIR": str(tmp_path / "logs"), "SECRET_KEY": secrets.token_urlsafe(48),
    }


def _workers(parent: int) -> set[int]:
    """Pids of the processes listening, among ``parent``'s children."""
    children = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent and "spawn_main" in (entry / "cmdline").read_text():
                children.add(int(entry.name))
    return children


def _listening_sockets(pid: int, port: int) -> int:
    """How many listening TCP sockets on ``port`` the process ``pid`` holds (from /proc/net/tcp)."""
    inodes = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    count = 0
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A" and f"socket:[{fields[9]}]" in inodes:
            count += 1
    return count


def _listening(pid: int, port: int) -> bool:
    try:
        return _listening_sockets(pid, port) == 1
    except OSError:  # the process is gone
        return False


def _until(check, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    port = _free_port()
    output = tmp_path / "server.out"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "digitaltwin.cli", "serve", "--port", str(port), "--workers", "2"],
            cwd=tmp_path, env=_env(tmp_path), stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def healthy() -> bool:
        assert process.poll() is None, output.read_text()[-3000:]
        try:
            answered = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False
        workers = _workers(process.pid)
        return answered and len(workers) == 2 and all(_listening(pid, port) for pid in workers)

    try:
        _until(healthy, "serve did not answer with two workers")
        yield process, port, tmp_path
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_each_worker_listens_on_its_own_socket_and_a_dead_one_is_replaced(served: tuple[subprocess.Popen[bytes], int, Path]) -> None:
    process, port, tmp_path = served
    workers = _workers(process.pid)
    assert [_listening_sockets(pid, port) for pid in sorted(workers)] == [1, 1]
    assert _listening_sockets(process.pid, port) == 0  # serve itself only supervises
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    _until(
        lambda: len(_workers(process.pid) - {victim}) == 2 and all(_listening(pid, port) for pid in _workers(process.pid)),
        "the dead worker was not replaced",
    )
    for _ in range(20):  # fresh connections reach a worker every time
        with httpx.Client() as fresh:
            assert fresh.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    second = subprocess.run(
        [sys.executable, "-m", "digitaltwin.cli", "serve", "--port", str(port), "--workers", "2"],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=60,
    )
    assert second.returncode == 2 and "already in use" in second.stderr + second.stdout


def test_sigterm_stops_the_workers_gracefully(served: tuple[subprocess.Popen[bytes], int, Path]) -> None:
    process, port, tmp_path = served
    workers = _workers(process.pid)
    process.send_signal(signal.SIGTERM)  # to serve only: it forwards the signal
    assert process.wait(timeout=60) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    out = (tmp_path / "server.out").read_text()
    assert out.count("Application shutdown complete") == 2, out[-3000:]  # each worker ran the app's shutdown
