"""The shared-subscription group and session lifetimes on the real Mosquitto: one group per
installation by default, no session left behind by hostname-derived client ids, and scaling
fixed-id replicas down with ``digitaltwin ingest --leave`` without losing messages."""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from digitaltwin.config import Settings
from digitaltwin.ingest.mqtt_subscriber import default_client_id, is_fixed_client_id
from digitaltwin.storage.db import make_engine, migrate
from digitaltwin.storage.repository import Repository
from tests.integration.mqtt_support import (  # noqa: F401 - fixtures
    broker_url,
    child_env,
    mqtt_settings,
    publish,
    purge_session,
    register,
    running_subscriber,
    wait_for,
)
from tests.integration.test_ingest_workers import session_present
from tests.integration.test_mqtt_ingest import count, item


def _settings(**env: str) -> Settings:
    return Settings(_env_file=None, ENVIRONMENT="test", **env)  # type: ignore[call-arg]


def test_the_default_group_is_one_per_installation(tmp_path: Path) -> None:
    pg = "postgresql://dt:{}@db.example:5432/{}"
    first = _settings(DATABASE_URL=pg.format("secret-a", "plant"))
    assert first.mqtt_group is not None and first.mqtt_group.startswith("dt-")
    assert "secret" not in first.mqtt_group
    assert _settings(DATABASE_URL=pg.format("secret-b", "plant")).mqtt_group == first.mqtt_group  # same database
    assert _settings(DATABASE_URL=pg.format("secret-a", "other")).mqtt_group != first.mqtt_group
    assert _settings(DATABASE_URL=pg.format("secret-a", "plant"), MQTT_TOPIC_PREFIX="a/").mqtt_group != first.mqtt_group
    assert _settings(DATA_DIR=str(tmp_path / "a")).mqtt_group != _settings(DATA_DIR=str(tmp_path / "b")).mqtt_group
    assert _settings(DATABASE_URL=pg.format("x", "plant"), MQTT_SHARED_GROUP="fleet").mqtt_group == "fleet"
    assert _settings(DATABASE_URL=pg.format("x", "plant"), MQTT_SHARED_GROUP="").mqtt_group is None


def test_only_operator_chosen_client_ids_are_fixed() -> None:
    base = default_client_id()
    assert not is_fixed_client_id(base) and not is_fixed_client_id(f"{base}-3")
    assert is_fixed_client_id("digitaltwin-ingest") and is_fixed_client_id("digitaltwin-ingest-0")


@pytest.fixture
def other_installation(mqtt_settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, Repository]]:
    """A second installation (its own SQLite database) on the same broker and topic prefix."""
    other = mqtt_settings.model_copy(update={
        "database_url": None, "data_dir": tmp_path / "other", "redis_url": None,
        "mqtt_client_id": f"{mqtt_settings.mqtt_client_id}-other",
    })
    other.data_dir.mkdir()
    engine = make_engine(other)
    migrate(engine)
    yield other, Repository(engine)
    engine.dispose()


def test_two_installations_on_one_broker_each_store_every_message(
    mqtt_settings: Settings, repo: Repository, other_installation: tuple[Settings, Repository]
) -> None:
    """With one fixed default group the two split the stream between them, each storing part."""
    other, other_repo = other_installation
    assert mqtt_settings.mqtt_shared_group is None and other.mqtt_group != mqtt_settings.mqtt_group
    for r in (repo, other_repo):
        register(r, "site-a", "m-two")
    n = 40
    with running_subscriber(mqtt_settings, repo) as (_, first), running_subscriber(other, other_repo) as (_, second):
        publish(mqtt_settings, "dt/site-a/m-two/telemetry", [item(i) for i in range(n)])
        first.wait(n)
        second.wait(n)
    assert count(repo, "m-two") == n and count(other_repo, "m-two") == n


_REPLICA = """
import sys, threading
from digitaltwin.config import Settings
from digitaltwin.ingest.workers import run_worker
started = threading.Event()
threading.Thread(target=lambda: (started.wait(), print("ready", flush=True)), daemon=True).start()
run_worker(Settings(), client_id=sys.argv[1], stop=threading.Event(), started=started)
"""


def test_a_replica_gone_for_good_takes_nothing_published_afterwards(
    mqtt_settings: Settings, repo: Repository, tmp_path: Path
) -> None:
    """Two replicas with hostname-derived client ids in the default group; one is killed (no
    goodbye) and never comes back. Everything published afterwards is stored by the other: the
    dead one has no session that the broker would keep handing a share."""
    register(repo, "site-a", "m-gone")
    settings = mqtt_settings.model_copy(update={"mqtt_client_id": None})
    suffix = secrets.randbelow(10**6)
    survivor_id, gone_id = f"{default_client_id()}-{suffix}", f"{default_client_id()}-{suffix + 1}"
    env = {**child_env(settings, tmp_path / "logs"), "MQTT_CLIENT_ID": ""}
    gone = subprocess.Popen([sys.executable, "-c", _REPLICA, gone_id], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with running_subscriber(settings, repo, client_id=survivor_id, purge=False) as (survivor, log):
            assert gone.stdout is not None and gone.stdout.readline().strip() == "ready", gone.stderr.read() if gone.stderr else ""
            publish(settings, "dt/site-a/m-gone/telemetry", [item(i) for i in range(20)])
            wait_for(lambda: count(repo, "m-gone") == 20, what="the first 20 stored by both replicas")
            assert 0 < log.messages < 20  # both replicas took a share
            gone.send_signal(signal.SIGKILL)
            gone.wait(10)
            time.sleep(1.0)  # let the broker read the closed connection (not an assertion)
            before = log.messages
            publish(settings, "dt/site-a/m-gone/telemetry", [item(i) for i in range(20, 60)])
            log.wait(before + 40)
            assert survivor.session_expiry_s == 0
    finally:
        if gone.poll() is None:
            gone.kill()
            gone.wait(10)
    assert count(repo, "m-gone") == 60
    assert not session_present(settings, gone_id)


def test_scaling_fixed_replicas_down_with_leave_loses_nothing(
    mqtt_settings: Settings, repo: Repository, tmp_path: Path
) -> None:
    """Replica b (a fixed id, persistent session) stops for good while messages keep coming; its
    share waits in its session until ``digitaltwin ingest --leave`` stores it and ends the
    session, after which replica a gets the whole stream."""
    register(repo, "site-a", "m-down")
    tag = mqtt_settings.mqtt_client_id
    keep, retire = f"{tag}-a", f"{tag}-b"
    topic = "dt/site-a/m-down/telemetry"
    with running_subscriber(mqtt_settings, repo, client_id=keep) as (_, kept):
        with running_subscriber(mqtt_settings, repo, client_id=retire, purge=False) as (retired, _):
            assert retired.session_expiry_s == mqtt_settings.mqtt_session_expiry_s > 0
        publish(mqtt_settings, topic, [item(i) for i in range(40)])
        wait_for(lambda: kept.messages > 0, what="a share for the kept replica")
        time.sleep(0.5)
        assert kept.messages < 40  # the rest waits in b's session (probing it would consume it)
        done = subprocess.run(
            [sys.executable, "-m", "digitaltwin.cli", "ingest", "--leave", retire],
            env=child_env(mqtt_settings, tmp_path / "logs"), capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert count(repo, "m-down") == 40  # b's share was stored by --leave
        assert not session_present(mqtt_settings, retire)
        before = kept.messages
        publish(mqtt_settings, topic, [item(i) for i in range(40, 80)])
        kept.wait(before + 40)
    assert count(repo, "m-down") == 80
    purge_session(mqtt_settings, retire)
