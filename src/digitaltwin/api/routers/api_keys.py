"""API keys for devices and integrations (admin only)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from digitaltwin.api.deps import State
from digitaltwin.api.security import CurrentUser, Security, client_ip
from digitaltwin.api.security_schemas import ApiKeyCreatedOut, ApiKeyIn, ApiKeyOut
from digitaltwin.security.store import ApiKeyRecord

router = APIRouter(prefix="/api/v1/api-keys", tags=["api keys"])


def _out(key: ApiKeyRecord) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id, name=key.name, scopes=list(key.scopes), site_id=key.site_id, created_by=key.created_by,
        created_at=key.created_at, expires_at=key.expires_at, last_used_at=key.last_used_at, revoked_at=key.revoked_at,
    )


@router.get("", response_model=list[ApiKeyOut])
def list_keys(security: Security) -> list[ApiKeyOut]:
    """All keys (never their secrets)."""
    return [_out(k) for k in security.api_keys.list()]


@router.post("", response_model=ApiKeyCreatedOut, status_code=status.HTTP_201_CREATED)
def create_key(
    body: ApiKeyIn, admin: CurrentUser, request: Request, response: Response, state: State, security: Security
) -> ApiKeyCreatedOut:
    """Create a key with scopes ``read`` and/or ``ingest``, optionally for one site; the key is shown this once
    (``Cache-Control: no-store``, so no cache keeps it).

    404 naming ``site_id`` for an unknown site; 422 naming ``scopes``, ``site_id`` or ``expires_at``.
    """
    if body.site_id is not None:
        state.repo.get_site(body.site_id)
    record, secret = security.api_keys.create(
        body.name, body.scopes, site_id=body.site_id, expires_at=body.expires_at, actor=admin.label, client_ip=client_ip(request)
    )
    response.headers["Cache-Control"] = "no-store"
    return ApiKeyCreatedOut(**_out(record).model_dump(), key=secret)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_key(key_id: str, admin: CurrentUser, request: Request, security: Security) -> Response:
    """Revoke a key at once; 404 naming ``key_id``."""
    security.api_keys.revoke(key_id, actor=admin.label, client_ip=client_ip(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
