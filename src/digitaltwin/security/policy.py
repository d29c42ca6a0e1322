"""Which role (and which API key scope) each route needs; decided from the route itself.

The rule, in order:

1. ``/healthz``, ``/readyz`` and ``/metrics`` are public (the docs pages are not API routes
   and are public too).
2. A route may declare its access with ``openapi_extra=access(...)`` (keys ``x-required-role``,
   ``x-api-key-scope``, ``x-mfa-enrolment``), e.g. ``access(Role.ADMIN)`` for model activation.
3. Administration is admin-only: ``/api/v1/users``, ``/api/v1/api-keys``, ``/api/v1/roles``,
   ``/api/v1/audit``, any path ending in ``/activate``, and writes of site or asset registrations.
4. Otherwise reads (GET, HEAD) need ``viewer`` and API key scope ``read``; every other method
   needs ``operator`` (ingest, train, acknowledge), and writes under ``/api/v1/readings``
   also accept API key scope ``ingest``.

So a route added later is covered without touching this file, and :func:`requirement` is
what both the request check and the OpenAPI document (each operation's ``x-required-role``)
use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from digitaltwin.security.roles import Role

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
ROLE_KEY = "x-required-role"
SCOPE_KEY = "x-api-key-scope"
MFA_ENROLMENT_KEY = "x-mfa-enrolment"
PUBLIC = "public"
#: ``x-api-key-scope`` value of routes that refuse API keys (``null`` would be dropped from the document).
NO_SCOPE = "none"

ADMIN_PREFIXES = ("/api/v1/users", "/api/v1/api-keys", "/api/v1/roles", "/api/v1/audit")
ADMIN_WRITE_PATHS = frozenset({"/api/v1/sites", "/api/v1/sites/{site_id}", "/api/v1/assets", "/api/v1/assets/{asset_id}"})
INGEST_PREFIX = "/api/v1/readings"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a route needs: ``role`` None means public; ``scope`` None means API keys are refused.

    ``mfa_enrolment`` routes stay reachable for a user whose role requires MFA before they enrol.
    """

    role: Role | None
    scope: str | None = None
    mfa_enrolment: bool = False

    @property
    def public(self) -> bool:
        return self.role is None


def access(role: Role | str, *, api_key_scope: str | None = None, mfa_enrolment: bool = False) -> dict[str, Any]:
    """``openapi_extra`` declaring a route's access, e.g. ``@router.post(..., openapi_extra=access(Role.ADMIN))``.

    ``role`` may be ``"public"`` for routes that take credentials themselves (login).
    ``api_key_scope`` None refuses API keys on the route.
    """
    extra: dict[str, Any] = {ROLE_KEY: role if role == PUBLIC else Role(role).value, SCOPE_KEY: api_key_scope or NO_SCOPE}
    if mfa_enrolment:
        extra[MFA_ENROLMENT_KEY] = True
    return extra


def _is_admin_path(path: str, method: str) -> bool:
    if any(path == p or path.startswith(p + "/") for p in ADMIN_PREFIXES):
        return True
    if path.endswith("/activate"):
        return True
    return method not in READ_METHODS and path in ADMIN_WRITE_PATHS


def requirement(path: str, method: str, extra: dict[str, Any] | None = None) -> Requirement:
    """The requirement of the route with template ``path`` (``/api/v1/assets/{asset_id}``) for ``method``."""
    method = method.upper()
    if path in PUBLIC_PATHS:
        return Requirement(None)
    extra = extra or {}
    declared = extra.get(ROLE_KEY)
    enrolment = bool(extra.get(MFA_ENROLMENT_KEY, False))
    if declared == PUBLIC:
        return Requirement(None)
    read = method in READ_METHODS
    default_scope = "read" if read else ("ingest" if path == INGEST_PREFIX or path.startswith(INGEST_PREFIX + "/") else None)
    scope = extra[SCOPE_KEY] if SCOPE_KEY in extra else default_scope
    scope = None if scope == NO_SCOPE else scope
    if declared is not None:
        role = Role(declared)
    elif _is_admin_path(path, method):
        role = Role.ADMIN
        scope = None if extra.get(SCOPE_KEY) in (None, NO_SCOPE) else extra[SCOPE_KEY]
    else:
        role = Role.VIEWER if read else Role.OPERATOR
    return Requirement(role, scope, enrolment)
