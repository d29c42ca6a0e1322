"""Login, token refresh and logout, one's own account, and MFA enrolment."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError as PydanticValidationError

from digitaltwin.api.security import CurrentUser, Security, client_ip
from digitaltwin.api.security_schemas import (
    CodeIn,
    LoginIn,
    MeOut,
    MfaEnrolOut,
    MfaVerifyIn,
    PasswordChangeIn,
    RecoveryCodesOut,
    RefreshIn,
    TokenOut,
)
from digitaltwin.domain.errors import ValidationError
from digitaltwin.security.errors import AuthenticationError
from digitaltwin.security.login_throttle import Scope
from digitaltwin.security.policy import PUBLIC, access
from digitaltwin.security.roles import Role
from digitaltwin.security.service import SecurityService
from digitaltwin.security.sessions import MfaChallenge, TokenPair

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

_SELF = access(Role.VIEWER, mfa_enrolment=True)
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_LOGIN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": LoginIn.model_json_schema()},
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["password"]},
                        "username": {"type": "string"},
                        "password": {"type": "string"},
                        "otp": {"type": "string"},
                    },
                    "required": ["username", "password"],
                }
            },
        },
    }
}


def _token_out(result: TokenPair | MfaChallenge) -> TokenOut:
    if isinstance(result, MfaChallenge):
        return TokenOut(token_type="mfa", mfa_required=True, mfa_token=result.mfa_token, expires_in=result.expires_in_s)
    return TokenOut(
        token_type="bearer", access_token=result.access_token, expires_in=result.expires_in_s,
        refresh_token=result.refresh_token, refresh_expires_in=result.refresh_expires_in_s,
    )


async def _login_body(request: Request) -> LoginIn:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    data: Any
    if content_type in _FORM_TYPES:
        form = await request.form(max_files=0, max_fields=10)
        data = {k: v for k, v in form.items() if k in ("username", "password", "otp") and isinstance(v, str)}
        grant = form.get("grant_type")
        if grant not in (None, "", "password"):
            raise ValidationError("grant_type must be 'password'", field="grant_type")
    else:
        try:
            data = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise ValidationError("body must be JSON or an OAuth2 password form", field="body") from None
        except RecursionError:
            raise ValidationError("body is nested too deeply", field="body") from None
    if not isinstance(data, dict):
        raise ValidationError("body must be an object with username and password", field="body")
    try:
        return LoginIn.model_validate(data)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        raise ValidationError(first["msg"], field=str(first["loc"][0]) if first["loc"] else "body") from None


async def _hashing(security: SecurityService, call: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a password check on the hash gate's threads once it lets it (429 at once when it is full)."""
    return await security.hash_gate.run(call, *args, **kwargs)


async def _guarded(
    request: Request, security: SecurityService, account: str, scope: Scope, call: Any, *args: Any, **kwargs: Any
) -> Any:
    """Run a credential check of a signed-in user under the login throttle of (account, address) and the hash gate."""
    address = client_ip(request)

    def checked() -> Any:
        security.throttle.check(account, address, scope)
        try:
            return call(*args, **kwargs)
        except AuthenticationError:
            security.throttle.failed(account, address, scope)
            raise

    return await _hashing(security, checked)


@router.post("/token", response_model=TokenOut, response_model_exclude_none=True, openapi_extra={**access(PUBLIC), **_LOGIN_BODY})
async def token(request: Request, security: Security) -> TokenOut:
    """Log in with username and password (OAuth2 password form or JSON).

    Returns an access token (JWT, ``expires_in`` seconds) and a refresh token. For a user
    with MFA the answer is a challenge (``mfa_required``, ``mfa_token``) to complete at
    ``/api/v1/auth/mfa/verify``, unless ``otp`` was sent along. After ``LOGIN_RATE_LIMIT``
    failures of one account from one address each attempt waits longer (429 with
    ``Retry-After``); a valid ``otp`` gets an MFA user through. ``AUTH_RATE_LIMIT`` requests per
    minute per client; 429 at once while the server's password checks are all busy.
    """
    body = await _login_body(request)
    result = await _hashing(security, security.sessions.login, body.username, body.password, otp=body.otp, client_ip=client_ip(request))
    return _token_out(result)


@router.post("/mfa/verify", response_model=TokenOut, response_model_exclude_none=True, openapi_extra=access(PUBLIC))
async def mfa_verify(body: MfaVerifyIn, request: Request, security: Security) -> TokenOut:
    """Complete an MFA login: the challenge's ``mfa_token`` and a TOTP or recovery code give the tokens.

    A challenge works once: a second attempt with it is 401 naming ``mfa_token`` (log in again).
    """
    result = await run_in_threadpool(security.sessions.complete_mfa, body.mfa_token, body.code, client_ip=client_ip(request))
    return _token_out(result)


@router.post("/refresh", response_model=TokenOut, response_model_exclude_none=True, openapi_extra=access(PUBLIC))
def refresh(body: RefreshIn, request: Request, security: Security) -> TokenOut:
    """Rotate: the refresh token is spent and a new pair returned. A spent token revokes its whole session."""
    return _token_out(security.sessions.refresh(body.refresh_token, client_ip=client_ip(request)))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, openapi_extra=_SELF)
def logout(user: CurrentUser, request: Request, security: Security) -> Response:
    """End the caller's session: its access and refresh tokens stop working."""
    security.sessions.logout(user, client_ip=client_ip(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", response_model=MeOut, openapi_extra=_SELF)
def me(user: CurrentUser, security: Security) -> MeOut:
    """The caller's account."""
    record = security.accounts.get(user.name)
    return MeOut(
        username=record.username, role=record.role, mfa_enabled=record.mfa_enabled,
        mfa_required=security.accounts.role_policies()[record.role],
        recovery_codes_left=security.store.unused_recovery_codes(record.id),
    )


@router.post("/password", status_code=status.HTTP_204_NO_CONTENT, openapi_extra=_SELF)
async def change_password(body: PasswordChangeIn, user: CurrentUser, request: Request, security: Security) -> Response:
    """Change one's own password (the current one is required); other sessions end."""
    await _guarded(
        request, security, user.name, Scope.PASSWORD, security.accounts.change_own_password,
        user.id, body.current_password, body.new_password, keep_session=user.session_id, client_ip=client_ip(request),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/mfa/enroll", response_model=MfaEnrolOut, openapi_extra=_SELF)
def mfa_enroll(user: CurrentUser, security: Security) -> MfaEnrolOut:
    """Start TOTP enrolment: a new secret and its ``otpauth://`` URI; confirm with a code."""
    enrolment = security.mfa.enrol(security.accounts.get(user.name))
    return MfaEnrolOut(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri)


@router.post("/mfa/confirm", response_model=RecoveryCodesOut, openapi_extra=_SELF)
def mfa_confirm(body: CodeIn, user: CurrentUser, request: Request, security: Security) -> RecoveryCodesOut:
    """Enable MFA with a code from the new secret; returns single-use recovery codes (shown once)."""
    codes = security.mfa.confirm(security.accounts.get(user.name), body.code, session_id=user.session_id, client_ip=client_ip(request))
    return RecoveryCodesOut(recovery_codes=codes)


@router.post("/mfa/recovery-codes", response_model=RecoveryCodesOut, openapi_extra=_SELF)
async def mfa_recovery_codes(body: CodeIn, user: CurrentUser, request: Request, security: Security) -> RecoveryCodesOut:
    """Replace the recovery codes after a valid code."""
    record = await run_in_threadpool(security.accounts.get, user.name)
    codes = await _guarded(
        request, security, user.name, Scope.CODE, security.mfa.regenerate_recovery_codes, record, body.code, client_ip=client_ip(request)
    )
    return RecoveryCodesOut(recovery_codes=codes)


@router.post("/mfa/disable", status_code=status.HTTP_204_NO_CONTENT, openapi_extra=_SELF)
async def mfa_disable(body: CodeIn, user: CurrentUser, request: Request, security: Security) -> Response:
    """Turn MFA off after a valid code; 409 naming ``mfa`` when the role requires it."""
    record = await run_in_threadpool(security.accounts.get, user.name)
    required = security.accounts.role_policies()[record.role]
    await _guarded(
        request, security, user.name, Scope.CODE, security.mfa.disable, record, body.code, required_by_role=required,
        client_ip=client_ip(request),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
