"""Defaults that are security decisions, on the embedded database as on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from digitaltwin.config import Settings


def test_mqtt_messages_never_create_assets_unless_asked(tmp_path: Path) -> None:
    embedded = Settings(_env_file=None, DATA_DIR=tmp_path, DATABASE_URL=None)
    postgres = Settings(_env_file=None, DATABASE_URL="postgresql://u@db:5432/d")
    assert embedded.embedded and not embedded.mqtt_auto_register
    assert not postgres.mqtt_auto_register
    assert Settings(_env_file=None, DATA_DIR=tmp_path, MQTT_AUTO_REGISTER_ASSETS="true").mqtt_auto_register
