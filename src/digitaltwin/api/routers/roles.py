"""Roles and their MFA requirement (admin only)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from digitaltwin.api.security import CurrentUser, Security, client_ip
from digitaltwin.api.security_schemas import RoleOut, RolePatch
from digitaltwin.security.accounts import parse_role

router = APIRouter(prefix="/api/v1/roles", tags=["users"])

_MAY = {
    "viewer": "read",
    "operator": "read, ingest, train, acknowledge",
    "admin": "everything, including users, API keys, roles, audit log, site/asset registration and model activation",
}


@router.get("", response_model=list[RoleOut])
def list_roles(security: Security) -> list[RoleOut]:
    """The three roles, what each may do and whether it requires MFA."""
    return [RoleOut(role=r, mfa_required=req, may=_MAY[r.value]) for r, req in security.accounts.role_policies().items()]


@router.put("/{role}", response_model=RoleOut)
def set_role_policy(role: str, body: RolePatch, admin: CurrentUser, request: Request, security: Security) -> RoleOut:
    """Require (or stop requiring) MFA for a role; its users without MFA can then only enrol."""
    parsed = parse_role(role)
    security.accounts.set_mfa_required(parsed, body.mfa_required, actor=admin.label, client_ip=client_ip(request))
    return RoleOut(role=parsed, mfa_required=body.mfa_required, may=_MAY[parsed.value])
