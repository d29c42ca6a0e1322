"""Audit entries for changes made through the API: site and asset edits, reading deletions, model activations.

They go through the same :class:`digitaltwin.security.audit.AuditLog` as logins and key
changes (the ``audit_log`` table behind ``GET /api/v1/audit`` and the ``digitaltwin.audit``
logger), with the caller's label (``user:NAME`` or ``key:ID``) as actor and its address.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from digitaltwin.security.audit import AuditEvent

#: Longest text kept for one changed value in an entry (attributes may be 64 KiB of JSON).
MAX_VALUE_CHARS = 200


def record_change(request: Request, event: AuditEvent, *, subject: str, **detail: Any) -> None:
    """Write one audit entry for ``subject`` (a site, asset or model id) on behalf of the caller.

    Does nothing when the app runs without the security service (no audit log).
    """
    from digitaltwin.api.security import client_ip

    security = getattr(request.app.state.dt, "security", None)
    if security is None:
        return
    principal = getattr(request.state, "principal", None)
    actor = principal.label if principal is not None else None
    security.audit.record(event, actor=actor, subject=subject, client_ip=client_ip(request), **detail)


def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{field: {"from": old, "to": new}}`` for each field whose value differs.

    Values that are not plain scalars (``attributes``) are kept as their JSON text cut to
    :data:`MAX_VALUE_CHARS` characters, so an entry stays small.
    """

    def small(value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, float)):
            return value
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."

    return {k: {"from": small(before.get(k)), "to": small(after.get(k))} for k in after if before.get(k) != after.get(k)}
