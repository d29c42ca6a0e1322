"""The hottest reads on the event loop: psycopg's async connections, on PostgreSQL only.

A dashboard polls a page of readings and its kept energy answers (one statement each, see
:meth:`~digitaltwin.storage.repository.Repository.read_page` and
:mod:`digitaltwin.storage.energy_fingerprint`) far more often than anything else. Run as plain
``def`` routes, each request goes to a worker thread and back (about a sixth of its CPU in
bench/serving_postgres.py: the thread pool's queue, its wake-up and the lock hand-overs) to wait
about 0.1 ms for PostgreSQL. Here the same statements are awaited on the event loop with
psycopg's ``AsyncConnection`` from a ``psycopg_pool.AsyncConnectionPool`` (the pool of psycopg's
authors), and the answers are built by the same functions as the synchronous path, so both give
identical rows. SQLite has no such driver: there the routes keep the thread pool.

Connections are in autocommit (one statement each: under READ COMMITTED it takes its own snapshot,
as in a transaction) and in ``TimeZone=UTC`` like the engine's
(:func:`~digitaltwin.storage.db.utc_session_options`). A connection is checked without a round
trip when it leaves the pool (its socket must have nothing to say: an idle PostgreSQL connection
receives nothing, so news means the server ended it); one that fails during a statement is
dropped by the pool, and the statement is tried once more on another connection, so a database
restart costs no request once the server is back. While the pool has no connection to give (the
database was unreachable and the pool reconnects with a back-off), reads run on the engine's pool
in a worker thread, as on SQLite.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import anyio
import anyio.to_thread
import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import Engine

from digitaltwin.storage import energy_fingerprint as fingerprint
from digitaltwin.storage.db import fetch_autocommit, socket_has_news, utc_session_options
from digitaltwin.storage.repository import ReadingPage, decode_cursor, page_from_rows_postgres, page_statement_postgres

log = logging.getLogger(__name__)

#: Connections the pool keeps open, and the most it opens (per API process).
MIN_CONNECTIONS = 2
MAX_CONNECTIONS = 10
#: Seconds a read waits for a free connection of the pool before it is run on the engine's pool in
#: a worker thread instead (see :meth:`AsyncReads.fetch`). The reads take about a millisecond, so
#: a second's wait means the pool has no connection to give: the database was unreachable and the
#: pool is reconnecting with its back-off (several seconds after the server is back).
CHECKOUT_TIMEOUT_S = 1.0


async def _check(conn: psycopg.AsyncConnection[Any]) -> None:
    """Refuse a pooled connection whose server has spoken while it was idle (see the module doc)."""
    if conn.closed or socket_has_news(conn):
        # closed first: the pool takes a refused connection back, and keeps it unless it is closed
        await conn.close()
        raise psycopg.OperationalError("the server closed the pooled connection")


class AsyncReads:
    """A pool of async autocommit connections to the engine's PostgreSQL database.

    Args:
        engine: the app's PostgreSQL engine (its URL, password included, names the database).

    Raises:
        ValueError: the engine is not PostgreSQL's.
    """

    def __init__(self, engine: Engine) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("async reads need PostgreSQL")
        self.engine = engine
        url = engine.url.set(drivername="postgresql")
        rendered = url.render_as_string(hide_password=False)
        self.pool = AsyncConnectionPool(
            rendered,
            min_size=MIN_CONNECTIONS,
            max_size=MAX_CONNECTIONS,
            timeout=CHECKOUT_TIMEOUT_S,
            kwargs={"autocommit": True, "options": utc_session_options(rendered)},
            check=_check,
            open=False,
            name="async-reads",
        )

    async def open(self) -> None:
        """Open the pool (call from the app's lifespan; connections are made in the background)."""
        await self.pool.open(wait=False)

    async def close(self) -> None:
        """Close the pool and its connections."""
        await self.pool.close()

    async def fetch(self, sql: str, params: dict[str, object]) -> list[tuple[Any, ...]]:
        """The rows of one read-only statement; once more if the first try failed.

        A connection that failed is dropped by the pool and the statement is tried on another.
        When the pool has no connection to give within :data:`CHECKOUT_TIMEOUT_S` (the database
        was unreachable and the pool is still reconnecting), the statement runs on the engine's
        pool in a worker thread (:func:`~digitaltwin.storage.db.fetch_autocommit`, the same rows),
        which connects on demand: a database that is down is answered at once (503) instead of
        after the wait, and one that is back is read at once.

        Raises:
            psycopg.OperationalError, sqlalchemy.exc.OperationalError: the database is
                unreachable (the API answers 503).
        """
        try:
            return await self._fetch(sql, params)
        except PoolTimeout:
            return await anyio.to_thread.run_sync(fetch_autocommit, self.engine, sql, params)
        except psycopg.OperationalError as exc:  # the pool has dropped that connection
            log.warning("async read failed (%s); trying another connection", str(exc).splitlines()[0][:200])
            try:
                return await self._fetch(sql, params)
            except PoolTimeout:
                return await anyio.to_thread.run_sync(fetch_autocommit, self.engine, sql, params)

    async def _fetch(self, sql: str, params: dict[str, object]) -> list[tuple[Any, ...]]:
        # getconn/putconn rather than the pool's connection() context: in autocommit there is no
        # transaction for its connection context to end, and the two context managers cost about
        # 4 % of a readings request; putconn drops a connection left broken or mid-statement.
        conn = await self.pool.getconn()
        try:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall()
        finally:
            # Shielded: a request cancelled by its timeout (an anyio cancel scope, which cancels
            # every await inside it) must still give the connection back, or the pool runs dry.
            with anyio.CancelScope(shield=True):
                await self.pool.putconn(conn)

    async def read_page(
        self, asset_id: str, *, start: datetime | None = None, end: datetime | None = None, quantity: str | None = None,
        limit: int = 1000, cursor: str | None = None, asset_must_exist: bool = False,
    ) -> ReadingPage:
        """:meth:`Repository.read_page <digitaltwin.storage.repository.Repository.read_page>` on the event loop (same arguments, errors and page)."""
        after = decode_cursor(cursor) if cursor is not None else None
        sql, params = page_statement_postgres(asset_id, start, end, quantity, limit, after)
        return page_from_rows_postgres(await self.fetch(sql, params), asset_id, limit, asset_must_exist)

    async def energy_fingerprint(self, asset_id: str) -> list[tuple[Any, ...]]:
        """:func:`~digitaltwin.storage.energy_fingerprint.energy_fingerprint` on the event loop (the same rows)."""
        rows = await self.fetch(fingerprint.SQL_POSTGRES, fingerprint.params_postgres(asset_id))
        return [tuple(row) for row in rows]
