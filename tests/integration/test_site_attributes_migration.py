"""Migration 0008 (site attributes) on SQLite and PostgreSQL: existing sites get ``{}`` and keep
their assets both ways (SQLite runs with foreign keys on, so a rebuilt ``sites`` table would
cascade-delete them)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from digitaltwin.config import Settings
from digitaltwin.domain.assets import Site
from digitaltwin.storage.db import current_revision, make_engine, migrate
from digitaltwin.storage.repository import Repository
from tests.conftest import TEST_SECRET_KEY, fresh_postgres_database


@pytest.fixture(params=["sqlite", "postgres"])
def empty_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    def make(url: str | None) -> Settings:
        return Settings(_env_file=None, ENVIRONMENT="test", DATABASE_URL=url, DATA_DIR=tmp_path / "data",
                        MODELS_DIR=tmp_path / "models", LOG_DIR=tmp_path / "logs", REDIS_URL=None, MQTT_BROKER=None,
                        SECRET_KEY=TEST_SECRET_KEY)
    if request.param == "sqlite":
        yield make(None)
        return
    with fresh_postgres_database("dt_mig") as url:
        yield make(url)


def test_upgrade_and_downgrade_keep_sites_and_assets(empty_settings: Settings) -> None:
    from alembic import command

    from digitaltwin.storage.db import alembic_config

    engine = make_engine(empty_settings)
    try:
        migrate(engine, "0004")
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO sites (id, name, timezone, country, created_at) VALUES ('s', 'S', 'UTC', NULL, :t)"),
                         {"t": int(now.timestamp() * 1e6) if engine.dialect.name == "sqlite" else now})
            conn.execute(text("INSERT INTO assets (id, site_id, name, kind, attributes, created_at) VALUES ('a', 's', 'A', 'meter', '{}', :t)"),
                         {"t": int(now.timestamp() * 1e6) if engine.dialect.name == "sqlite" else now})
        migrate(engine, "0008")
        repo = Repository(engine)
        assert repo.get_site("s").attributes == {}
        repo.update_site(Site("s", "S", "UTC", None, {"co2_factor_g_per_kwh": 436.0}))
        assert repo.get_site("s").attributes == {"co2_factor_g_per_kwh": 436.0}
        assert repo.known_asset_ids(["a"]) == {"a"}
        command.downgrade(alembic_config(engine), "0004")
        assert current_revision(engine) == "0004"
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM assets")).scalar() == 1
            assert conn.execute(text("SELECT count(*) FROM sites")).scalar() == 1
    finally:
        engine.dispose()
