"""Security errors, part of the :class:`~digitaltwin.domain.errors.DomainError` hierarchy.

``api/errors.py`` maps them like every domain error (``{"detail", "field"}`` with the
status below) and adds :attr:`headers` (``WWW-Authenticate``, ``Retry-After``).
"""

from __future__ import annotations

from digitaltwin.domain.errors import DomainError


class AuthenticationError(DomainError):
    """Missing, malformed, expired, revoked or wrong credentials (HTTP 401)."""

    status_code = 401

    def __init__(self, message: str, *, field: str | None = "Authorization") -> None:
        super().__init__(message, field=field)
        self.headers = {"WWW-Authenticate": 'Bearer, ApiKey realm="digitaltwin"'}


class PermissionDeniedError(DomainError):
    """Authenticated, but the role, key scope or key site does not allow the action (HTTP 403)."""

    status_code = 403

    def __init__(self, message: str, *, field: str | None = "role") -> None:
        super().__init__(message, field=field)
        self.headers: dict[str, str] = {}


class TooManyAttemptsError(DomainError):
    """Too many failed logins or MFA codes for one account (HTTP 429).

    Args:
        retry_after_s: whole seconds until the next attempt may succeed.
    """

    status_code = 429

    def __init__(self, message: str, *, retry_after_s: int, field: str | None = "username") -> None:
        super().__init__(message, field=field)
        self.retry_after_s = max(1, retry_after_s)
        self.headers = {"Retry-After": str(self.retry_after_s)}


class InsecureConfigurationError(RuntimeError):
    """The security settings are unsafe for this ``ENVIRONMENT``; the service refuses to start."""
