"""The MQTT subscriber: one gmqtt client (asyncio, on its own thread) feeding the batching writer.

* MQTT v5 **shared subscriptions** (``$share/{group}/...``, :attr:`Settings.mqtt_group`: one
  group per installation unless ``MQTT_SHARED_GROUP`` names one): replicas with distinct
  client ids split one stream, each message going to one of them. ``digitaltwin ingest
  --workers N`` runs N such replicas as processes of one command.
* A **persistent session** for a **fixed client id** (``MQTT_CLIENT_ID`` or ``--client-id``;
  ``clean_start=False``, session expiry ``MQTT_SESSION_EXPIRY``, :data:`SESSION_EXPIRY_S` by
  default): messages published while the subscriber is down are kept by the broker and
  delivered on reconnect. The broker bounds what it keeps per session (Mosquitto
  ``max_queued_messages``, 1000 by default): size it for the longest outage. The default id
  ``digitaltwin-ingest-<hostname>`` changes with the host (a recreated container), and on
  Mosquitto an offline member of a shared group keeps being handed its share until its session
  expires; such ids therefore get **no session after they disconnect** (expiry 0), so a replica
  that is gone for good takes nothing published afterwards. :meth:`MqttSubscriber.leave` ends a
  fixed id's session for good after storing what the broker still holds for it (scaling down).
* **Acknowledgement after the commit**: gmqtt with ``optimistic_acknowledgement=False`` sends a
  message's PUBACK when its ``on_message`` coroutine returns, and ours returns only once the
  writer (:mod:`digitaltwin.ingest.writer`) has committed the message's batch. The *receive
  maximum* (:data:`RECEIVE_MAXIMUM`) caps the unacknowledged messages the broker sends us,
  which is what bounds memory.
* **Reconnection**: the first connection is retried with exponential backoff from 1 s to 60 s
  (the broker may be down at start); after a connection is lost gmqtt reconnects every
  :data:`RECONNECT_DELAY_S` and the broker resends what was not acknowledged (MQTT v5 keeps
  the packet ids, so a PUBACK of a commit that finishes after the reconnect acknowledges the
  resent copy of the same message, which storage then skips as a duplicate).

Library chosen by measurement: gmqtt and paho-mqtt 2.x both let the application acknowledge
after the commit, aiomqtt 2.x does not (it acknowledges on receipt).
``bench/mqtt_client_choice.py`` receives about 1.8x faster with gmqtt than with paho-mqtt, and
end to end (``bench/mqtt_ingest.py``'s subscriber draining a backlog) the paho-mqtt version
of this module needed about 75-95 us of CPU per single-reading message against about 50 us
for this one: paho reads each packet with several small ``recv`` calls and a ``select`` per
packet, and a PUBACK sent from the writer thread wakes its network loop through a socket pair,
whereas gmqtt reads 64 KiB at a time and writes PUBACKs from the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit

import gmqtt
from gmqtt.mqtt.constants import MQTTv50

from digitaltwin.config import Settings
from digitaltwin.domain.errors import ValidationError
from digitaltwin.ingest.mqtt_payload import decode_message
from digitaltwin.ingest.mqtt_topics import subscriptions
from digitaltwin.ingest.writer import BatchingWriter, Envelope, Flush
from digitaltwin.observability.metrics import Metrics
from digitaltwin.services.live_state import LiveState
from digitaltwin.storage.repository import Repository

log = logging.getLogger(__name__)

#: Default seconds the broker keeps our session (subscriptions and queued messages) while we are
#: away: 7 days (``MQTT_SESSION_EXPIRY`` overrides it). In a shared-subscription group an offline
#: member's session keeps receiving its share on Mosquitto until it expires (docs/ingestion.md).
SESSION_EXPIRY_S = 7 * 24 * 3600
#: Unacknowledged messages the broker may have out to us (MQTT v5 Receive Maximum).
RECEIVE_MAXIMUM = 4_000
#: Seconds between keep-alive pings.
KEEPALIVE_S = 30
#: Seconds between reconnection attempts after a connection was lost.
RECONNECT_DELAY_S = 2.0
#: Seconds :meth:`MqttSubscriber.stop` waits for the disconnect and the network thread.
STOP_TIMEOUT_S = 10.0
#: Seconds without a message after which a subscriber that unsubscribed to leave its group
#: takes the broker to have sent everything it held for it (see :meth:`MqttSubscriber.leave`).
LEAVE_QUIET_S = 2.0
_SCHEMES = {"mqtt": False, "tcp": False, "mosquitto": False, "mqtts": True, "ssl": True}


def broker_address(url: str) -> tuple[str, int, bool]:
    """(host, port, tls) of ``MQTT_BROKER``: ``mqtt://host:1883``, ``mqtts://host:8883``,
    the guide's ``mosquitto://mqtt:1883``, or a bare ``host[:port]``.

    Raises:
        ValidationError: naming ``MQTT_BROKER`` for another scheme.
    """
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in _SCHEMES:
        raise ValidationError(f"unsupported broker scheme {parts.scheme!r}; use mqtt:// or mqtts://", field="MQTT_BROKER")
    tls = _SCHEMES[parts.scheme]
    return parts.hostname or "localhost", parts.port or (8883 if tls else 1883), tls


def default_client_id() -> str:
    """``digitaltwin-ingest-<hostname>``: stable across restarts of one replica, distinct between replicas."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())
    return f"digitaltwin-ingest-{host}"[:64]


def is_fixed_client_id(client_id: str) -> bool:
    """Whether ``client_id`` was chosen by the operator rather than derived from the hostname
    (:func:`default_client_id`, or a worker id ``<that>-<i>``). Only fixed ids keep a persistent
    session: a hostname changes when a container is recreated, and the old id's session would
    hold a share of the group's messages until it expired."""
    base = default_client_id()
    return not (client_id == base or (client_id.startswith(base + "-") and client_id[len(base) + 1 :].isdigit()))


class MqttSubscriber:
    """Subscribes to the telemetry topics and hands every message to a :class:`BatchingWriter`.

    The MQTT client runs on an asyncio event loop in a thread of its own (``mqtt-<client id>``);
    :meth:`start` and :meth:`stop` are called from any thread.

    Args:
        settings: ``MQTT_*`` settings (broker, credentials, client id, QoS, size limit, prefix, group).
        writer: the batching writer (started and stopped with the subscriber).
        client_id: overrides ``MQTT_CLIENT_ID``.
        receive_maximum: see :data:`RECEIVE_MAXIMUM`.
    """

    def __init__(
        self,
        settings: Settings,
        writer: BatchingWriter,
        *,
        client_id: str | None = None,
        receive_maximum: int = RECEIVE_MAXIMUM,
    ) -> None:
        if not settings.mqtt_broker:
            raise ValidationError("MQTT_BROKER is not set", field="MQTT_BROKER")
        self.settings = settings
        self.writer = writer
        self.host, self.port, self._tls = broker_address(settings.mqtt_broker)
        self.client_id = client_id or settings.mqtt_client_id or default_client_id()
        #: seconds the broker keeps our session after a disconnect: ``MQTT_SESSION_EXPIRY`` for a
        #: fixed client id, 0 for a hostname-derived one (see :func:`is_fixed_client_id`)
        self.session_expiry_s = settings.mqtt_session_expiry_s if is_fixed_client_id(self.client_id) else 0
        if self.session_expiry_s == 0:
            log.warning(
                "MQTT client id %s is derived from the host name, so the broker keeps no session for it: telemetry "
                "published while this process is down is not delivered later. Set MQTT_CLIENT_ID (one fixed id per "
                "process) to keep it (docs/ingestion.md)", self.client_id,
            )
        self.prefix = settings.mqtt_topic_prefix
        self.group = settings.mqtt_group
        self.topics: Sequence[str] = subscriptions(prefix=self.prefix, group=self.group)
        self.qos = settings.mqtt_qos
        self.receive_maximum = receive_maximum
        self._max_bytes = settings.mqtt_max_message_bytes
        self.connected = threading.Event()
        #: set once the broker confirmed the subscriptions of the current connection
        self.subscribed = threading.Event()
        self.client: gmqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._leaving = threading.Event()
        self._end_session = False
        self._last_message = time.monotonic()
        # messages waiting for their commit: our key -> the future their on_message coroutine awaits
        self._waiting: dict[int, asyncio.Future[int]] = {}
        self._next_key = 0
        writer.acknowledge = self._acknowledge

    def is_connected(self) -> bool:
        """True while connected to the broker (CONNACK received, connection open)."""
        try:
            return self.client is not None and bool(self.client.is_connected)
        except AttributeError:  # no connection object yet
            return False

    def start(self) -> None:
        """Start the writer, then connect in the background (retrying until the broker answers)."""
        self.writer.start()
        self._stopping.clear()
        self._leaving.clear()
        self._end_session = False
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(_quiet_not_committed)
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"mqtt-{self.client_id}", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._connect(), self._loop)
        log.info("MQTT subscriber %s connecting to %s:%d for %s", self.client_id, self.host, self.port, ", ".join(self.topics))

    def leave(self, *, quiet_s: float = LEAVE_QUIET_S, timeout_s: float = 120.0) -> None:
        """Leave the shared group for good: unsubscribe, store what the broker still sends (the
        messages it had queued for this client id), then stop and end the session.

        Used to scale down replicas with fixed client ids (``digitaltwin ingest --leave``): after
        it, the broker hands this id's share to the other members. The broker is taken to have
        sent everything once no message arrived for ``quiet_s`` and none waits for its commit
        (at most ``timeout_s``).
        """
        loop = self._loop
        self._leaving.set()
        if loop is not None and self.is_connected():
            try:
                asyncio.run_coroutine_threadsafe(self._unsubscribe(), loop).result(STOP_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - still ends the session below
                log.warning("MQTT unsubscribe of %s did not complete", self.client_id, exc_info=True)
            self._wait_quiet(quiet_s, timeout_s)
        self._end_session = True
        self.stop()

    def _wait_quiet(self, quiet_s: float, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self._waiting and time.monotonic() - self._last_message >= quiet_s:
                return
            time.sleep(0.05)
        log.warning("MQTT %s still received messages after %.0f s of leaving", self.client_id, timeout_s)

    def stop(self) -> None:
        """Commit and acknowledge what was received, then disconnect. A fixed client id's session
        stays on the broker; a hostname-derived one (no session after the disconnect) first
        unsubscribes and stores what the broker still sends, as :meth:`leave` does."""
        if self.session_expiry_s == 0 and not self._leaving.is_set() and not self._stopping.is_set():
            self.leave(quiet_s=0.5, timeout_s=STOP_TIMEOUT_S)
            return
        self._stopping.set()
        self.writer.stop()
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._disconnect(), loop).result(STOP_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - the broker may be gone; nothing is acknowledged early either way
                log.warning("MQTT disconnect of %s did not complete cleanly", self.client_id, exc_info=True)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(STOP_TIMEOUT_S)
            loop.close()
        self._loop = self._thread = None
        self.connected.clear()
        self.subscribed.clear()

    # -- event loop side --------------------------------------------------------------
    async def _connect(self) -> None:
        client = gmqtt.Client(
            self.client_id,
            clean_session=False,
            optimistic_acknowledgement=False,
            session_expiry_interval=self.session_expiry_s,
            receive_maximum=self.receive_maximum,
        )
        if self.settings.mqtt_username:
            client.set_auth_credentials(self.settings.mqtt_username, self.settings.mqtt_password)
        client.reconnect_delay = RECONNECT_DELAY_S
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self.client = client
        delay = 1.0
        while not self._stopping.is_set():
            try:
                await client.connect(self.host, self.port, ssl=self._tls, keepalive=KEEPALIVE_S, version=MQTTv50)
                return
            except (OSError, asyncio.TimeoutError, gmqtt.MQTTConnectError) as exc:
                log.warning("MQTT broker %s:%d not reachable (%s); retrying in %.0f s", self.host, self.port, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)

    async def _disconnect(self) -> None:
        # acknowledgements the writer handed over before it stopped are in the loop's queue ahead of
        # this coroutine; two turns let their coroutines return and gmqtt's callbacks send the PUBACKs
        for _ in range(2):
            await asyncio.sleep(0)
        self._forget_waiting()  # the writer has stopped: these were not committed, the broker redelivers them
        if self.is_connected():
            if self._end_session and self.session_expiry_s:
                # MQTT v5: a DISCONNECT may lower the session expiry to 0, which ends the session now
                await self.client.disconnect(session_expiry_interval=0)  # type: ignore[union-attr]
            else:
                await self.client.disconnect()  # type: ignore[union-attr]
        elif self.client is not None:
            self.client.stop_reconnect()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    async def _unsubscribe(self) -> None:
        client = self.client
        if client is None:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        client.on_unsubscribe = lambda *_args: done.done() or done.set_result(None)
        client.unsubscribe(list(self.topics))
        await asyncio.wait_for(done, STOP_TIMEOUT_S)

    def _forget_waiting(self) -> None:
        """End the coroutines of uncommitted messages without acknowledging them (see :class:`_NotCommitted`)."""
        waiting, self._waiting = self._waiting, {}
        for committed in waiting.values():
            if not committed.done():
                committed.set_exception(_NotCommitted())

    def _on_connect(self, client: gmqtt.Client, flags: int, rc: int, _props: object) -> None:
        if not flags and self._waiting:
            # a new session: packet ids of messages received before now may name other messages, so
            # those are not acknowledged (their readings are still committed; storage is idempotent)
            self._forget_waiting()
        if not self._leaving.is_set():
            client.subscribe([gmqtt.Subscription(topic, qos=self.qos) for topic in self.topics])
        self.connected.set()
        log.info("MQTT connected as %s (session present: %s)", self.client_id, bool(flags))

    def _on_disconnect(self, _client: gmqtt.Client, packet: object, exc: object = None) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if not self._stopping.is_set():
            log.warning("MQTT disconnected (%s); reconnecting every %.0f s", exc or packet, RECONNECT_DELAY_S)

    def _on_subscribe(self, _client: gmqtt.Client, _mid: int, granted: Sequence[int], _props: object) -> None:
        failed = [f"{code:#x}" for code in granted if code >= 0x80]
        if failed:
            log.error("MQTT subscription refused for %s: %s", ", ".join(self.topics), ", ".join(failed))
            return
        self.subscribed.set()

    async def _on_message(self, _client: gmqtt.Client, topic: str, payload: bytes, qos: int, _props: object) -> int:
        self._last_message = time.monotonic()
        decoded = decode_message(topic, payload, received_at=datetime.now(UTC), max_bytes=self._max_bytes, prefix=self.prefix)
        if not qos:
            self.writer.submit(Envelope(decoded))
            return 0
        key = self._next_key = self._next_key + 1
        committed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting[key] = committed
        self.writer.submit(Envelope(decoded, key))
        return await committed  # gmqtt sends PUBACK (QoS 1) or PUBREC (QoS 2) when this returns

    def _acknowledge(self, acks: list[int]) -> None:
        """Called by the writer after each commit: let the messages' coroutines return (which acknowledges them)."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._release, acks)
        except RuntimeError:  # the loop has closed: those messages stay unacknowledged and are redelivered
            pass

    def _release(self, acks: list[int]) -> None:
        pop = self._waiting.pop
        for key in acks:
            committed = pop(key, None)
            if committed is not None and not committed.done():
                committed.set_result(0)  # reason code 0: success


class _NotCommitted(Exception):
    """Ends the ``on_message`` coroutine of a message that must not be acknowledged; gmqtt then
    sends no PUBACK (its callback raises this), and :func:`_quiet_not_committed` keeps the loop quiet."""


def _quiet_not_committed(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    if isinstance(context.get("exception"), (_NotCommitted, asyncio.CancelledError)):
        return
    loop.default_exception_handler(context)


def build_subscriber(
    settings: Settings,
    repo: Repository,
    *,
    metrics: Metrics | None = None,
    live_state: LiveState | None = None,
    client_id: str | None = None,
) -> MqttSubscriber:
    """A subscriber with its writer, recording committed readings in ``live_state``."""
    listeners = []
    if live_state is not None:

        def record(flush: Flush) -> None:
            live_state.record(flush.readings, [(s.asset_id, s.status, s.ts) for s in flush.statuses])

        listeners.append(record)
    writer = BatchingWriter(
        repo, metrics=metrics, auto_register=settings.mqtt_auto_register, listeners=listeners,
        queue_size=RECEIVE_MAXIMUM * 2,
    )
    return MqttSubscriber(settings, writer, client_id=client_id)
