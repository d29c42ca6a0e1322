"""Login sessions: password (and MFA) login, refresh-token rotation with reuse detection, logout.

A login opens a *session* (a refresh-token family). ``POST /auth/refresh`` spends the
presented refresh token and returns a new pair; each refresh token works once. Presenting
a spent one means it was copied: the whole family is revoked (its access tokens stop
working at once, since every request checks the session) and the reuse is audited
(OAuth 2.0 Security BCP, RFC 9700 section 4.14.2).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from digitaltwin.security.audit import AuditEvent, AuditLog
from digitaltwin.security.errors import AuthenticationError
from digitaltwin.security.mfa import Mfa
from digitaltwin.security.passwords import hash_password, needs_rehash, verify_password
from digitaltwin.security.principal import Principal
from digitaltwin.security.principal_cache import PrincipalCache
from digitaltwin.security.store import FamilyRecord, RefreshRecord, SecurityStore, UserRecord
from digitaltwin.security.tokens import TokenCodec

REFRESH_PREFIX = "rt_"


@dataclass(frozen=True, slots=True)
class TokenPair:
    """What a successful login or refresh returns (lifetimes in seconds)."""

    access_token: str
    expires_in_s: int
    refresh_token: str
    refresh_expires_in_s: int
    session_id: str


@dataclass(frozen=True, slots=True)
class MfaChallenge:
    """The password was right; a code must follow at ``/auth/mfa/verify`` with this token."""

    mfa_token: str
    expires_in_s: int


def hash_refresh_token(token: str) -> str:
    """SHA-256 hex digest under which a refresh token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    """Logins, refreshes, logouts and access-token authentication."""

    def __init__(
        self,
        store: SecurityStore,
        codec: TokenCodec,
        mfa: Mfa,
        audit: AuditLog,
        *,
        refresh_ttl: timedelta,
        clock: Callable[[], datetime],
        cache: PrincipalCache | None = None,
    ) -> None:
        self.cache = cache
        self.store = store
        self.codec = codec
        self.mfa = mfa
        self.audit = audit
        self.refresh_ttl = refresh_ttl
        self.clock = clock

    # --- login -----------------------------------------------------------------------------------

    def check_password(self, username: str, password: str, *, client_ip: str | None) -> UserRecord:
        """The active user with this password; upgrades an outdated hash.

        Raises:
            AuthenticationError: naming ``password`` (same message for unknown users and wrong passwords).
        """
        user = self.store.get_user_by_name(username) if isinstance(username, str) else None
        if not verify_password(user.password_hash if user else None, password) or user is None:
            self.audit.record(AuditEvent.LOGIN_FAILED, success=False, subject=username[:64], client_ip=client_ip, reason="password")
            raise AuthenticationError("incorrect username or password", field="password")
        if not user.active:
            self.audit.record(AuditEvent.LOGIN_FAILED, success=False, subject=username, client_ip=client_ip, reason="disabled")
            raise AuthenticationError("account disabled", field="username")
        if needs_rehash(user.password_hash):
            self.store.update_user(user.id, password_hash=hash_password(password))
        return user

    def login(self, username: str, password: str, *, otp: str | None = None, client_ip: str | None = None) -> TokenPair | MfaChallenge:
        """Password login; an MFA user gets a challenge, or tokens at once when ``otp`` is given.

        Raises:
            AuthenticationError: naming ``password``, ``username`` or ``otp``.
        """
        user = self.check_password(username, password, client_ip=client_ip)
        if not user.mfa_enabled:
            return self.start(user, amr="pwd", client_ip=client_ip)
        if otp is None:
            challenge = self.codec.issue_mfa_challenge(user_id=user.id)
            return MfaChallenge(challenge.token, challenge.expires_in_s)
        method = self.mfa.verify(user, otp, field="otp", client_ip=client_ip)
        return self.start(user, amr="mfa", client_ip=client_ip, method=method)

    def complete_mfa(self, mfa_token: str, code: str, *, client_ip: str | None = None) -> TokenPair:
        """Exchange an MFA challenge token and a TOTP or recovery code for tokens.

        Raises:
            AuthenticationError: naming ``mfa_token`` or ``code``.
        """
        user = self.challenge_user(mfa_token)
        method = self.mfa.verify(user, code, field="code", client_ip=client_ip)
        return self.start(user, amr="mfa", client_ip=client_ip, method=method)

    def challenge_user(self, mfa_token: str) -> UserRecord:
        """The MFA user an MFA challenge token was issued to. Raises AuthenticationError naming ``mfa_token``."""
        claims = self.codec.decode(mfa_token, purpose="mfa", field="mfa_token")
        user = self.store.get_user(claims["sub"])
        if user is None or not user.active or not user.mfa_enabled:
            raise AuthenticationError("invalid MFA token", field="mfa_token")
        return user

    def start(self, user: UserRecord, *, amr: str, client_ip: str | None = None, method: str | None = None) -> TokenPair:
        """Open a session for ``user`` and issue its first token pair (audited as a login)."""
        now = self.clock()
        family = FamilyRecord(secrets.token_hex(16), user.id, amr, now, now + self.refresh_ttl, None, None)
        self.store.create_family(family)
        pair = self._issue(user, family)
        detail = {"amr": amr} if method is None else {"amr": amr, "method": method}
        self.audit.record(AuditEvent.LOGIN, actor=f"user:{user.username}", subject=user.username, client_ip=client_ip, **detail)
        return pair

    def _issue(self, user: UserRecord, family: FamilyRecord) -> TokenPair:
        now = self.clock()
        refresh = REFRESH_PREFIX + secrets.token_urlsafe(32)
        self.store.add_refresh_token(RefreshRecord(secrets.token_hex(16), family.id, now, None), hash_refresh_token(refresh))
        access = self.codec.issue_access(user_id=user.id, role=user.role.value, session_id=family.id, amr=family.amr)
        refresh_left = max(0, int((family.expires_at - now).total_seconds()))
        return TokenPair(access.token, access.expires_in_s, refresh, refresh_left, family.id)

    # --- refresh and logout -------------------------------------------------------------------------

    def refresh(self, refresh_token: str, *, client_ip: str | None = None) -> TokenPair:
        """Rotate: spend ``refresh_token`` and return a new pair of the same session.

        Raises:
            AuthenticationError: naming ``refresh_token`` when unknown, expired, revoked, or
                reused (which also revokes the whole session).
        """
        found = self.store.find_refresh_token(hash_refresh_token(refresh_token or ""))
        if found is None:
            raise AuthenticationError("invalid refresh token", field="refresh_token")
        token, family = found
        now = self.clock()
        if family.revoked_at is not None:
            raise AuthenticationError("session revoked", field="refresh_token")
        if token.used_at is not None or not self.store.spend_refresh_token(token.id, now):
            self.store.revoke_family(family.id, reason="reuse", now=now)
            user = self.store.get_user(family.user_id)
            self.audit.record(
                AuditEvent.REFRESH_TOKEN_REUSE, success=False, subject=user.username if user else family.user_id,
                client_ip=client_ip, session=family.id,
            )
            raise AuthenticationError("refresh token already used; the session is revoked", field="refresh_token")
        if family.expires_at <= now:
            raise AuthenticationError("session expired; log in again", field="refresh_token")
        user = self.store.get_user(family.user_id)
        if user is None or not user.active:
            raise AuthenticationError("account disabled", field="refresh_token")
        return self._issue(user, family)

    def logout(self, principal: Principal, *, client_ip: str | None = None) -> None:
        """Revoke the caller's session: its refresh tokens and access tokens stop working."""
        if principal.session_id and self.store.revoke_family(principal.session_id, reason="logout", now=self.clock()):
            self.audit.record(AuditEvent.LOGOUT, actor=principal.label, subject=principal.name, client_ip=client_ip)

    # --- per request ---------------------------------------------------------------------------------

    def authenticate(self, access_token: str) -> Principal:
        """The user behind a valid access token of an open session, with their current role.

        The session check is answered from the per-process cache while the shared security
        epoch is unchanged (:mod:`digitaltwin.security.principal_cache`), else read from storage.

        Raises:
            AuthenticationError: naming ``Authorization``.
        """
        claims = self.codec.decode(access_token, purpose="access")
        session_id = claims.get("sid")
        if not isinstance(session_id, str):
            raise AuthenticationError("invalid token")
        key = (str(claims["sub"]), session_id)
        epoch = self.cache.epoch.read() if self.cache is not None else None
        if epoch is not None:
            cached = self.cache.get(key, epoch, self.clock())  # type: ignore[union-attr]
            if cached is not None:
                return cached
        user, family, mfa_required = self.store.session_state(claims["sub"], session_id)
        if user is None or family is None or family.user_id != user.id:
            raise AuthenticationError("invalid token")
        if not user.active:
            raise AuthenticationError("account disabled")
        if family.revoked_at is not None:
            raise AuthenticationError("session revoked; log in again")
        if family.expires_at <= self.clock():
            raise AuthenticationError("session expired; log in again")
        principal = Principal(
            kind="user", id=user.id, name=user.username, role=user.role, session_id=family.id,
            mfa_missing=mfa_required and family.amr != "mfa",
        )
        if epoch is not None:
            self.cache.put(key, principal, family.expires_at, epoch)  # type: ignore[union-attr]
        return principal
