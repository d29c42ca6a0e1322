"""Request and response bodies of the authentication, user, role, API key and audit routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from digitaltwin.api.schemas import RequestModel
from digitaltwin.security.roles import Role


class LoginIn(RequestModel):
    """JSON form of the token request (the OAuth2 password form is accepted too)."""

    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)
    otp: str | None = Field(None, max_length=64, description="TOTP or recovery code, for MFA users in one step")


class TokenOut(BaseModel):
    """Tokens (lifetimes in seconds), or an MFA challenge when ``mfa_required`` is true."""

    token_type: str = Field(description="'bearer', or 'mfa' for a challenge")
    access_token: str | None = None
    expires_in: int | None = Field(None, description="seconds")
    refresh_token: str | None = None
    refresh_expires_in: int | None = Field(None, description="seconds until the session ends")
    mfa_required: bool = False
    mfa_token: str | None = Field(None, description="send with a code to /api/v1/auth/mfa/verify")


class RefreshIn(RequestModel):
    refresh_token: str = Field(max_length=512)


class MfaVerifyIn(RequestModel):
    mfa_token: str = Field(max_length=4096)
    code: str = Field(max_length=64, description="6-digit TOTP code or a recovery code")


class CodeIn(RequestModel):
    code: str = Field(max_length=64, description="6-digit TOTP code (or a recovery code where accepted)")


class PasswordChangeIn(RequestModel):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


class MeOut(BaseModel):
    username: str
    role: Role
    mfa_enabled: bool
    mfa_required: bool = Field(description="the role requires MFA")
    recovery_codes_left: int


class MfaEnrolOut(BaseModel):
    secret: str = Field(description="base32 TOTP secret, shown once")
    otpauth_uri: str = Field(description="otpauth:// URI for a QR code")


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str] = Field(description="single-use codes, shown once")


class UserIn(RequestModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)
    role: Role = Role.VIEWER


class UserPatch(RequestModel):
    role: Role | None = None
    active: bool | None = None
    password: str | None = Field(None, max_length=1024)
    reset_mfa: bool = False


class UserOut(BaseModel):
    username: str
    role: Role
    active: bool
    mfa_enabled: bool
    created_at: datetime


class RoleOut(BaseModel):
    role: Role
    mfa_required: bool
    may: str


class RolePatch(RequestModel):
    mfa_required: bool


class ApiKeyIn(RequestModel):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(min_length=1, max_length=2, description="read and/or ingest")
    site_id: str | None = Field(None, max_length=64, description="limit ingestion to this site's assets")
    expires_at: datetime | None = Field(None, description="RFC 3339 with offset")


class ApiKeyOut(BaseModel):
    id: str
    name: str
    scopes: list[str]
    site_id: str | None
    created_by: str | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreatedOut(ApiKeyOut):
    key: str = Field(description="the full key for the X-API-Key header, shown once")


class AuditOut(BaseModel):
    id: int
    ts: datetime
    event: str
    success: bool
    actor: str | None
    subject: str | None
    client_ip: str | None
    detail: dict[str, Any]


class UnlockOut(BaseModel):
    """Result of an unlock: how many (address, scope) failure counts of the user were cleared."""

    username: str
    cleared: int
