"""Pooled PostgreSQL connections ended by the server are replaced at checkout, without a ping per checkout."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text

from digitaltwin.config import Settings
from digitaltwin.storage import db
from digitaltwin.storage.db import make_engine, read_engine


def test_a_terminated_connection_is_replaced_at_checkout(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    if not settings.database_url:
        pytest.skip("PostgreSQL only")
    engine = make_engine(settings)
    reads = read_engine(engine)
    try:
        with reads.connect() as conn:
            first = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        with psycopg.connect(settings.database_url, autocommit=True) as admin:  # the server ends it
            admin.execute("SELECT pg_terminate_backend(%s)", (first,))
            admin.execute("SELECT pg_sleep(0.2)")
        with reads.connect() as conn:  # used a moment ago, so not pinged: the socket tells
            second = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        assert second != first
        calls: list[object] = []
        original = engine.dialect.do_ping
        monkeypatch.setattr(engine.dialect, "do_ping", lambda conn: calls.append(conn) or original(conn))
        for _ in range(3):
            with reads.connect() as conn:
                conn.execute(text("SELECT 1"))
        assert calls == []  # recently used: no round trip to check it
        monkeypatch.setattr(db, "POOL_PING_IDLE_S", 0.0)
        with reads.connect() as conn:
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar() == second
        assert len(calls) == 1  # idle longer than POOL_PING_IDLE_S: pinged
    finally:
        engine.dispose()


def test_reads_send_no_begin_or_rollback(settings: Settings) -> None:
    if not settings.database_url:
        pytest.skip("PostgreSQL only")
    engine = make_engine(settings)
    try:
        with read_engine(engine).connect() as conn:
            raw = conn.connection.driver_connection
            assert raw.autocommit  # psycopg sends no BEGIN, SQLAlchemy no ROLLBACK at checkin
            conn.execute(text("SELECT 1"))
            assert raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with engine.begin() as conn:  # writes keep their transaction on the same pool
            raw = conn.connection.driver_connection
            assert not raw.autocommit
            conn.execute(text("SELECT 1"))
            assert raw.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    finally:
        engine.dispose()
