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
from datetime import UTC, datetime, timedelta

from digitaltwin.security.audit import AuditEvent, AuditLog
from digitaltwin.security.errors import AuthenticationError, TooManyAttemptsError
from digitaltwin.security.login_throttle import LoginThrottle, Scope
from digitaltwin.security.mfa import Mfa
from digitaltwin.security.passwords import hash_password, needs_rehash, verify_password
from digitaltwin.security.principal import Principal
from digitaltwin.security.principal_cache import PrincipalCache
from digitaltwin.security.store import FamilyRecord, RefreshRecord, SecurityStore, UserRecord
from digitaltwin.security.tokens import TokenCodec

REFRESH_PREFIX = "rt_"
#: Audit subject of a failed login for an account that does not exist (what was typed is not kept).
UNKNOWN_SUBJECT = "(unknown account)"


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
        throttle: LoginThrottle,
        *,
        refresh_ttl: timedelta,
        clock: Callable[[], datetime],
        cache: PrincipalCache | None = None,
    ) -> None:
        self.throttle = throttle
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

        A failure is counted (:class:`LoginThrottle`) before it is audited, so an audit write that
        fails can neither skip the count nor turn the 401 into something else. The audit names an
        unknown account :data:`UNKNOWN_SUBJECT`, never what was typed (often a password).

        Raises:
            AuthenticationError: naming ``password``, with the same message for unknown users,
                wrong passwords and disabled accounts.
        """
        user = self.store.get_user_by_name(username) if isinstance(username, str) else None
        correct = verify_password(user.password_hash if user else None, password)
        if user is None or not correct or not user.active:
            self.throttle.failed(username, client_ip, Scope.PASSWORD)
            reason = "disabled" if user is not None and correct else "password"
            subject = user.username if user is not None else UNKNOWN_SUBJECT
            self.audit.record(AuditEvent.LOGIN_FAILED, success=False, subject=subject, client_ip=client_ip, reason=reason)
            raise AuthenticationError("incorrect username or password", field="password")
        if needs_rehash(user.password_hash):
            self.store.update_user(user.id, password_hash=hash_password(password))
        return user

    def verify_code(self, user: UserRecord, code: str, *, field: str, client_ip: str | None) -> str:
        """:meth:`Mfa.verify` under the ``code`` scope of the throttle (checked before, counted on failure).

        Raises:
            TooManyAttemptsError: while the pair must wait.
            AuthenticationError: naming ``field``.
        """
        self.throttle.check(user.username, client_ip, Scope.CODE)
        try:
            return self.mfa.verify(user, code, field=field, client_ip=client_ip)
        except AuthenticationError:
            self.throttle.failed(user.username, client_ip, Scope.CODE)
            raise

    def login(self, username: str, password: str, *, otp: str | None = None, client_ip: str | None = None) -> TokenPair | MfaChallenge:
        """Password login; an MFA user gets a challenge, or tokens at once when ``otp`` is given.

        Failures are throttled per account and address (:mod:`.login_throttle`). While the
        password scope is delayed only an MFA user sending a valid ``otp`` gets through: the
        code is checked before the password, so the delay still binds password guesses.

        Raises:
            TooManyAttemptsError: 429 while the pair must wait.
            AuthenticationError: naming ``password`` or ``otp``.
        """
        try:
            self.throttle.check(username, client_ip, Scope.PASSWORD)
        except TooManyAttemptsError as delayed:
            if otp is None:
                raise
            return self._login_past_delay(username, password, otp, client_ip=client_ip, delayed=delayed)
        user = self.check_password(username, password, client_ip=client_ip)
        if not user.mfa_enabled:
            self.throttle.succeeded(user.username, client_ip)
            return self.start(user, amr="pwd", client_ip=client_ip)
        if otp is None:
            challenge = self.codec.issue_mfa_challenge(user_id=user.id)
            return MfaChallenge(challenge.token, challenge.expires_in_s)
        method = self.verify_code(user, otp, field="otp", client_ip=client_ip)
        self.throttle.succeeded(user.username, client_ip)
        return self.start(user, amr="mfa", client_ip=client_ip, method=method)

    def _login_past_delay(
        self, username: str, password: str, otp: str, *, client_ip: str | None, delayed: TooManyAttemptsError
    ) -> TokenPair:
        """A login while the password scope waits: a valid second factor first, then the password."""
        user = self.store.get_user_by_name(username)
        if user is None or not user.active or not user.mfa_enabled:
            raise delayed
        try:
            method = self.verify_code(user, otp, field="otp", client_ip=client_ip)
        except AuthenticationError:
            raise delayed from None
        user = self.check_password(username, password, client_ip=client_ip)
        self.throttle.succeeded(user.username, client_ip)
        return self.start(user, amr="mfa", client_ip=client_ip, method=method)

    def complete_mfa(self, mfa_token: str, code: str, *, client_ip: str | None = None) -> TokenPair:
        """Exchange an MFA challenge token and a TOTP or recovery code for tokens.

        A challenge is single-use: it is spent when first presented, whatever the code, so one
        password check yields at most one code attempt and one session.

        Raises:
            TooManyAttemptsError: while the account's ``code`` scope from this address must wait.
            AuthenticationError: naming ``mfa_token`` or ``code``.
        """
        claims = self.codec.decode(mfa_token, purpose="mfa", field="mfa_token")
        user = self.challenge_user(mfa_token)
        self.throttle.check(user.username, client_ip, Scope.CODE)
        expires_at = datetime.fromtimestamp(int(claims["exp"]), tz=UTC)
        if not isinstance(claims.get("jti"), str) or not self.store.spend_mfa_challenge(claims["jti"], expires_at, self.clock()):
            raise AuthenticationError("MFA token already used; log in again", field="mfa_token")
        method = self.verify_code(user, code, field="code", client_ip=client_ip)
        self.throttle.succeeded(user.username, client_ip)
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

    def cached(self, access_token: str, epoch: int | None) -> Principal | None:
        """The principal of ``access_token`` from the per-process cache, without any I/O, or None
        when storage must be read (nothing cached, or no epoch: none read along by the rate
        limiter and none readable locally).

        Raises:
            AuthenticationError: naming ``Authorization`` for a token that fails verification.
        """
        if self.cache is None:
            return None
        if epoch is None:
            if not self.cache.epoch.local:
                return None
            epoch = self.cache.epoch.read()
            if epoch is None:
                return None
        claims = self.codec.decode(access_token, purpose="access")
        session_id = claims.get("sid")
        if not isinstance(session_id, str):
            raise AuthenticationError("invalid token")
        return self.cache.get((str(claims["sub"]), session_id), epoch, self.clock())

    def authenticate(self, access_token: str, *, epoch: int | None = None) -> Principal:
        """The user behind a valid access token of an open session, with their current role.

        The session check is answered from the per-process cache while the shared security
        epoch is unchanged (:mod:`digitaltwin.security.principal_cache`), else read from storage.
        ``epoch``: the epoch as read at the start of this request (by the rate limiter), read
        here when None.

        Raises:
            AuthenticationError: naming ``Authorization``.
        """
        claims = self.codec.decode(access_token, purpose="access")
        session_id = claims.get("sid")
        if not isinstance(session_id, str):
            raise AuthenticationError("invalid token")
        key = (str(claims["sub"]), session_id)
        if self.cache is not None and epoch is None:
            epoch = self.cache.epoch.read()
        if self.cache is not None and epoch is not None:
            cached = self.cache.get(key, epoch, self.clock())
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
        if self.cache is not None and epoch is not None:
            self.cache.put(key, principal, family.expires_at, epoch)
        return principal
