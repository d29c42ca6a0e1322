"""Start a real ``digitaltwin serve`` child process, wait until it answers ``/healthz``, stop it.

Shared by every test that needs what only the real server does (uvicorn's handling of headers and
connections, several workers, signals, files and logs it creates).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

#: Workers import pandas and LightGBM, and the machine may be busy with other tests.
STARTUP_DEADLINE_S = 180


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(env: dict[str, str], output: Path, *args: str, cwd: Path | None = None, port: int | None = None,
            deadline_s: float = STARTUP_DEADLINE_S) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``python -m digitaltwin.cli serve --port PORT *args`` and yield ``(base URL, process)``
    once ``/healthz`` answers 200.

    The process gets its own session, so the SIGTERM (then SIGKILL after 60 s) on exit reaches its
    workers too. Its output goes to ``output``, whose tail is in the failure message when the
    server exits or does not answer within ``deadline_s``.

    Raises:
        AssertionError: the server exited or did not answer in time.
    """
    port = port or free_port()
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "digitaltwin.cli", "serve", "--port", str(port), *args],
            cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + deadline_s
        while True:
            if process.poll() is not None:
                raise AssertionError(f"serve exited with {process.returncode}: {output.read_text(errors='replace')[-3000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"serve did not answer /healthz: {output.read_text(errors='replace')[-3000:]}")
            time.sleep(0.3)
        yield base, process
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group, SIGKILL after 60 s."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        process.wait()
