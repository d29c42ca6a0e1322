"""Publishing a schedule's setpoints to the devices over MQTT.

Each battery's plan goes to ``{MQTT_TOPIC_PREFIX}dt/{site_id}/{asset_id}/setpoint`` as one
retained QoS 1 message, so a device that (re)connects later still receives the plan in force,
and the broker has acknowledged it (PUBACK) before the schedule is marked published. The
payload is JSON: ``schedule_id``, ``version``, ``issued_at``, ``step_seconds`` and the list
``setpoints`` of ``{"ts": interval start (UTC), "power_kw": net battery power, positive
charging, "soc": planned SOC at the interval's end (fraction)}``.

paho-mqtt publishes synchronously from the request's worker thread with a short-lived
connection; the ingest subscriber (gmqtt) keeps its own connection and client id.
"""

from __future__ import annotations

import json
import logging
import ssl
import uuid
from datetime import UTC, datetime
from typing import Any

from digitaltwin.config import Settings
from digitaltwin.ingest.mqtt_subscriber import broker_address

log = logging.getLogger(__name__)

#: Seconds to wait for the broker's connection and publish acknowledgements.
PUBLISH_TIMEOUT_S = 5.0


def setpoint_topic(settings: Settings, site_id: str, asset_id: str) -> str:
    """The setpoint topic of one asset."""
    return f"{settings.mqtt_topic_prefix}dt/{site_id}/{asset_id}/setpoint"


def setpoint_payload(*, schedule_id: str, version: int, step_seconds: int, timestamps: list[str],
                     power_kw: list[float], soc: list[float]) -> bytes:
    """The JSON message of one asset's plan (see the module docstring)."""
    body = {
        "schedule_id": schedule_id,
        "version": version,
        "issued_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "step_seconds": step_seconds,
        "setpoints": [{"ts": ts, "power_kw": p, "soc": s} for ts, p, s in zip(timestamps, power_kw, soc, strict=True)],
    }
    return json.dumps(body, separators=(",", ":")).encode()


def publish_retained(settings: Settings, messages: dict[str, bytes]) -> dict[str, Any]:
    """Publish each ``topic -> payload`` retained at QoS 1; never raises.

    Returns:
        ``{"mqtt": [{"topic", "ok", "error"?}, ...]}``, or ``{"mqtt": [], "skipped": reason}``
        when ``MQTT_BROKER`` is not set.
    """
    if not messages:
        return {"mqtt": []}
    if not settings.mqtt_broker:
        return {"mqtt": [], "skipped": "MQTT_BROKER is not set"}
    import paho.mqtt.client as mqtt

    results: list[dict[str, Any]] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"digitaltwin-setpoints-{uuid.uuid4().hex[:12]}")
    try:
        host, port, tls = broker_address(settings.mqtt_broker)
        if settings.mqtt_username:
            client.username_pw_set(settings.mqtt_username, settings.mqtt_password)
        if tls:
            client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        client.connect(host, port, keepalive=30)
        client.loop_start()
        for topic, payload in messages.items():
            info = client.publish(topic, payload, qos=1, retain=True)
            info.wait_for_publish(timeout=PUBLISH_TIMEOUT_S)
            ok = info.is_published() and info.rc == mqtt.MQTT_ERR_SUCCESS
            results.append({"topic": topic, "ok": ok} | ({} if ok else {"error": "not acknowledged by the broker"}))
    except Exception as exc:  # noqa: BLE001 - a broker problem is reported with the schedule, never a 500
        log.warning("setpoint publication failed: %s", exc)
        done = {r["topic"] for r in results}
        results += [{"topic": t, "ok": False, "error": f"{type(exc).__name__}: {exc}"} for t in messages if t not in done]
    finally:
        try:
            client.loop_stop()
            client.disconnect()
        except Exception:  # noqa: BLE001
            pass
    return {"mqtt": results}
