"""JWT access tokens and MFA challenge tokens (PyJWT).

Access token claims: ``sub`` (user id), ``role``, ``sid`` (login session), ``amr``
(``pwd`` or ``mfa``), ``iat``, ``exp``, ``jti`` and ``use`` (``access``). An MFA challenge
token (``use`` = ``mfa``) only proves the password step and lives 5 minutes.

Verification pins the algorithm to ``JWT_ALGORITHM`` (the header's ``alg`` is never
trusted, so ``none`` and algorithm confusion fail), requires ``exp``, ``iat`` and ``sub``,
allows ``JWT_LEEWAY_SECONDS`` of clock skew, and tries ``SECRET_KEY_PREVIOUS`` when the
current key's signature does not match and the grace period has not ended.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt

from digitaltwin.security.errors import AuthenticationError
from digitaltwin.security.secret_key import SigningKeys

#: Lifetime of an MFA challenge token.
MFA_CHALLENGE_TTL = timedelta(minutes=5)
#: Longest token accepted before parsing (bytes).
MAX_TOKEN_LENGTH = 4096
#: Verified tokens remembered per codec (see :meth:`TokenCodec.decode`); emptied when full.
MAX_VERIFIED = 4096

Purpose = Literal["access", "mfa"]


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """An encoded token and its lifetime in seconds."""

    token: str
    expires_in_s: int


class TokenCodec:
    """Issues and verifies the product's JWTs.

    Args:
        keys: signing keys (see :mod:`digitaltwin.security.secret_key`).
        algorithm: the single accepted algorithm, e.g. ``HS256``.
        access_ttl: access token lifetime.
        leeway_s: clock skew in seconds allowed on ``exp`` and ``iat``.
        clock: current UTC time for issuing and for the end of the previous key's grace
            period (PyJWT checks ``exp``/``iat`` against the system clock).
    """

    def __init__(
        self,
        keys: SigningKeys,
        *,
        algorithm: str,
        access_ttl: timedelta,
        leeway_s: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.keys = keys
        self.algorithm = algorithm
        self.access_ttl = access_ttl
        self.leeway_s = leeway_s
        self.clock = clock
        self._verified: dict[str, tuple[dict[str, Any], float]] = {}

    def _encode(self, claims: dict[str, Any], ttl: timedelta) -> IssuedToken:
        now = self.clock()
        payload = {**claims, "iat": now, "exp": now + ttl, "jti": secrets.token_hex(16)}
        return IssuedToken(jwt.encode(payload, self.keys.current, algorithm=self.algorithm), int(ttl.total_seconds()))

    def issue_access(self, *, user_id: str, role: str, session_id: str, amr: str) -> IssuedToken:
        """An access token for a user's login session."""
        return self._encode({"sub": user_id, "role": role, "sid": session_id, "amr": amr, "use": "access"}, self.access_ttl)

    def issue_mfa_challenge(self, *, user_id: str) -> IssuedToken:
        """A token proving the password step, exchanged with a code at ``/auth/mfa/verify``."""
        return self._encode({"sub": user_id, "use": "mfa"}, MFA_CHALLENGE_TTL)

    def _keys_to_try(self) -> list[str]:
        keys = [self.keys.current]
        previous, until = self.keys.previous, self.keys.previous_until
        if previous and (until is None or self.clock() < until):
            keys.append(previous)
        return keys

    def decode(self, token: str, *, purpose: Purpose, field: str = "Authorization") -> dict[str, Any]:
        """Verified claims of ``token``.

        A token verified with the current key is remembered with its ``exp``: the same string
        presented again has the same signature and claims, so only its expiry (with the leeway)
        and purpose are checked again, instead of parsing it and computing its HMAC (about 70 us
        with PyJWT, on every request of a client). Tokens verified with the previous key are
        not remembered, so they stop at the end of its grace period as before.

        Raises:
            AuthenticationError: naming ``field`` for a malformed, wrongly signed, expired,
                not-yet-valid or wrong-purpose token (the reason is in the message).
        """
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise AuthenticationError("invalid token", field=field)
        known = self._verified.get(token)
        if known is not None and time.time() < known[1] + self.leeway_s:
            claims = known[0]
            if claims.get("use") != purpose:
                raise AuthenticationError(f"not an {purpose} token" if purpose == "access" else "not an MFA token", field=field)
            return claims
        last: Exception | None = None
        for key in self._keys_to_try():
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[self.algorithm],
                    options={"require": ["exp", "iat", "sub"], "verify_signature": True},
                    leeway=self.leeway_s,
                )
            except jwt.InvalidSignatureError as exc:
                last = exc
                continue
            except jwt.ExpiredSignatureError:
                raise AuthenticationError("token expired", field=field) from None
            except jwt.InvalidTokenError:
                raise AuthenticationError("invalid token", field=field) from None
            if claims.get("use") != purpose:
                raise AuthenticationError(f"not an {purpose} token" if purpose == "access" else "not an MFA token", field=field)
            if key == self.keys.current and isinstance(claims.get("exp"), int | float):
                if len(self._verified) >= MAX_VERIFIED:
                    self._verified.clear()
                self._verified[token] = (claims, float(claims["exp"]))
            return claims
        raise AuthenticationError("invalid token", field=field) from last
