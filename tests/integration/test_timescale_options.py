"""``TIMESCALEDB=auto|on|off`` and the readings indexes, on the real local PostgreSQL (no TimescaleDB
on it: the server-side probe is real, the "installed but not preloaded" answer is checked through
:func:`use_timescaledb` with the probe's result spelled out) and SQLite."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from sqlalchemy import create_engine, inspect, text

from digitaltwin.config import Settings
from digitaltwin.storage.db import current_revision, head_revision, make_engine, migrate
from digitaltwin.storage.timescale import ServerSupport, probe, use_timescaledb
from tests.conftest import fresh_postgres_database

NOT_PRELOADED = ServerSupport(available=True, preloaded=False, installed=False)
ABSENT = ServerSupport(available=False, preloaded=False, installed=False)
USABLE = ServerSupport(available=True, preloaded=True, installed=False)
INSTALLED = ServerSupport(available=True, preloaded=True, installed=True)


@pytest.mark.parametrize(
    ("mode", "support", "expected"),
    [
        ("auto", USABLE, True), ("auto", INSTALLED, True), ("auto", NOT_PRELOADED, False), ("auto", ABSENT, False),
        ("on", USABLE, True), ("on", INSTALLED, True),
        ("off", USABLE, False), ("off", INSTALLED, False), ("off", NOT_PRELOADED, False),
    ],
)
def test_decision(mode: str, support: ServerSupport, expected: bool) -> None:
    assert use_timescaledb(mode, support) is expected


def test_auto_warns_naming_what_is_missing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="digitaltwin.storage.timescale"):
        assert not use_timescaledb("auto", NOT_PRELOADED)
    assert "shared_preload_libraries" in caplog.text


@pytest.mark.parametrize("support", [NOT_PRELOADED, ABSENT])
def test_on_refuses_a_server_that_cannot(support: ServerSupport) -> None:
    with pytest.raises(RuntimeError, match="TIMESCALEDB=on"):
        use_timescaledb("on", support)


def _tables(url: str) -> set[str]:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_postgres_without_timescaledb_migrates_plain(mode: str) -> None:
    with fresh_postgres_database("dt_tsdb") as url:
        engine = make_engine(Settings(_env_file=None, DATABASE_URL=url))
        try:
            with engine.connect() as conn:
                assert probe(conn) == ServerSupport(False, False, False)  # this server: plain PostgreSQL
            migrate(engine, timescaledb=mode)
            assert current_revision(engine) == head_revision()
            with engine.connect() as conn:
                indexes = conn.execute(text("SELECT indexname FROM pg_indexes WHERE tablename = 'readings'")).scalars().all()
            assert "readings_ts_idx" not in indexes and len(indexes) == 1  # the primary key only
        finally:
            engine.dispose()
        assert {"readings", "series", "sites"} <= _tables(url)


def test_migrate_command_with_timescaledb_on_fails_cleanly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with fresh_postgres_database("dt_tsdb") as url:
        env = {"DATABASE_URL": url, "TIMESCALEDB": "on", "DATA_DIR": str(tmp_path), "LOG_DIR": str(tmp_path), "PATH": ""}
        result = subprocess.run(
            [sys.executable, "-m", "digitaltwin.cli", "migrate"], env=env, capture_output=True, text=True, timeout=120,
            cwd=tmp_path,
        )
        assert result.returncode == 2, result.stderr
        assert "TIMESCALEDB=on" in result.stderr
        assert "readings" not in _tables(url)


def test_sqlite_ignores_the_setting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(Settings(_env_file=None, DATA_DIR=tmp_path))
    migrate(engine, timescaledb="on")
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_postgres_series_check_is_a_statement_trigger_and_downgrades_to_the_foreign_key() -> None:
    from alembic import command

    from digitaltwin.storage.db import alembic_config

    with fresh_postgres_database("dt_tsdb") as url:
        engine = make_engine(Settings(_env_file=None, DATABASE_URL=url))
        try:
            migrate(engine, timescaledb="off")

            def state() -> tuple[list[str], list[str]]:
                with engine.connect() as conn:
                    fks = conn.execute(text(
                        "SELECT conname FROM pg_constraint WHERE conrelid = 'readings'::regclass AND contype = 'f'"
                    )).scalars().all()
                    triggers = conn.execute(text(
                        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgrelid IN ('readings'::regclass, 'series'::regclass) "
                        "ORDER BY tgname"
                    )).scalars().all()
                return list(fks), list(triggers)

            assert state() == ([], ["readings_series_insert", "readings_series_update", "series_readings_delete"])
            command.downgrade(alembic_config(engine), "0004")
            assert state() == (["fk_readings_series_id_series"], [])
            migrate(engine)
            assert state()[0] == []
        finally:
            engine.dispose()
