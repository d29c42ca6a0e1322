"""The production Mosquitto configuration on a real broker: password file and per-device ACL (issue 4)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from tests.conftest import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy" / "mosquitto"
SERVICE_PASSWORD = "service password 0123"
DEVICE_PASSWORD = "device password 4567"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    """A mosquitto running deploy/mosquitto/mosquitto.conf (paths and port moved into tmp_path)."""
    if shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None:
        if os.environ.get("DT_REQUIRE_POSTGRES") == "1":
            pytest.fail("mosquitto and mosquitto_passwd are required")
        pytest.skip("mosquitto not installed")
    shutil.copy(DEPLOY / "acl", tmp_path / "acl")
    env = {**os.environ, "MOSQUITTO_DIR": str(tmp_path)}
    for site, asset in (("north", "meter-a"), ("north", "meter-b")):
        subprocess.run([str(DEPLOY / "add-device.sh"), site, asset], input=DEVICE_PASSWORD + "\n", text=True, env=env, check=True)
    subprocess.run(["mosquitto_passwd", "-b", str(tmp_path / "passwd"), "digitaltwin", SERVICE_PASSWORD], check=True)
    port = _free_port()
    conf = (DEPLOY / "mosquitto.conf").read_text()
    conf = conf.replace("/mosquitto/config/", f"{tmp_path}/").replace("/mosquitto/data/", f"{tmp_path}/")
    conf = conf.replace("listener 1883", f"listener {port} 127.0.0.1").replace("log_dest stdout", f"log_dest file {tmp_path}/log")
    if os.geteuid() == 0:  # as root mosquitto would switch to user "mosquitto", who cannot read tmp_path
        conf += "\nuser root\n"
    (tmp_path / "mosquitto.conf").write_text(conf)
    process = subprocess.Popen(["mosquitto", "-c", str(tmp_path / "mosquitto.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:  # wait until it listens (not an assertion)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not start: {process.stderr.read() if process.stderr else ''}") from None
            time.sleep(0.05)
    yield port
    process.terminate()
    process.wait(timeout=10)


def _connect(port: int, username: str | None, password: str | None) -> tuple[mqtt.Client, ReasonCode]:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
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


def test_anonymous_and_wrong_passwords_are_refused(broker: int) -> None:
    for username, password in ((None, None), ("meter-a", "wrong password!"), ("nobody", DEVICE_PASSWORD)):
        client, reason = _connect(broker, username, password)
        client.loop_stop()
        client.disconnect()
        assert reason.is_failure, (username, str(reason))


def test_each_device_publishes_only_its_own_topic(broker: int) -> None:
    service, reason = _connect(broker, "digitaltwin", SERVICE_PASSWORD)
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

    device, reason = _connect(broker, "meter-a", DEVICE_PASSWORD)
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
    other, reason = _connect(broker, "meter-b", DEVICE_PASSWORD)
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
