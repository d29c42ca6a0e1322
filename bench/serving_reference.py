"""The bare reference of bench/serving_postgres.py: FastAPI + psycopg returning the last 100 readings.

No authentication, middleware, validation or ORM: one thread-local psycopg connection per worker
thread and one query. ``REF_DATABASE_URL`` names the database, ``REF_SERIES_ID`` the series.
Served by ``python bench/serving_reference.py --port N --workers 2``: each worker on its own
``SO_REUSEPORT`` socket, as ``digitaltwin serve`` does, so both spread connections the same way.
"""

from __future__ import annotations

import os
import threading

import psycopg
from fastapi import FastAPI

app = FastAPI()
_local = threading.local()
SERIES_ID = int(os.environ.get("REF_SERIES_ID", "1"))


def _conn() -> psycopg.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = psycopg.connect(os.environ["REF_DATABASE_URL"], autocommit=True)
    return conn


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/readings")
def last_readings() -> list[dict[str, object]]:
    rows = _conn().execute(
        "SELECT ts, value FROM readings WHERE series_id = %s ORDER BY ts DESC LIMIT 100", (SERIES_ID,)
    ).fetchall()
    return [{"ts": ts.isoformat(), "value": value} for ts, value in rows]


def _serve_one(port: int) -> None:
    """One worker: its own listening socket on ``port`` with SO_REUSEPORT, so the kernel spreads
    connections evenly over the workers (uvicorn's ``--workers`` shares one socket, and a burst of
    16 connections can all land on one worker, which leaves a core idle and makes the reference's
    figure a matter of luck)."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])


if __name__ == "__main__":
    import argparse
    import multiprocessing
    import signal
    import sys

    parser = argparse.ArgumentParser(description="serve the reference with N SO_REUSEPORT workers")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args()
    workers = [multiprocessing.Process(target=_serve_one, args=(options.port,)) for _ in range(options.workers)]
    for worker in workers:
        worker.start()
    # SIGTERM (the benchmark's stop) ends the workers too, through the finally below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        for worker in workers:
            worker.join()
    finally:
        for worker in workers:
            worker.terminate()
