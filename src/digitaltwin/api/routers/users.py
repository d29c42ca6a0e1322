"""User accounts (admin only)."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from digitaltwin.api.security import CurrentUser, Security, client_ip
from digitaltwin.api.security_schemas import UnlockOut, UserIn, UserOut, UserPatch
from digitaltwin.security.store import UserRecord

router = APIRouter(prefix="/api/v1/users", tags=["users"])


def _out(user: UserRecord) -> UserOut:
    return UserOut(username=user.username, role=user.role, active=user.active, mfa_enabled=user.mfa_enabled, created_at=user.created_at)


@router.get("", response_model=list[UserOut])
def list_users(security: Security) -> list[UserOut]:
    """All accounts."""
    return [_out(u) for u in security.accounts.list()]


@router.post("", response_model=UserOut, status_code=status.HTTP_201_CREATED)
def create_user(body: UserIn, admin: CurrentUser, request: Request, security: Security) -> UserOut:
    """Create an account; 409 naming ``username`` if taken, 422 naming ``password`` if too weak."""
    return _out(security.accounts.create(body.username, body.password, body.role, actor=admin.label, client_ip=client_ip(request)))


@router.get("/{username}", response_model=UserOut)
def get_user(username: str, security: Security) -> UserOut:
    """One account; 404 naming ``username``."""
    return _out(security.accounts.get(username))


@router.patch("/{username}", response_model=UserOut)
def update_user(username: str, body: UserPatch, admin: CurrentUser, request: Request, security: Security) -> UserOut:
    """Change role, enable/disable, set a new password or reset MFA (audited).

    Disabling, a new password and an MFA reset end the user's sessions; the last active
    admin cannot be demoted or disabled (409).
    """
    user = security.accounts.update(
        username, actor=admin.label, role=body.role, active=body.active, password=body.password,
        reset_mfa=body.reset_mfa, client_ip=client_ip(request),
    )
    return _out(user)


@router.post("/{username}/unlock", response_model=UnlockOut)
def unlock_user(username: str, admin: CurrentUser, request: Request, security: Security) -> UnlockOut:
    """Forget the user's failed logins and MFA codes from every address, ending their login delays (audited).

    404 naming ``username``.
    """
    cleared = security.accounts.unlock(username, actor=admin.label, client_ip=client_ip(request))
    return UnlockOut(username=username, cleared=cleared)
