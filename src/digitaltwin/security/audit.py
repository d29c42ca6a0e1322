"""The audit log: who logged in or failed to, token reuse, keys created or revoked, role and MFA changes,
site and asset changes, reading deletions and model activations.

Every entry goes to the ``audit_log`` table (``GET /api/v1/audit``, admin only) and to
the ``digitaltwin.audit`` logger. Secrets never appear in an entry.

Writing an entry never raises: the client address is parsed by :mod:`ipaddress` (anything
else is stored as ``unknown``), names are cut to their columns' length, and a database error is
logged at ERROR level with the whole entry instead of reaching the caller, so an audit failure
cannot change the outcome of a login or skip its failure count.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from digitaltwin.security.client_address import normalise_address
from digitaltwin.security.store import SecurityStore

log = logging.getLogger("digitaltwin.audit")
#: Length of the ``actor`` and ``subject`` columns.
NAME_LENGTH = 100


class AuditEvent(StrEnum):
    """Names of audit events."""

    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    MFA_FAILED = "mfa_failed"
    LOGOUT = "logout"
    REFRESH_TOKEN_REUSE = "refresh_token_reuse"
    USER_CREATED = "user_created"
    ROLE_CHANGED = "role_changed"
    USER_DISABLED = "user_disabled"
    USER_ENABLED = "user_enabled"
    PASSWORD_CHANGED = "password_changed"
    USER_UNLOCKED = "user_unlocked"
    MFA_ENABLED = "mfa_enabled"
    MFA_DISABLED = "mfa_disabled"
    MFA_RESET = "mfa_reset"
    RECOVERY_CODE_USED = "recovery_code_used"
    RECOVERY_CODES_REGENERATED = "recovery_codes_regenerated"
    MFA_POLICY_CHANGED = "mfa_policy_changed"
    API_KEY_CREATED = "api_key_created"
    API_KEY_REVOKED = "api_key_revoked"
    # changes made through the API (see digitaltwin.observability.changes)
    SITE_UPDATED = "site_updated"
    ASSET_UPDATED = "asset_updated"
    READINGS_DELETED = "readings_deleted"
    READINGS_REPLACED = "readings_replaced"
    MODEL_ACTIVATED = "model_activated"
    SERIES_UPDATED = "series_updated"
    METER_REPLACED = "meter_replaced"
    # monitoring (see digitaltwin.api.routers.alarms)
    ALARM_ACKNOWLEDGED = "alarm_acknowledged"
    ALARM_CLEARED = "alarm_cleared"
    WEBHOOK_CREATED = "webhook_created"
    WEBHOOK_DELETED = "webhook_deleted"
    DETECTOR_SETTINGS_CHANGED = "detector_settings_changed"


class AuditLog:
    """Writes audit entries stamped by ``clock`` (UTC)."""

    def __init__(self, store: SecurityStore, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock

    def record(
        self,
        event: AuditEvent,
        *,
        success: bool = True,
        actor: str | None = None,
        subject: str | None = None,
        client_ip: str | None = None,
        **detail: Any,
    ) -> None:
        """Store one entry; ``actor`` did it, ``subject`` is the account or key it concerns. Never raises."""
        client_ip = normalise_address(client_ip)
        actor = actor[:NAME_LENGTH] if actor else actor
        subject = subject[:NAME_LENGTH] if subject else subject
        try:
            self.store.record_audit(
                ts=self.clock(), event=event.value, success=success, actor=actor, subject=subject, client_ip=client_ip, detail=detail
            )
        except SQLAlchemyError as exc:
            log.error(
                "audit entry not stored (%s): %s success=%s actor=%s subject=%s ip=%s %s",
                type(exc).__name__, event.value, success, actor, subject, client_ip, detail or "",
            )
            return
        log.info("audit %s success=%s actor=%s subject=%s ip=%s %s", event.value, success, actor, subject, client_ip, detail or "")
