"""The MQTT subscriber: one paho-mqtt client feeding the batching writer.

* MQTT v5 **shared subscriptions** (``$share/{MQTT_SHARED_GROUP}/...``): replicas with distinct
  client ids split one stream, each message going to one of them.
* A **persistent session** (``clean_start=False``, session expiry :data:`SESSION_EXPIRY_S`):
  messages published while the subscriber is down are kept by the broker and delivered on
  reconnect, so the client id must be stable per replica (``MQTT_CLIENT_ID``; default
  ``digitaltwin-ingest-<hostname>``). The broker bounds what it keeps per session
  (Mosquitto ``max_queued_messages``, 1000 by default): size it for the longest outage.
* **Manual acknowledgement**: PUBACK is sent by the writer after the commit
  (:mod:`digitaltwin.ingest.writer`); the *receive maximum* (:data:`RECEIVE_MAXIMUM`) caps
  the unacknowledged messages the broker sends us, which is what bounds memory.
* **Reconnection** with exponential backoff from 1 s to 60 s (paho's ``reconnect_delay_set``),
  including when the broker is down at start.

Library chosen by measurement (``bench/mqtt_client_choice.py``): paho-mqtt 2.x and gmqtt both
let the application acknowledge after the commit, aiomqtt 2.x does not (it acknowledges on
receipt) and received 4x slower; see that script's docstring for the figures.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from digitaltwin.config import Settings
from digitaltwin.domain.errors import ValidationError
from digitaltwin.ingest.mqtt_payload import decode_message
from digitaltwin.ingest.mqtt_topics import subscriptions
from digitaltwin.ingest.writer import BatchingWriter, Envelope, Flush
from digitaltwin.observability.metrics import Metrics
from digitaltwin.services.live_state import LiveState
from digitaltwin.storage.repository import Repository

log = logging.getLogger(__name__)

#: Seconds the broker keeps our session (subscriptions and queued messages) while we are away: 7 days.
SESSION_EXPIRY_S = 7 * 24 * 3600
#: Unacknowledged messages the broker may have out to us (MQTT v5 Receive Maximum).
RECEIVE_MAXIMUM = 4_000
#: Seconds between keep-alive pings.
KEEPALIVE_S = 30
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


class MqttSubscriber:
    """Subscribes to the telemetry topics and hands every message to a :class:`BatchingWriter`.

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
        self.host, self.port, tls = broker_address(settings.mqtt_broker)
        self.client_id = client_id or settings.mqtt_client_id or default_client_id()
        self.prefix = settings.mqtt_topic_prefix
        self.topics: Sequence[str] = subscriptions(prefix=self.prefix, group=settings.mqtt_shared_group or None)
        self.qos = settings.mqtt_qos
        self.connected = threading.Event()
        #: set once the broker confirmed the subscriptions of the current connection
        self.subscribed = threading.Event()
        self._properties = Properties(PacketTypes.CONNECT)
        self._properties.SessionExpiryInterval = SESSION_EXPIRY_S
        self._properties.ReceiveMaximum = receive_maximum
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5, manual_ack=True
        )
        if settings.mqtt_username:
            client.username_pw_set(settings.mqtt_username, settings.mqtt_password)
        if tls:
            client.tls_set()
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self.client = client

    def start(self) -> None:
        """Start the writer, then connect in the background (retrying until the broker answers)."""
        self.writer.start()
        self.client.connect_async(self.host, self.port, keepalive=KEEPALIVE_S, clean_start=False, properties=self._properties)
        self.client.loop_start()
        log.info("MQTT subscriber %s connecting to %s:%d for %s", self.client_id, self.host, self.port, ", ".join(self.topics))

    def stop(self) -> None:
        """Commit and acknowledge what was received, then disconnect (the session stays on the broker)."""
        self.writer.stop()
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()
        self.subscribed.clear()

    # -- paho callbacks (network thread) -------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _userdata: object, flags: mqtt.ConnectFlags, reason: object, _props: object) -> None:
        if getattr(reason, "is_failure", False):
            log.error("MQTT broker refused %s: %s", self.client_id, reason)
            return
        client.subscribe([(topic, SubscribeOptions(qos=self.qos)) for topic in self.topics])
        self.connected.set()
        log.info("MQTT connected as %s (session present: %s)", self.client_id, flags.session_present)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: object, _flags: object, reason: object, _props: object) -> None:
        self.connected.clear()
        self.subscribed.clear()
        log.warning("MQTT disconnected (%s); reconnecting with backoff", reason)

    def _on_subscribe(self, _client: mqtt.Client, _userdata: object, _mid: int, reasons: list[object], _props: object) -> None:
        failed = [str(r) for r in reasons if getattr(r, "is_failure", False)]
        if failed:
            log.error("MQTT subscription refused for %s: %s", ", ".join(self.topics), ", ".join(failed))
            return
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        decoded = decode_message(
            message.topic,
            message.payload,
            received_at=datetime.now(UTC),
            max_bytes=self.settings.mqtt_max_message_bytes,
            prefix=self.prefix,
        )
        mid, qos = message.mid, message.qos
        ack = (lambda: client.ack(mid, qos)) if qos > 0 else None
        self.writer.submit(Envelope(decoded, ack))


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
