"""The bare reference of bench/serving_postgres.py: FastAPI + psycopg returning the last 100 readings.

No authentication, middleware, validation or ORM: one thread-local psycopg connection per worker
thread and one query. ``REF_DATABASE_URL`` names the database, ``REF_SERIES_ID`` the series.
Served by ``uvicorn --workers 2 --app-dir bench serving_reference:app``.
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
