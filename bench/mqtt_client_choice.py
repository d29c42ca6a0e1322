"""Which Python MQTT client receives QoS 1 fastest with acknowledgements we control?

The ingest path acknowledges a message only after its readings are committed, so the
client must let the application send PUBACK later (paho-mqtt ``manual_ack=True``, gmqtt
``optimistic_acknowledgement=False``); aiomqtt 2.x has no such option (its PUBACK goes out
as soon as the message is queued in memory), so it is measured for speed only.

Procedure, per client: a private Mosquitto (started here, unlimited queues, nothing else on it)
holds ``--messages`` QoS 1 messages of ~100 bytes for a persistent MQTT v5 session; the client
connects with ``clean_start=False`` and a receive maximum of ``--receive-maximum``, takes them
all and acknowledges them in groups of ``--ack-every`` (as a batching writer would). Printed:
messages/s and CPU seconds per 10,000 messages of the receiving process.

Measured on the project's 2-core machine (2026-11-29, ``--messages 50000``, acks in groups of 500):

    client           msgs/s  CPU s/10k  ack after commit?
    paho-mqtt        26,290      0.370  yes (manual_ack)
    gmqtt            47,096      0.208  yes (optimistic_acknowledgement=False)
    aiomqtt           8,550      1.167  no (acks on receipt)

The subscriber uses gmqtt (``digitaltwin.ingest.mqtt_subscriber``): end to end, with decoding and
the batching writer, the paho-mqtt version needed 75-95 us of CPU per single-reading message and
the gmqtt one about 50 us (the product drained a 60,000-message backlog at 9,000-12,000 msg/s
with paho-mqtt, 18,000-20,000 msg/s with gmqtt, without live state).

Usage: ``.venv/bin/python bench/mqtt_client_choice.py [--messages 50000]``
(needs ``mosquitto`` on PATH; aiomqtt from the ``bench`` extra). Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

PAYLOAD = b'{"ts":"2025-05-01T10:00:00.000Z","quantity":"power","value":12.5,"unit":"kW","seq":%d}'


@contextlib.contextmanager
def private_broker() -> Iterator[int]:
    """A throw-away Mosquitto on a free port with unlimited queues (so a whole run can be held)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 0\nmax_queued_bytes 0\n"
        )
        proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
                time.sleep(0.05)
            yield port
        finally:
            proc.terminate()
            proc.wait(5)


def _props(receive_maximum: int) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 600
    props.ReceiveMaximum = receive_maximum
    return props


def prepare(port: int, client_id: str, topic: str, n: int) -> None:
    """Create the persistent session with its subscription, then publish ``n`` messages into it."""
    sub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    sub.connect("127.0.0.1", port, clean_start=True, properties=_props(100))
    sub.loop_start()
    sub.subscribe(topic, qos=1)
    time.sleep(0.3)
    sub.disconnect()
    sub.loop_stop()
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"{client_id}-pub", protocol=paho.MQTTv5)
    pub.max_inflight_messages_set(1000)
    pub.max_queued_messages_set(0)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    infos = [pub.publish(topic, PAYLOAD % i, qos=1) for i in range(n)]
    for info in infos:
        info.wait_for_publish(30)
    pub.disconnect()
    pub.loop_stop()


def run_paho(port: int, client_id: str, n: int, receive_maximum: int, ack_every: int) -> None:
    done = threading.Event()
    pending: list[tuple[int, int]] = []
    count = 0

    def on_message(client: paho.Client, _userdata: object, message: paho.MQTTMessage) -> None:
        nonlocal count
        count += 1
        pending.append((message.mid, message.qos))
        if len(pending) >= ack_every or count >= n:
            for mid, qos in pending:
                client.ack(mid, qos)
            pending.clear()
        if count >= n:
            done.set()

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5, manual_ack=True)
    client.on_message = on_message
    client.connect("127.0.0.1", port, clean_start=False, properties=_props(receive_maximum))
    client.loop_start()
    if not done.wait(300):
        raise RuntimeError(f"paho received {count} of {n}")
    client.disconnect()
    client.loop_stop()


async def run_gmqtt(port: int, client_id: str, n: int, receive_maximum: int, ack_every: int) -> None:
    import gmqtt

    done = asyncio.Event()
    count = 0
    batch: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    in_batch = 0

    async def on_message(_client: object, _topic: str, _payload: bytes, _qos: int, _props: object) -> int:
        nonlocal count, batch, in_batch
        count += 1
        in_batch += 1
        mine = batch
        if in_batch >= ack_every or count >= n:
            batch.set_result(None)
            batch = asyncio.get_running_loop().create_future()
            in_batch = 0
        await mine  # the PUBACK goes out when the "commit" of this group is done
        if count >= n:
            done.set()
        return 0

    client = gmqtt.Client(client_id, clean_session=False, optimistic_acknowledgement=False,
                          session_expiry_interval=600, receive_maximum=receive_maximum)
    client.on_message = on_message
    await client.connect("127.0.0.1", port, version=gmqtt.constants.MQTTv50)
    await asyncio.wait_for(done.wait(), 300)
    await client.disconnect()


async def run_aiomqtt(port: int, client_id: str, n: int, receive_maximum: int, _ack_every: int) -> None:
    import aiomqtt

    props = _props(receive_maximum)
    async with aiomqtt.Client("127.0.0.1", port, identifier=client_id, protocol=aiomqtt.ProtocolVersion.V5,
                              clean_start=False, properties=props) as client:
        count = 0
        async for _message in client.messages:
            count += 1
            if count >= n:
                break


def measure(name: str, port: int, n: int, receive_maximum: int, ack_every: int) -> tuple[float, float]:
    client_id = f"choice-{name}-{time.monotonic_ns()}"
    topic = f"choice/{name}"
    prepare(port, client_id, topic, n)
    wall, cpu = time.perf_counter(), time.process_time()
    if name == "paho-mqtt":
        run_paho(port, client_id, n, receive_maximum, ack_every)
    elif name == "gmqtt":
        asyncio.run(run_gmqtt(port, client_id, n, receive_maximum, ack_every))
    else:
        asyncio.run(run_aiomqtt(port, client_id, n, receive_maximum, ack_every))
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--receive-maximum", type=int, default=2_000)
    parser.add_argument("--ack-every", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print(f"{args.messages} QoS 1 messages, receive maximum {args.receive_maximum}, acks in groups of {args.ack_every}")
    print(f"{'client':12} {'msgs/s':>10} {'CPU s/10k':>10}  ack after commit?")
    with private_broker() as port:
        for name, ack in (("paho-mqtt", "yes (manual_ack)"), ("gmqtt", "yes (optimistic_acknowledgement=False)"),
                          ("aiomqtt", "no (acks on receipt)")):
            try:
                runs = [measure(name, port, args.messages, args.receive_maximum, args.ack_every) for _ in range(args.repeat)]
            except ImportError:
                print(f"{name:12} not installed (pip install '.[bench]')")
                continue
            wall, cpu = min(runs)
            print(f"{name:12} {args.messages / wall:10,.0f} {cpu / args.messages * 10_000:10.3f}  {ack}")


if __name__ == "__main__":
    main()
