"""Fixtures on real databases: every storage test runs on SQLite and on PostgreSQL.

PostgreSQL comes from ``DT_TEST_POSTGRES_URL`` (default: the local server as
``postgres``). Each test session creates its own database and drops it at the
end. Without a reachable server the PostgreSQL variants are skipped, unless
``DT_REQUIRE_POSTGRES=1`` (set by ``.ci/run``), which turns that into a failure.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from digitaltwin.demo_data import STEEL_CSV
from digitaltwin.config import Settings
from digitaltwin.storage.db import make_engine, migrate
from digitaltwin.storage.repository import Repository
from digitaltwin.storage.tables import metadata

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
REPO_ROOT = Path(__file__).resolve().parents[1]
#: A random signing key per test session (ENVIRONMENT=test refuses weak keys).
TEST_SECRET_KEY = uuid.uuid4().hex + uuid.uuid4().hex


def _pg_admin_url() -> str:
    url = os.environ.get("DT_TEST_POSTGRES_URL", DEFAULT_PG)
    return url.replace("postgresql://", "postgresql+psycopg://", 1).replace("postgres://", "postgresql+psycopg://", 1)


@contextlib.contextmanager
def fresh_postgres_database(prefix: str = "dt_test") -> Iterator[str]:
    """URL (guide's ``postgresql://`` form) of a new database on the test server, dropped on exit.

    Skips when the server is unreachable, or fails under ``DT_REQUIRE_POSTGRES=1``.
    """
    admin_url = _pg_admin_url()
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("DT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required but unreachable at {admin_url}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {admin_url}: {exc}")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url.replace("postgresql+psycopg://", "postgresql://", 1)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for this test session (see :func:`fresh_postgres_database`)."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for one backend, with data, models and logs in a temporary folder."""
    database_url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    return Settings(
        _env_file=None,
        ENVIRONMENT="test",
        DATABASE_URL=database_url,
        DATA_DIR=tmp_path / "data",
        MODELS_DIR=tmp_path / "models",
        LOG_DIR=tmp_path / "logs",
        REDIS_URL=None,
        MQTT_BROKER=None,
        SECRET_KEY=TEST_SECRET_KEY,  # security: outside development a strong key is required
        API_RATE_LIMIT=10_000,  # security: one test client makes many requests; limit tests set their own
        AUTH_RATE_LIMIT=10_000,  # the login routes' own per-client limit; the tests of that limit set their own
        JOBS_IN_PROCESS=True,  # the app runs submitted trainings and backtests on PostgreSQL too (off there by default)
    )


@pytest.fixture
def repo(settings: Settings) -> Iterator[Repository]:
    """A migrated, empty database on the parametrised backend."""
    engine = make_engine(settings)
    migrate(engine)
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    yield Repository(engine)
    engine.dispose()


@pytest.fixture
def redis_url() -> str:
    """The test Redis (``DT_TEST_REDIS_URL``); skipped when unreachable, failed when CI requires the services."""
    import redis

    url = os.environ.get("DT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        if os.environ.get("DT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"Redis required but unreachable at {url}: {exc}")
        pytest.skip(f"Redis unreachable at {url}: {exc}")
    return url
