"""The audit log (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from digitaltwin.api.security import Security
from digitaltwin.api.security_schemas import AuditOut

router = APIRouter(prefix="/api/v1/audit", tags=["users"])


@router.get("", response_model=list[AuditOut])
def list_audit(
    security: Security,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    event: Annotated[str | None, Query(max_length=40, description="e.g. login_failed, refresh_token_reuse")] = None,
    before_id: Annotated[int | None, Query(ge=1, le=2**53, description="page: entries older than this id")] = None,
) -> list[AuditOut]:
    """Audit entries, newest first: logins and failures, token reuse, key and role changes, site and asset
    changes, reading deletions and model activations."""
    return [
        AuditOut(id=r.id, ts=r.ts, event=r.event, success=r.success, actor=r.actor, subject=r.subject, client_ip=r.client_ip, detail=r.detail)
        for r in security.store.list_audit(limit=limit, event=event, before_id=before_id)
    ]
