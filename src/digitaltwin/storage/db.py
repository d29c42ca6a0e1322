"""Engine factory and schema migration.

SQLite (the embedded default) gets WAL journaling and foreign keys; PostgreSQL
uses psycopg 3. :func:`migrate` runs the Alembic migrations shipped inside the
package, so ``digitaltwin migrate`` works from an installed wheel too.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text

from digitaltwin.config import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: Pooled connections kept to an SQLite file (anyio's default worker-thread limit).
SQLITE_POOL_SIZE = 40


def make_engine(settings: Settings, *, echo: bool = False) -> Engine:
    """Create the engine for the configured database (creating ``DATA_DIR`` for SQLite)."""
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
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
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


def alembic_config(engine: Engine, *, timescaledb: str = "auto") -> Config:
    """An Alembic config bound to ``engine`` (no ``alembic.ini`` needed); ``timescaledb`` is the
    ``TIMESCALEDB`` mode the migrations follow (:mod:`digitaltwin.storage.timescale`)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    cfg.attributes["timescaledb"] = timescaledb
    return cfg


def migrate(engine: Engine, revision: str = "head", *, timescaledb: str = "auto") -> None:
    """Bring the database to ``revision`` (default: the latest schema).

    ``timescaledb``: ``auto``, ``on`` or ``off`` (setting ``TIMESCALEDB``), whether readings become a
    hypertable on PostgreSQL. Raises RuntimeError for ``on`` when the server cannot.
    """
    command.upgrade(alembic_config(engine, timescaledb=timescaledb), revision)


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
