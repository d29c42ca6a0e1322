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
from sqlalchemy.engine import make_url

from digitaltwin.config import Settings
from digitaltwin.private_files import PRIVATE_DIR_MODE, create_private_file

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: Pooled connections kept to an SQLite file (anyio's default worker-thread limit).
SQLITE_POOL_SIZE = 40


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
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


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
