"""The production Mosquitto configuration on a real broker: a service listener and a device
listener with their own password files and ACLs, per-device topics, client ids bound to device
user names, and what deploy/mosquitto/add-device.sh refuses."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from digitaltwin.config import Settings
from digitaltwin.storage.repository import Repository
from tests.conftest import REPO_ROOT
from tests.integration.mqtt_support import register, running_subscriber, wait_for

DEPLOY = REPO_ROOT / "deploy" / "mosquitto"
SERVICE_PASSWORD = "service password 0123"
DEVICE_PASSWORD = "device password 4567"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Broker:
    """A private mosquitto on the product's configuration: its two listeners and its config folder."""

    service_port: int
    device_port: int
    folder: Path


def _start_broker(tmp_path: Path) -> Iterator[Broker]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None:
        if os.environ.get("DT_REQUIRE_POSTGRES") == "1":
            pytest.fail("mosquitto and mosquitto_passwd are required")
        pytest.skip("mosquitto not installed")
    shutil.copy(DEPLOY / "acl", tmp_path / "acl")
    shutil.copy(DEPLOY / "service.acl", tmp_path / "service.acl")
    env = {**os.environ, "MOSQUITTO_DIR": str(tmp_path)}
    for site, asset in (("north", "meter-a"), ("north", "meter-b")):
        subprocess.run([str(DEPLOY / "add-device.sh"), site, asset], input=DEVICE_PASSWORD + "\n", text=True, env=env, check=True)
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(tmp_path / "service.passwd"), "digitaltwin", SERVICE_PASSWORD], check=True)
    service_port, device_port = _free_port(), _free_port()
    conf = (DEPLOY / "mosquitto.conf").read_text()
    assert "\nlistener 1884\n" in conf and "\nlistener 1883\n" in conf
    conf = conf.replace("/mosquitto/config/", f"{tmp_path}/").replace("/mosquitto/data/", f"{tmp_path}/")
    conf = conf.replace("\nlistener 1884\n", f"\nlistener {service_port} 127.0.0.1\n")
    conf = conf.replace("\nlistener 1883\n", f"\nlistener {device_port} 127.0.0.1\n")
    conf = conf.replace("log_dest stdout", f"log_dest file {tmp_path}/log")
    if os.geteuid() == 0:  # as root mosquitto would switch to user "mosquitto", who cannot read tmp_path
        conf += "\nuser root\n"
    (tmp_path / "mosquitto.conf").write_text(conf)
    process = subprocess.Popen(["mosquitto", "-c", str(tmp_path / "mosquitto.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    for port in (service_port, device_port):
        while True:  # wait until it listens (not an assertion)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not start: {process.stderr.read() if process.stderr else ''}") from None
                time.sleep(0.05)
    try:
        yield Broker(service_port, device_port, tmp_path)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A mosquitto running deploy/mosquitto/mosquitto.conf (paths and ports moved into tmp_path),
    with the service account and the devices meter-a and meter-b of site north."""
    yield from _start_broker(tmp_path / "mosquitto")


def _connect(
    port: int, username: str | None, password: str | None, *, client_id: str = ""
) -> tuple[mqtt.Client, ReasonCode]:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    if username:
        client.username_pw_set(username, password)
    done = threading.Event()
    result: list[ReasonCode] = []

    def on_connect(_c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
        result.append(reason)
        done.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert done.wait(10), "no CONNACK"
    return client, result[0]


def test_anonymous_and_wrong_passwords_are_refused(broker: Broker) -> None:
    for username, password in ((None, None), ("meter-a", "wrong password!"), ("nobody", DEVICE_PASSWORD)):
        for port in (broker.service_port, broker.device_port):
            client, reason = _connect(port, username, password)
            client.loop_stop()
            client.disconnect()
            assert reason.is_failure, (username, port, str(reason))


def test_each_listener_accepts_only_its_own_accounts(broker: Broker) -> None:
    """Devices cannot log in on the service listener, the service account not on the device listener."""
    for port, username, password in (
        (broker.service_port, "meter-a", DEVICE_PASSWORD),
        (broker.device_port, "digitaltwin", SERVICE_PASSWORD),
    ):
        client, reason = _connect(port, username, password)
        client.loop_stop()
        client.disconnect()
        assert reason.is_failure, (username, port, str(reason))


def test_each_device_publishes_only_its_own_topic(broker: Broker) -> None:
    service, reason = _connect(broker.service_port, "digitaltwin", SERVICE_PASSWORD)
    assert not reason.is_failure
    received: list[str] = []
    got_allowed = threading.Event()
    subscribed = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        received.append(message.topic)
        if message.topic == "dt/north/meter-a/telemetry":
            got_allowed.set()

    service.on_message = on_message
    service.on_subscribe = lambda *_args: subscribed.set()
    service.subscribe("dt/+/+/telemetry", qos=1)
    assert subscribed.wait(10)

    device, reason = _connect(broker.device_port, "meter-a", DEVICE_PASSWORD)
    assert not reason.is_failure
    # Denied first, allowed last: QoS 1 from one client keeps its order, so a denied message
    # that got through would arrive before the allowed one.
    for topic in ("dt/north/meter-b/telemetry", "dt/south/meter-a/telemetry", "factory/l1/meter-a/power", "dt/north/meter-a/telemetry"):
        device.publish(topic, b'{"ts": "2024-01-01T00:00:00Z", "power_kw": 1}', qos=1).wait_for_publish(10)
    assert got_allowed.wait(10)
    assert received == ["dt/north/meter-a/telemetry"]
    # A device cannot read other devices' telemetry either: the broker grants the subscription
    # but delivers nothing. meter-b publishes; once the service has it, a round trip of meter-a
    # (QoS 1 PUBACK, queued after any delivery to it) proves nothing was delivered to meter-a.
    spied: list[str] = []
    device.on_message = lambda _c, _u, message: spied.append(message.topic)
    spy_subscribed = threading.Event()
    device.on_subscribe = lambda *_args: spy_subscribed.set()
    device.subscribe("dt/+/+/telemetry", qos=1)
    assert spy_subscribed.wait(10)
    other, reason = _connect(broker.device_port, "meter-b", DEVICE_PASSWORD)
    assert not reason.is_failure
    got_b = threading.Event()
    service.on_message = lambda _c, _u, message: got_b.set() if message.topic == "dt/north/meter-b/telemetry" else None
    other.publish("dt/north/meter-b/telemetry", b"{}", qos=1).wait_for_publish(10)
    assert got_b.wait(10)
    device.publish("dt/north/meter-a/telemetry", b"{}", qos=1).wait_for_publish(10)
    assert spied == []
    other.loop_stop()
    other.disconnect()
    for client in (service, device):
        client.loop_stop()
        client.disconnect()


def test_a_device_cannot_take_over_the_service_client_id(broker: Broker, settings: Settings, repo: Repository) -> None:
    """The ingest subscriber holds ``digitaltwin-ingest`` on the service listener; a device logs in
    with that client id on the device listener. The broker gives the device its user name as
    client id instead, the service stays connected, and what another device publishes meanwhile
    is stored."""
    service_settings = settings.model_copy(update={
        "mqtt_broker": f"mqtt://127.0.0.1:{broker.service_port}", "mqtt_username": "digitaltwin",
        "mqtt_password": SERVICE_PASSWORD, "mqtt_topic_prefix": "", "mqtt_client_id": "digitaltwin-ingest",
        "mqtt_auto_register_assets": False, "mqtt_shared_group": "",
    })
    register(repo, "north", "meter-a", "meter-b")
    with running_subscriber(service_settings, repo, client_id="digitaltwin-ingest", purge=False) as (subscriber, log):
        disconnects: list[object] = []
        assert subscriber.client is not None
        on_disconnect = subscriber.client.on_disconnect
        subscriber.client.on_disconnect = lambda *args: (disconnects.append(args), on_disconnect(*args))
        intruder, reason = _connect(broker.device_port, "meter-a", DEVICE_PASSWORD, client_id="digitaltwin-ingest")
        assert not reason.is_failure, str(reason)  # let in, but as "meter-a"
        other, reason = _connect(broker.device_port, "meter-b", DEVICE_PASSWORD)
        assert not reason.is_failure
        for minute in range(10):
            payload = f'{{"ts": "2024-01-01T00:{minute:02d}:00Z", "power_kw": {minute}}}'.encode()
            other.publish("dt/north/meter-b/telemetry", payload, qos=1).wait_for_publish(10)
        log.wait(10)
        assert subscriber.is_connected() and disconnects == []
        for client in (intruder, other):
            client.loop_stop()
            client.disconnect()
    assert [row.value for row in repo.read_page("meter-b", limit=100).rows] == [float(m) for m in range(10)]
    broker_log = (broker.folder / "log").read_text()
    assert "as meter-a" in broker_log and "already connected, closing old connection" not in broker_log


def _add_device(broker: Broker, *args: str, password: str = DEVICE_PASSWORD, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DEPLOY / "add-device.sh"), *args], input=password + "\n", text=True, capture_output=True,
        env={**os.environ, "MOSQUITTO_DIR": str(broker.folder), **env},
    )


def test_add_device_refuses_reserved_and_existing_names(broker: Broker) -> None:
    acl_before = (broker.folder / "acl").read_text()
    passwd_before = (broker.folder / "passwd").read_text()
    for name in ("digitaltwin", "digitaltwin-ingest", "digitaltwin-ingest-0", "DigitalTwin-dev", "meter-a"):
        result = _add_device(broker, "south", name)
        assert result.returncode == 2, (name, result.stdout, result.stderr)
    # a custom service user and client id are reserved too, and so is every user of service.passwd
    subprocess.run(["mosquitto_passwd", "-b", str(broker.folder / "service.passwd"), "plant-svc", SERVICE_PASSWORD], check=True)
    for name in ("plant-svc", "plant-ingest", "plant-ingest-3"):
        result = _add_device(broker, "south", name, MQTT_CLIENT_ID="plant-ingest")
        assert result.returncode == 2, (name, result.stdout, result.stderr)
    assert (broker.folder / "acl").read_text() == acl_before
    assert (broker.folder / "passwd").read_text() == passwd_before
    # re-keying needs --rekey and the same site; the old password stops working after a reload
    assert _add_device(broker, "--rekey", "south", "meter-a", password="new password 8901").returncode == 2
    assert _add_device(broker, "--rekey", "north", "meter-a", password="new password 8901").returncode == 0
    assert (broker.folder / "acl").read_text() == acl_before
    assert (broker.folder / "passwd").read_text() != passwd_before


def test_add_device_checks_the_acl_block_it_reports(broker: Broker) -> None:
    """An ACL in which a later "user" line would take the device's topic lines, or a block that
    grants more than the reported topic, is refused instead of being reported as the device's topic."""
    acl = broker.folder / "acl"
    acl.write_text(acl.read_text() + "\nuser meter-c\ntopic write dt/#\n")
    result = _add_device(broker, "north", "meter-c")
    assert result.returncode == 2 and "exists already" in result.stderr
    result = _add_device(broker, "--rekey", "north", "meter-c")
    assert result.returncode == 2 and "not exactly" in result.stderr
    result = _add_device(broker, "north", "meter-d")
    assert result.returncode == 0, result.stderr
    assert "user meter-d\ntopic write dt/north/meter-d/telemetry\ntopic read dt/north/meter-d/setpoint\n" in acl.read_text()


def test_readyz_logs_in_to_the_broker_at_most_once_per_interval(broker: Broker, settings: Settings, repo: Repository) -> None:
    """/readyz is public and unthrottled, and its MQTT check logs in with the service's
    credentials: 30 calls make one broker connection (the result is reused for a few seconds)."""
    from fastapi.testclient import TestClient

    from digitaltwin.api.app import create_app

    checked = settings.model_copy(update={
        "mqtt_broker": f"mqtt://127.0.0.1:{broker.service_port}", "mqtt_username": "digitaltwin",
        "mqtt_password": SERVICE_PASSWORD, "mqtt_api_subscriber": False,
    })
    with TestClient(create_app(checked)) as client:
        for _ in range(30):
            response = client.get("/readyz")
            assert response.status_code == 200 and response.json()["checks"]["mqtt"]["ok"], response.text
    wait_for(lambda: "as digitaltwin-readyz" in (broker.folder / "log").read_text(), what="the broker's log line")
    assert (broker.folder / "log").read_text().count("as digitaltwin-readyz") == 1
