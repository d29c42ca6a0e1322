"""A real ``digitaltwin serve`` child process on a test's database, for security tests that must see
what uvicorn does to a request (proxy headers, client addresses) and what several requests in
flight do to the process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from digitaltwin.config import Settings
from tests.integration.mqtt_support import child_env

STARTUP_DEADLINE_S = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Served:
    """A running serve: its base URL, process and folder (logs in ``folder / "logs"``)."""

    base: str
    process: subprocess.Popen[bytes]
    folder: Path

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in (self.folder / "logs").glob("*.log*"))


@contextmanager
def serve(settings: Settings, folder: Path, **env: str) -> Iterator[Served]:
    """Run ``python -m digitaltwin.cli serve`` on ``settings``' database with extra environment ``env``.

    Without an MQTT broker; the process is stopped (SIGTERM, then SIGKILL) on exit.
    """
    folder.mkdir(parents=True, exist_ok=True)
    child = child_env(settings.model_copy(update={"mqtt_broker": None}), folder / "logs")
    child.pop("MQTT_BROKER", None)
    child.update(env)
    port = free_port()
    output = folder / "server.out"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "digitaltwin.cli", "serve", "--port", str(port)],
            cwd=folder, env=child, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        while True:
            if process.poll() is not None:
                raise AssertionError(f"serve exited: {output.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"serve did not answer /healthz: {output.read_text()[-3000:]}")
            time.sleep(0.3)
        yield Served(base, process, folder)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
