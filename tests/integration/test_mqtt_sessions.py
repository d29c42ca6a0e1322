"""MQTT_SESSION_EXPIRY reaches the broker: an orphaned session (a client id that never returns)
stops holding its share of a shared subscription once it expires (docs/ingestion.md,
"Client ids and orphaned sessions"). Real Mosquitto."""

from __future__ import annotations

import time

from digitaltwin.config import Settings
from digitaltwin.storage.repository import Repository
from tests.integration.mqtt_support import (  # noqa: F401
    broker_url,
    mqtt_settings,
    purge_session,
    running_subscriber,
)
from tests.integration.test_ingest_workers import session_present


def test_the_session_expiry_setting_bounds_how_long_a_session_outlives_its_subscriber(
    mqtt_settings: Settings, repo: Repository
) -> None:
    cid = mqtt_settings.mqtt_client_id or ""
    short = mqtt_settings.model_copy(update={"mqtt_session_expiry_s": 1})
    with running_subscriber(short, repo, purge=False):
        pass
    time.sleep(3)  # Mosquitto removes expired sessions in its main loop, about once a second
    assert not session_present(short, cid)

    with running_subscriber(mqtt_settings, repo, purge=False):  # the default: 7 days
        pass
    time.sleep(3)
    try:
        assert session_present(mqtt_settings, cid)
    finally:
        purge_session(mqtt_settings, cid)
