"""A real ``digitaltwin serve`` child process on a test's database, for security tests that must see
what uvicorn does to a request (proxy headers, client addresses) and what several requests in
flight do to the process."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from digitaltwin.config import Settings
from tests.integration.mqtt_support import child_env
from tests.serve_support import free_port, serving

__all__ = ["Served", "free_port", "serve"]


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
    with serving(child, folder / "server.out", cwd=folder) as (base, process):
        yield Served(base, process, folder)
