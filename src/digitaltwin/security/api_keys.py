"""API keys for devices and integrations: scoped, optionally limited to one site, shown once, stored hashed.

A key reads ``dtk_<id>_<secret>``: ``id`` (12 hex digits) names it in lists and the audit
log, ``secret`` (256 random bits) is only stored as its SHA-256 digest. Clients send it in
the ``X-API-Key`` header. Scopes:

* ``read`` - every ``GET`` a viewer may make (cannot be combined with a site).
* ``ingest`` - telemetry ingestion (``POST /api/v1/readings``); with ``site_id`` only for
  assets of that site, other items are rejected naming ``asset_id``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from digitaltwin.domain.errors import NotFoundError, ValidationError
from digitaltwin.security.audit import AuditEvent, AuditLog
from digitaltwin.security.errors import AuthenticationError
from digitaltwin.security.principal import Principal
from digitaltwin.security.store import ApiKeyRecord, SecurityStore

SCOPES = ("read", "ingest")
KEY_PREFIX = "dtk_"
#: How often ``last_used_at`` is written, at most.
TOUCH_INTERVAL = timedelta(minutes=1)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeys:
    """Creating, listing, revoking and authenticating API keys."""

    def __init__(self, store: SecurityStore, audit: AuditLog, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.audit = audit
        self.clock = clock

    def create(
        self,
        name: str,
        scopes: list[str],
        *,
        site_id: str | None,
        expires_at: datetime | None,
        actor: str,
        client_ip: str | None = None,
    ) -> tuple[ApiKeyRecord, str]:
        """A new key and its full secret value (returned this once only).

        Raises:
            ValidationError: naming ``name``, ``scopes``, ``site_id`` or ``expires_at``.
        """
        if not name or len(name) > 100:
            raise ValidationError("name must have 1-100 characters", field="name")
        unique = sorted(set(scopes))
        if not unique or any(s not in SCOPES for s in unique):
            raise ValidationError(f"scopes must be a non-empty list of {', '.join(SCOPES)}", field="scopes")
        if site_id is not None and "read" in unique:
            raise ValidationError("a site-limited key can only have the ingest scope", field="site_id")
        now = self.clock()
        if expires_at is not None and (expires_at.tzinfo is None or expires_at <= now):
            raise ValidationError("expires_at must be a future instant with a UTC offset", field="expires_at")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        record = ApiKeyRecord(key_id, name, _digest(secret), tuple(unique), site_id, actor, now, expires_at, None, None)
        self.store.create_api_key(record)
        self.audit.record(
            AuditEvent.API_KEY_CREATED, actor=actor, subject=f"key:{key_id}", client_ip=client_ip,
            name=name, scopes=list(unique), site_id=site_id,
        )
        return record, f"{KEY_PREFIX}{key_id}_{secret}"

    def list(self) -> list[ApiKeyRecord]:
        return self.store.list_api_keys()

    def revoke(self, key_id: str, *, actor: str, client_ip: str | None = None) -> None:
        """Revoke a key (idempotent). Raises NotFoundError naming ``key_id``."""
        if self.store.get_api_key(key_id) is None:
            raise NotFoundError(f"unknown API key {key_id!r}", field="key_id")
        if self.store.revoke_api_key(key_id, self.clock()):
            self.audit.record(AuditEvent.API_KEY_REVOKED, actor=actor, subject=f"key:{key_id}", client_ip=client_ip)

    def authenticate(self, value: str) -> Principal:
        """The key behind an ``X-API-Key`` value.

        Raises:
            AuthenticationError: naming ``X-API-Key`` when malformed, unknown, wrong, revoked or expired.
        """
        field = "X-API-Key"
        if not value.startswith(KEY_PREFIX) or len(value) > 200:
            raise AuthenticationError("invalid API key", field=field)
        key_id, _, secret = value[len(KEY_PREFIX) :].partition("_")
        record = self.store.get_api_key(key_id) if key_id and secret else None
        if record is None or not hmac.compare_digest(record.secret_hash, _digest(secret)):
            raise AuthenticationError("invalid API key", field=field)
        now = self.clock()
        if record.revoked_at is not None:
            raise AuthenticationError("API key revoked", field=field)
        if record.expires_at is not None and record.expires_at <= now:
            raise AuthenticationError("API key expired", field=field)
        if record.last_used_at is None or now - record.last_used_at >= TOUCH_INTERVAL:
            self.store.touch_api_key(record.id, now)
        return Principal(kind="api_key", id=record.id, name=record.name, scopes=frozenset(record.scopes), site_id=record.site_id)
