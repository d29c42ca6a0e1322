"""The serving process freezes its start-up heap (digitaltwin.api.server), so full collections
of the cyclic GC walk only what requests made, not the ~350,000 objects of the loaded modules.

Each server runs in its own process: freezing the pytest process's heap would leak its cycles.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from digitaltwin.api.workers import reuse_port_supported
from tests.serve_support import free_port, serving

pytestmark = pytest.mark.slow  # starts real server processes

#: A server with one route reporting what the collector holds, served by ApiServer.
PROBE = textwrap.dedent("""
    import gc, sys, weakref
    import uvicorn
    from fastapi import FastAPI
    from digitaltwin.api.server import ApiServer

    app = FastAPI()
    # Garbage in a reference cycle made before start-up, with automatic collections off so that
    # only the server's own collection can free it: the freeze must collect it, not keep it.
    gc.disable()
    class Node:
        pass
    node = Node(); node.me = node; cycle = weakref.ref(node); del node

    @app.get("/gc")
    def report() -> dict:
        return {"frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects()), "cycle_alive": cycle() is not None}

    ApiServer(uvicorn.Config(app, port=int(sys.argv[1]), log_level="warning")).run()
""")


def test_api_server_collects_then_freezes_the_start_up_heap(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", PROBE, str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stdout.read().decode()[-2000:]  # type: ignore[union-attr]
            try:
                report = httpx.get(f"http://127.0.0.1:{port}/gc", timeout=2).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the probe server did not answer"
                time.sleep(0.2)
        # FastAPI and uvicorn alone are tens of thousands of objects; all of them are frozen and
        # only what the request made is left for the collector.
        assert report["frozen"] > 20_000
        assert report["tracked"] < report["frozen"] / 10
        assert not report["cycle_alive"]
    finally:
        process.terminate()
        process.wait(30)


def _freezes(log: Path) -> list[dict[str, object]]:
    if not log.exists():
        return []
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [line for line in lines if " froze " in str(line.get("message", ""))]


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.skipif(not reuse_port_supported(), reason="Linux only"))])
def test_serve_freezes_the_heap_of_every_api_process(tmp_path: Path, workers: int) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "PROMETHEUS_", "REDIS_", "MQTT_"))},
        "ENVIRONMENT": "test", "DATA_DIR": str(tmp_path / "data"), "MODELS_DIR": str(tmp_path / "models"),
        "LOG_DIR": str(tmp_path / "logs"), "SECRET_KEY": secrets.token_urlsafe(48), "LOG_LEVEL": "INFO",
    }
    log = tmp_path / "logs" / "digital_twin.log"
    with serving(env, tmp_path / "serve.out", "--workers", str(workers)):
        deadline = time.monotonic() + 60
        while len(_freezes(log)) < workers:
            assert time.monotonic() < deadline, f"{len(_freezes(log))} of {workers} API processes froze their heap"
            time.sleep(0.2)
    processes = {str(line["message"]).split()[2] for line in _freezes(log)}
    assert len(processes) == workers  # every API process, not one of them twice
