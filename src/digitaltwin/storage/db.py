"""Engine factory and schema migration.

SQLite (the embedded default) gets WAL journaling and foreign keys; PostgreSQL
uses psycopg 3. :func:`migrate` runs the Alembic migrations shipped inside the
package, so ``digitaltwin migrate`` works from an installed wheel too.
"""

from __future__ import annotations

import select
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.engine import make_url

from digitaltwin.config import Settings
from digitaltwin.private_files import PRIVATE_DIR_MODE, create_private_file

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: Pooled connections kept to an SQLite file (anyio's default worker-thread limit).
SQLITE_POOL_SIZE = 40
#: A pooled PostgreSQL connection idle for longer than this is pinged before use (seconds).
POOL_PING_IDLE_S = 30.0
_POLL_ANY = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP


def make_engine(settings: Settings, *, echo: bool = False) -> Engine:
    """Create the engine for the configured database (creating ``DATA_DIR`` for SQLite)."""
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        # the file holds password hashes and MFA secrets: owner-only folder and file (SQLite
        # creates its -wal and -shm files with the database file's permissions)
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
        create_private_file(Path(make_url(url).database or ""))
        # A file database's connections are cheap to keep and costly to churn (each new one runs the
        # PRAGMAs below and starts with a cold page cache): keep as many as the API's worker threads
        # (anyio's default limit, 40) can hold at once instead of QueuePool's default 5 + 10 overflow.
        engine = create_engine(
            url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=SQLITE_POOL_SIZE, max_overflow=SQLITE_POOL_SIZE // 2,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    engine = create_engine(url, echo=echo, pool_size=10, max_overflow=20, connect_args={"options": utc_session_options(url)})
    check_pooled_connections(engine)
    return engine


def utc_session_options(url: str) -> str:
    """libpq ``options`` of a PostgreSQL URL with ``-c TimeZone=UTC`` added (after any the URL gives).

    No statement of the product depends on the session's time zone (every instant is a
    ``timestamptz`` bound and read as an aware datetime), but psycopg parses each ``timestamptz``
    into the session's zone: for a server zone such as ``Etc/UTC`` that is a ``ZoneInfo``, which
    costs about a third of fetching a page of 100 readings and leaves every row to be converted to
    ``datetime.timezone.utc`` afterwards. With the session in ``UTC`` psycopg returns
    ``timezone.utc`` datetimes directly (psycopg's ``_tz.get_tzinfo``).
    """
    given = make_url(url).query.get("options")
    given = given[-1] if isinstance(given, tuple) else given
    return f"{given} -c TimeZone=UTC" if given else "-c TimeZone=UTC"


#: The attribute of an engine that holds its :func:`read_engine`.
_READ_ENGINE_ATTRIBUTE = "_digitaltwin_read_engine"


def read_engine(engine: Engine) -> Engine:
    """``engine`` for reads of one statement per connection: in autocommit on PostgreSQL.

    A plain ``engine.connect()`` in psycopg's default mode sends ``BEGIN`` before the first query
    and SQLAlchemy sends ``ROLLBACK`` when the connection goes back to the pool: three round trips
    for one ``SELECT``. Under PostgreSQL's default READ COMMITTED each statement takes its own
    snapshot anyway, so a read-only block sees the same data without the transaction. Shares
    ``engine``'s pool (SQLAlchemy switches the connection's mode at checkout and back at checkin,
    locally). Never for a block that writes: each statement would commit alone. SQLite: ``engine``.
    """
    if engine.dialect.name != "postgresql":
        return engine
    # Made once per engine and kept on it: building an option engine costs about 35 us (it copies
    # the engine and registers an event listener), and stores made per request ask for it each time.
    reads = engine.__dict__.get(_READ_ENGINE_ATTRIBUTE)
    if reads is None:
        reads = engine.execution_options(isolation_level="AUTOCOMMIT")
        setattr(engine, _READ_ENGINE_ATTRIBUTE, reads)
    return reads


def fetch_autocommit(engine: Engine, sql: str, params: dict[str, object]) -> list[tuple[Any, ...]]:
    """The rows of one read-only statement on a pooled psycopg connection, run in autocommit.

    What ``read_engine(engine).connect()`` does for one statement (no ``BEGIN``/``ROLLBACK``
    round trips), without SQLAlchemy's ``Connection`` and its isolation-level switch and reset
    around the checkout (about 20 us of a 170 us page read). The connection goes back to the pool
    in its default mode; after any error it is invalidated instead (closed and replaced), so a
    connection still in autocommit can never reach a caller that expects a transaction.
    """
    fairy = engine.raw_connection()  # the pool's checkout, with its liveness check (storage/db.py)
    try:
        driver = fairy.driver_connection
        driver.autocommit = True  # type: ignore[union-attr]
        rows = driver.execute(sql, params).fetchall()  # type: ignore[union-attr]
        driver.autocommit = False  # type: ignore[union-attr]
    except BaseException:
        fairy.invalidate()
        raise
    finally:
        fairy.close()
    return rows


def socket_has_news(dbapi_connection: object) -> bool:
    """True when an idle connection's socket is readable or closed: the server said something
    (a termination notice, an EOF) although no query is running."""
    try:
        poller = select.poll()
        poller.register(dbapi_connection.fileno(), _POLL_ANY)  # type: ignore[attr-defined]
        return bool(poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return True


def check_pooled_connections(engine: Engine) -> None:
    """Check each PostgreSQL connection as it leaves the pool, without a round trip when it was used recently.

    SQLAlchemy's ``pool_pre_ping`` sends a query on every checkout: a round trip per checkout,
    several per API request. Instead:

    * a connection back in the pool for less than :data:`POOL_PING_IDLE_S` is checked locally:
      its socket is polled without waiting; an idle PostgreSQL connection receives nothing, so a
      readable or hung-up socket means the server ended it (a restart, ``pg_terminate_backend``,
      an idle timeout: the server sends its FATAL notice and closes);
    * one idle for longer is pinged (``SELECT 1``), as ``pool_pre_ping`` would, which also catches
      a silently dropped network path (no close ever arrives).

    A failed check raises ``DisconnectionError``, on which the pool drops the connection and
    hands out a new one (SQLAlchemy's "pessimistic disconnect handling" with a custom check).
    """

    @event.listens_for(engine, "connect")
    def _connected(dbapi_connection, record) -> None:  # type: ignore[no-untyped-def]
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _returned(dbapi_connection, record) -> None:  # type: ignore[no-untyped-def]
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_connection, record, proxy) -> None:  # type: ignore[no-untyped-def]
        if socket_has_news(dbapi_connection):
            raise exc.DisconnectionError("the server closed the pooled connection")
        if time.monotonic() - record.info.get("returned_at", 0.0) > POOL_PING_IDLE_S:
            try:
                engine.dialect.do_ping(dbapi_connection)  # what pool_pre_ping runs (no transaction left open)
            except Exception as error:  # noqa: BLE001 - any failure: a new connection
                raise exc.DisconnectionError(f"ping failed: {error}") from error


def alembic_config(engine: Engine, settings: Settings | None = None, *, timescaledb: str = "auto") -> Config:
    """An Alembic config bound to ``engine`` (no ``alembic.ini`` needed).

    ``settings`` reach the migrations as ``config.attributes["settings"]``: migration 0005 needs
    the key that encrypts TOTP secrets, which is never in the database. ``timescaledb`` is the
    ``TIMESCALEDB`` mode the migrations follow (:mod:`digitaltwin.storage.timescale`).
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    cfg.attributes["timescaledb"] = timescaledb
    if settings is not None:
        cfg.attributes["settings"] = settings
    return cfg


def head_revision() -> str:
    """The newest schema revision the package ships (what :func:`migrate` brings a database to)."""
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return str(ScriptDirectory.from_config(cfg).get_current_head())


def migrate(engine: Engine, revision: str = "head", *, settings: Settings | None = None, timescaledb: str | None = None) -> None:
    """Bring the database to ``revision`` (default: the latest schema).

    ``settings`` give the migrations the keys they need (see :func:`alembic_config`); without
    them a migration that must encrypt existing data stops with a RuntimeError. ``timescaledb``:
    ``auto``, ``on`` or ``off`` (default: ``settings.timescaledb``, else ``auto``), whether readings
    become a hypertable on PostgreSQL; RuntimeError for ``on`` when the server cannot.
    """
    mode = timescaledb or (settings.timescaledb if settings is not None else "auto")
    command.upgrade(alembic_config(engine, settings, timescaledb=mode), revision)


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at, or None before the first migration."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def has_timescaledb(engine: Engine) -> bool:
    """True when the TimescaleDB extension is installed in the database."""
    if engine.dialect.name != "postgresql":
        return False
    with engine.connect() as conn:
        return bool(conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")).scalar())
