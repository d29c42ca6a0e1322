"""Real dependency checks behind ``/readyz``: database, Redis, MQTT broker, models.

``/readyz`` is public, so a failing check says only which dependency fails and a generic
reason; the exception (host, port, driver message) goes to the log (``digitaltwin.readiness``).
It is also unthrottled, and the MQTT check logs in to the broker with the service's
credentials: the broker and Redis results are therefore reused for :data:`NETWORK_CHECK_TTL_S`
(:class:`ReadinessCache`), so any number of calls opens at most one connection to each per
interval and process. The database and model checks stay live.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from digitaltwin.api.deps import AppState
from digitaltwin.ingest.mqtt_subscriber import broker_address
from digitaltwin.storage.db import current_revision

#: Seconds each network check may take.
CHECK_TIMEOUT_S = 2.0
#: Seconds a broker or Redis check result is reused by ``/readyz``.
NETWORK_CHECK_TTL_S = 5.0

log = logging.getLogger("digitaltwin.readiness")


@dataclass(frozen=True, slots=True)
class Check:
    """Outcome of one dependency check."""

    name: str
    ok: bool
    detail: str


def mqtt_handshake(host: str, port: int, *, username: str | None, password: str | None) -> str:
    """Send an MQTT 3.1.1 CONNECT and read the CONNACK; returns "ok" or raises with the broker's refusal."""

    def utf8(text: str) -> bytes:
        data = text.encode()
        return struct.pack("!H", len(data)) + data

    flags = 0x02  # clean session
    payload = utf8("digitaltwin-readyz")
    if username:
        flags |= 0x80
        payload += utf8(username)
        if password:
            flags |= 0x40
            payload += utf8(password)
    variable = utf8("MQTT") + bytes([4, flags]) + struct.pack("!H", 10)
    body = variable + payload
    length, encoded = len(body), bytearray()
    while True:  # MQTT variable-length "remaining length"
        length, digit = divmod(length, 128)
        encoded.append(digit | (0x80 if length else 0))
        if not length:
            break
    packet = bytes([0x10]) + bytes(encoded) + body
    with socket.create_connection((host, port), timeout=CHECK_TIMEOUT_S) as sock:
        sock.sendall(packet)
        reply = sock.recv(4)
        sock.sendall(b"\xe0\x00")  # DISCONNECT
    if len(reply) < 4 or reply[0] != 0x20:
        raise ConnectionError("no CONNACK from broker")
    if reply[3] != 0:
        raise ConnectionError(f"broker refused the connection (CONNACK code {reply[3]})")
    return "ok"


def check_database(state: AppState) -> Check:
    try:
        state.repo.ping()
        revision = current_revision(state.repo.engine)
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        log.error("readiness: database check failed: %s: %s", type(exc).__name__, exc)
        return Check("database", False, "unreachable or failing; see the service log")
    if revision is None:
        return Check("database", False, "schema not migrated; run `digitaltwin migrate`")
    return Check("database", True, f"{state.repo.engine.dialect.name} at revision {revision}")


def check_redis(state: AppState) -> Check | None:
    if state.redis is None:
        return None
    try:
        state.redis.ping()  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001
        log.error("readiness: redis check failed: %s: %s", type(exc).__name__, exc)
        return Check("redis", False, "unreachable or failing; see the service log")
    return Check("redis", True, "ok")


def check_mqtt(state: AppState) -> Check | None:
    settings = state.settings
    if not settings.mqtt_broker:
        return None
    host, port, tls = broker_address(settings.mqtt_broker)
    try:
        if tls:
            with socket.create_connection((host, port), timeout=CHECK_TIMEOUT_S):
                detail = "tcp ok (tls broker)"
        else:
            detail = mqtt_handshake(host, port, username=settings.mqtt_username, password=settings.mqtt_password)
    except Exception as exc:  # noqa: BLE001
        log.error("readiness: mqtt check of %s:%s failed: %s: %s", host, port, type(exc).__name__, exc)
        return Check("mqtt", False, "unreachable or refusing; see the service log")
    return Check("mqtt", True, detail)


def check_models(state: AppState) -> Check:
    """Models in MODELS_DIR as last (re)loaded: not ready while an asset's champion fails to load.

    The champion (``active.json``) is what the default forecast (``algorithm=best``) serves, so
    it must load. Any other failing version (a corrupt copy, a never-activated challenger) is
    named in the detail (and counted by ``model_load_failures_total``) but the service stays
    ready: the models served before keep serving (see :mod:`digitaltwin.registry.serving`).
    The detail names models and error types only; the reasons are in ``GET /api/v1/models``
    (``load_failures``) and the log.
    """
    server = state.forecasts.server
    failures = server.failures
    champions = server.champion_failures()
    loaded = len(server.loaded)
    if not failures:
        return Check("models", True, f"{loaded} model(s) serving")
    root = str(server.registry.models_dir)
    named = "; ".join(
        f"{name.removeprefix(root).lstrip('/')}: {reason.split(':', 1)[0]}" for name, reason in sorted(failures.items())
    )
    if champions:
        detail = f"{len(champions)} champion model(s) failed to load ({loaded} serving): {named}"
        return Check("models", False, detail[:1000])
    detail = f"{len(failures)} model(s) failed to load, no champion among them ({loaded} serving): {named}"
    return Check("models", True, detail[:1000])


class ReadinessCache:
    """Results of the network checks, each reused for ``ttl_s`` seconds (one per app and process).

    A lock per check makes concurrent callers wait for one running check instead of each
    opening its own connection.
    """

    def __init__(self, ttl_s: float = NETWORK_CHECK_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._locks = {"redis": threading.Lock(), "mqtt": threading.Lock()}
        self._results: dict[str, tuple[float, Check | None]] = {}

    def get(self, name: str, check: Callable[[], Check | None]) -> Check | None:
        """The result of ``check`` (named ``redis`` or ``mqtt``), run at most once per ``ttl_s``."""
        with self._locks[name]:
            cached = self._results.get(name)
            if cached is not None and time.monotonic() < cached[0]:
                return cached[1]
            result = check()
            self._results[name] = (time.monotonic() + self.ttl_s, result)
            return result


def run_checks(state: AppState, cache: ReadinessCache | None = None) -> list[Check]:
    """All configured checks, in order; with ``cache`` the Redis and MQTT results come from it."""
    if cache is None:
        redis, mqtt = check_redis(state), check_mqtt(state)
    else:
        redis, mqtt = cache.get("redis", lambda: check_redis(state)), cache.get("mqtt", lambda: check_mqtt(state))
    checks = [check_database(state), redis, mqtt, check_models(state)]
    return [c for c in checks if c is not None]
