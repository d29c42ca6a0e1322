"""Migration 0012 (issued forecasts, alarms, webhooks, notifications) up and down on SQLite and PostgreSQL,
with the one-open-alarm-per-asset-and-type key enforced by the database."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import inspect

from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.monitoring.alarms import Alarm, AlarmState, Severity
from digitaltwin.storage.db import current_revision, make_engine, migrate
from digitaltwin.storage.monitoring_store import ForecastPoint, MonitoringStore
from digitaltwin.storage.repository import Repository
from tests.integration.test_site_attributes_migration import empty_settings  # noqa: F401 - the fixture

TABLES = {"issued_forecasts", "issued_forecast_points", "alarms", "webhooks", "alarm_notifications", "detector_settings"}
NOW = datetime(2025, 5, 1, tzinfo=UTC)


def test_upgrade_store_and_downgrade(empty_settings) -> None:  # noqa: ANN001, F811
    from alembic import command

    from digitaltwin.storage.db import alembic_config

    engine = make_engine(empty_settings)
    try:
        migrate(engine, "0012")
        assert TABLES <= set(inspect(engine).get_table_names())
        repo = Repository(engine)
        repo.create_site(Site("s", "S", "UTC"))
        repo.create_asset(Asset("a", "s", "A", AssetKind.METER))
        store = MonitoringStore(engine)
        issued = store.save_forecast("a", "external:v", NOW, 3600, [ForecastPoint(NOW, 1.5, {0.1: 1.0, 0.9: 2.0})])
        frame = store.forecast_points("a", start=NOW, end=NOW.replace(day=2))
        assert issued.points == 1 and frame["q_low"].tolist() == [1.0] and frame["q_high_level"].tolist() == [0.9]
        alarm = Alarm(None, "a", "s", "stale_device", Severity.WARNING, AlarmState.ACTIVE, NOW, NOW, 1.0, {"actual": 1})
        first = store.insert_alarm(alarm)
        assert first is not None and first.id is not None
        assert store.insert_alarm(alarm) is None  # a second open alarm of the same asset and type is refused
        store.update_alarm(first.__class__(**{**{f: getattr(first, f) for f in first.__slots__},
                                             "state": AlarmState.CLEARED, "cleared_at": NOW}))
        assert store.insert_alarm(alarm) is not None  # once cleared, a new one may open (history kept)
        assert len(store.list_alarms(asset_id="a")) == 2
        command.downgrade(alembic_config(engine), "0011")
        assert current_revision(engine) == "0011"
        assert not TABLES & set(inspect(engine).get_table_names())
        migrate(engine)  # and up again
        assert TABLES <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
