"""Pooled PostgreSQL connections ended by the server are replaced at checkout, without a ping per checkout."""

from __future__ import annotations

import asyncio
import socket

import anyio
import psycopg
import pytest
from sqlalchemy import text

from digitaltwin.config import Settings
from digitaltwin.storage import async_reads, db
from digitaltwin.storage.async_reads import AsyncReads
from digitaltwin.storage.db import make_engine, read_engine
from digitaltwin.storage.repository import Repository


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


def test_the_event_loops_connections_survive_their_backends_ending(settings: Settings) -> None:
    """storage/async_reads.py: connections ended by the server (a restart, an idle timeout) are
    refused at checkout by their socket, or replaced after failing, and the read still succeeds."""
    if not settings.database_url:
        pytest.skip("PostgreSQL only")
    engine = make_engine(settings)

    async def scenario() -> tuple[set[int], set[int]]:
        reads = AsyncReads(engine)
        await reads.open()
        try:
            await reads.pool.wait()
            before = {row[0] for _ in range(4) for row in await reads.fetch("SELECT pg_backend_pid()", {})}
            with psycopg.connect(settings.database_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '' AND pid = ANY(%s)",
                              (list(before),))
            after = {row[0] for _ in range(4) for row in await reads.fetch("SELECT pg_backend_pid()", {})}
            return before, after
        finally:
            await reads.close()

    try:
        before, after = asyncio.run(scenario())
        assert before and after and not before & after
    finally:
        engine.dispose()


def test_readings_answer_503_when_the_event_loops_database_is_unreachable(
    settings: Settings, repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not settings.database_url:
        pytest.skip("PostgreSQL only")
    from fastapi.testclient import TestClient

    from digitaltwin.api.app import create_app
    from digitaltwin.security.roles import Role
    from tests.api.conftest import headers_for

    monkeypatch.setattr(async_reads, "CHECKOUT_TIMEOUT_S", 0.5)
    with TestClient(create_app(settings)) as client:
        headers = headers_for(client, Role.VIEWER)
        state = client.app.state.dt  # type: ignore[attr-defined]
        with socket.socket() as closed:  # a port nothing listens on
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        dead = make_engine(Settings(_env_file=None, DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/none"))
        working, state.async_reads = state.async_reads, AsyncReads(dead)
        client.portal.call(state.async_reads.open)
        try:
            response = client.get("/api/v1/assets/anything/readings", headers=headers)
            assert response.status_code == 503, response.text
            assert response.json() == {"detail": "database unavailable; retry later", "field": None}
            assert response.headers["Retry-After"] == "5"
        finally:
            client.portal.call(state.async_reads.close)
            state.async_reads = working
            dead.dispose()
        assert client.get("/api/v1/assets/anything/readings", headers=headers).status_code == 404


def test_a_read_cancelled_by_a_timeout_gives_its_connection_back(settings: Settings) -> None:
    """The API's timeout cancels a handler's awaits (an anyio cancel scope): a read cancelled in the
    middle of its statement must still return its connection, else the pool runs dry."""
    if not settings.database_url:
        pytest.skip("PostgreSQL only")
    engine = make_engine(settings)

    async def scenario() -> tuple[int, list[tuple[object, ...]]]:
        reads = AsyncReads(engine)
        await reads.open()
        try:
            for _ in range(async_reads.MAX_CONNECTIONS + 2):  # more cancellations than connections
                with anyio.move_on_after(0.05):
                    await reads.fetch("SELECT pg_sleep(1)", {})
            # every connection back (the cancelled ones replaced): all of them can be used at once
            with anyio.fail_after(5):
                results = []

                async def one() -> None:
                    results.extend(await reads.fetch("SELECT pg_sleep(0.2), 1", {}))

                async with anyio.create_task_group() as group:
                    for _ in range(async_reads.MAX_CONNECTIONS):
                        group.start_soon(one)
            stats = reads.pool.get_stats()
            return stats["requests_waiting"], [row[1:] for row in results[:1]] + [(len(results),)]
        finally:
            await reads.close()

    try:
        waiting, rows = anyio.run(scenario)
        assert waiting == 0 and rows == [(1,), (async_reads.MAX_CONNECTIONS,)]
    finally:
        engine.dispose()


def test_reads_go_to_the_engine_while_the_event_loops_pool_cannot_connect(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the pool has no connection to give (reconnecting after an outage, with its back-off),
    a read runs on the engine's pool in a worker thread and gets the same rows."""
    if not settings.database_url:
        pytest.skip("PostgreSQL only")
    from psycopg_pool import AsyncConnectionPool

    monkeypatch.setattr(async_reads, "CHECKOUT_TIMEOUT_S", 0.3)
    engine = make_engine(settings)
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]

    async def scenario() -> list[tuple[object, ...]]:
        reads = AsyncReads(engine)
        reads.pool = AsyncConnectionPool(f"postgresql://postgres@127.0.0.1:{port}/none", min_size=1, open=False,
                                         timeout=async_reads.CHECKOUT_TIMEOUT_S)
        await reads.pool.open(wait=False)
        try:
            return await reads.fetch("SELECT %(x)s::int", {"x": 7})
        finally:
            await reads.pool.close(timeout=0.1)

    try:
        assert asyncio.run(scenario()) == [(7,)]
    finally:
        engine.dispose()
