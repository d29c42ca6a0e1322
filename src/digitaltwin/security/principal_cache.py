"""Per-process cache of the principals behind access tokens, invalidated by a shared counter.

Without it every request read the session, its user and the role's MFA policy from the
database (one join, plus the pool's pre-ping). With it a warm process answers from memory:
the entry of a session is used while a *security epoch* counter shared by all processes is
unchanged. Every write that can end or change an access token's meaning (logout and session
revocation, a password change, deactivation, a role or MFA change, a role's MFA policy) bumps
the counter after its commit (:class:`~digitaltwin.security.store.SecurityStore` calls
``on_change``), so the next request in any process sees the new counter and reads the
database again: a token stops working at once, in every worker, as before.

Where the counter lives (:func:`epoch_for`):

* ``REDIS_URL`` set: a Redis key (``INCR`` to bump, read on every request, a fraction of the
  database join's cost). The rate limiter reads it in the same Redis round trip as its count
  and leaves it in the request's state (:data:`EPOCH_STATE_KEY`), so a cached session costs no
  round trip of its own and is answered on the event loop. Redis unreachable: the request reads
  the database (no cache).
* the embedded SQLite database: an 8-byte file in ``DATA_DIR`` read with ``pread`` (no round
  trip); every process on the host shares it, as they share the database file.
* PostgreSQL without Redis: none; processes may run on several hosts with nothing shared but
  the database, so every request reads the database as before.

Entries also expire after ``AUTH_CACHE_SECONDS`` (a change made by hand in the database,
bypassing the product, is seen within that time) and never outlive their session.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from digitaltwin.config import Settings
from digitaltwin.security.principal import Principal

log = logging.getLogger(__name__)

#: Sessions kept per process (least recently used dropped first).
MAX_ENTRIES = 10_000
#: Key of the security epoch in ``scope["state"]`` when the rate limiter read it along with its count.
EPOCH_STATE_KEY = "security_epoch"


def epoch_key(prefix: str) -> str:
    """The Redis key of the security epoch of a deployment whose keys start with ``prefix`` (``RATE_LIMIT_KEY_PREFIX``)."""
    return f"{prefix}:security-epoch"


class Epoch(Protocol):
    """A counter shared by all processes of one deployment.

    ``local`` is True when reading it costs no round trip (it may then be read on the event loop).
    """

    local: bool

    def read(self) -> int | None:
        """The current value; None when it cannot be read (then nothing is cached or served from cache)."""

    def bump(self) -> None:
        """Advance the counter (after a committed change)."""


class RedisEpoch:
    """The counter as a Redis key (``<prefix>:security-epoch``)."""

    local = False

    def __init__(self, url: str, *, password: str | None = None, prefix: str = "digitaltwin") -> None:
        import redis

        self.key = epoch_key(prefix)
        self.client = redis.Redis.from_url(url, password=password, socket_timeout=0.5, socket_connect_timeout=0.5)

    def read(self) -> int | None:
        try:
            value = self.client.get(self.key)
        except Exception:  # noqa: BLE001 - Redis down: read the database instead
            return None
        return int(value) if value is not None else 0

    def bump(self) -> None:
        try:
            self.client.incr(self.key)
        except Exception:  # noqa: BLE001
            log.error("could not advance %s in Redis: cached sessions in other processes end within AUTH_CACHE_SECONDS", self.key)


class FileEpoch:
    """The counter as 8 bytes of a file shared by the processes of one host (``DATA_DIR``)."""

    local = True

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def read(self) -> int | None:
        data = os.pread(self.fd, 8, 0)
        return int.from_bytes(data, "big") if len(data) == 8 else 0

    def bump(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            current = self.read() or 0
            os.pwrite(self.fd, (current + 1).to_bytes(8, "big"), 0)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)


def epoch_for(settings: Settings) -> Epoch | None:
    """The shared counter for ``settings`` (see the module docstring); None: no cache."""
    if settings.auth_cache_seconds <= 0:
        return None
    if settings.redis_url:
        return RedisEpoch(settings.redis_url, password=settings.redis_password, prefix=settings.rate_limit_key_prefix)
    if settings.embedded:
        return FileEpoch(settings.data_dir / "security-epoch")
    return None


@dataclass(frozen=True, slots=True)
class _Entry:
    principal: Principal
    session_expires_at: datetime
    epoch: int
    stored_at: float


class PrincipalCache:
    """Principals of sessions, keyed by (user id, session id), valid while the epoch is unchanged.

    Args:
        epoch: the shared counter.
        ttl_s: longest time an entry is used (``AUTH_CACHE_SECONDS``).
        monotonic: clock of ``ttl_s``.
    """

    def __init__(self, epoch: Epoch, *, ttl_s: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.epoch = epoch
        self.ttl_s = ttl_s
        self.monotonic = monotonic
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str], epoch: int, now: datetime) -> Principal | None:
        """The cached principal of ``key`` if stored under ``epoch``, fresh, and its session open at ``now``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.epoch != epoch or self.monotonic() - entry.stored_at > self.ttl_s or entry.session_expires_at <= now:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry.principal

    def put(self, key: tuple[str, str], principal: Principal, session_expires_at: datetime, epoch: int) -> None:
        """Remember ``principal``, read from the database after the counter showed ``epoch``."""
        with self._lock:
            self._entries[key] = _Entry(principal, session_expires_at, epoch, self.monotonic())
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)
