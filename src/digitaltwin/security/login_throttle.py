"""Throttling of failed logins and MFA codes per (account, client address), with growing delays.

Policy (docs/security.md#login-throttling):

* Failures are counted per account *and* client address, in two scopes: ``password`` (wrong
  passwords, unknown or disabled accounts) and ``code`` (wrong TOTP or recovery codes).
* The first ``LOGIN_RATE_LIMIT`` failures of a pair cost nothing. After that each attempt must
  wait ``2 ** (failures - LOGIN_RATE_LIMIT)`` seconds after the pair's last failure, at most
  ``LOGIN_MAX_DELAY_SECONDS``; an earlier attempt gets 429 with ``Retry-After`` and is not
  checked. There is no lock-out: a pair is never refused for longer than the current delay, and
  other addresses of the same account are not affected, so nobody can lock someone else out.
* A pair's count ends :data:`WINDOW` after its last failure, at a successful login from that
  address, or when an admin runs ``digitaltwin users unlock`` / ``POST /users/{name}/unlock``.
* A correct password *with* a valid second factor passes a delayed ``password`` scope (the
  code is checked first, so a delayed pair cannot keep guessing passwords); the ``code`` scope
  has no such way round.

The counts are rows of ``login_failures`` in the product's database, so every worker and the
CLI see the same ones, on SQLite and PostgreSQL alike. The account is stored as an HMAC-SHA256
of its casefolded name under a key derived from ``SECRET_KEY``: a password typed into the
username field is neither kept nor testable against a word list without that key. This is the
OWASP Authentication Cheat Sheet's "login throttling" rather than "account lockout".
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError

from digitaltwin.security.client_address import normalise_address
from digitaltwin.security.errors import TooManyAttemptsError
from digitaltwin.storage.tables import login_failures

#: How long a pair's failures are remembered after its last one.
WINDOW = timedelta(minutes=15)


class Scope(StrEnum):
    """What failed: a password check or an MFA code."""

    PASSWORD = "password"
    CODE = "code"


def throttle_key(secret_key: str) -> bytes:
    """The HMAC key of account names, derived from the signing key (a separate use of it)."""
    return hashlib.sha256(b"digitaltwin/login-throttle/v1\x00" + secret_key.encode()).digest()


class LoginThrottle:
    """Counts failures and says how long a pair must wait.

    Args:
        engine: the product's database (migrated to 0005 or later).
        key: HMAC key of account names (:func:`throttle_key`).
        free_failures: ``LOGIN_RATE_LIMIT``; failures before delays start.
        max_delay_s: ``LOGIN_MAX_DELAY_SECONDS``; the longest delay.
        clock: current UTC time.
    """

    def __init__(
        self, engine: Engine, *, key: bytes, free_failures: int, max_delay_s: int, clock: Callable[[], datetime]
    ) -> None:
        self.engine = engine
        self.key = key
        self.free_failures = free_failures
        self.max_delay_s = max_delay_s
        self.clock = clock

    def delay_s(self, failures: int) -> float:
        """Seconds an attempt must wait after the last of ``failures`` failures (0 while they are free)."""
        if failures < self.free_failures:
            return 0.0
        return float(min(self.max_delay_s, 2 ** min(failures - self.free_failures, 30)))

    def account_hash(self, username: str) -> str:
        """HMAC-SHA256 hex of the casefolded user name: the key of its failures."""
        return hmac.new(self.key, username.casefold().encode(), hashlib.sha256).hexdigest()

    def _key(self, username: str, client_ip: str | None, scope: Scope) -> tuple[str, str, str]:
        return self.account_hash(username), normalise_address(client_ip) or "unknown", scope.value

    def wait_s(self, username: str, client_ip: str | None, scope: Scope) -> int:
        """Whole seconds this pair must still wait before an attempt is checked (0: go ahead)."""
        account, address, scope_value = self._key(username, client_ip, scope)
        with self.engine.connect() as conn:
            row = conn.execute(
                select(login_failures.c.failures, login_failures.c.last_failure_at).where(
                    login_failures.c.account_hash == account, login_failures.c.client_ip == address,
                    login_failures.c.scope == scope_value,
                )
            ).first()
        if row is None:
            return 0
        now = self.clock()
        if row.last_failure_at <= now - WINDOW:
            return 0
        left = (row.last_failure_at + timedelta(seconds=self.delay_s(row.failures)) - now).total_seconds()
        return max(0, math.ceil(left))

    def check(self, username: str, client_ip: str | None, scope: Scope) -> None:
        """Raise TooManyAttemptsError (429, ``Retry-After``) while the pair must wait."""
        wait = self.wait_s(username, client_ip, scope)
        if wait > 0:
            what = "failed logins" if scope is Scope.PASSWORD else "wrong codes"
            raise TooManyAttemptsError(
                f"too many {what} for this account from this address; retry after {wait} s", retry_after_s=wait,
                field="username" if scope is Scope.PASSWORD else "code",
            )

    def failed(self, username: str, client_ip: str | None, scope: Scope) -> int:
        """Count one failure of the pair (in its own transaction); returns the pair's failures now.

        Also drops pairs whose window has ended, so the table holds only live counts.
        """
        account, address, scope_value = self._key(username, client_ip, scope)
        now = self.clock()
        where = (
            login_failures.c.account_hash == account, login_failures.c.client_ip == address, login_failures.c.scope == scope_value,
        )
        for _ in range(3):  # an insert racing another worker's insert of the same pair retries as an update
            try:
                with self.engine.begin() as conn:
                    conn.execute(delete(login_failures).where(login_failures.c.last_failure_at <= now - WINDOW))
                    result = conn.execute(
                        update(login_failures).where(*where)
                        .values(failures=login_failures.c.failures + 1, last_failure_at=now)
                    )
                    if result.rowcount == 0:
                        conn.execute(
                            login_failures.insert().values(
                                account_hash=account, client_ip=address, scope=scope_value, failures=1, last_failure_at=now
                            )
                        )
                    return int(conn.execute(select(login_failures.c.failures).where(*where)).scalar_one())
            except IntegrityError:
                continue
        return self.free_failures

    def succeeded(self, username: str, client_ip: str | None) -> None:
        """Forget the pair's failures in both scopes (a successful login from that address)."""
        account, address, _ = self._key(username, client_ip, Scope.PASSWORD)
        with self.engine.begin() as conn:
            conn.execute(delete(login_failures).where(login_failures.c.account_hash == account, login_failures.c.client_ip == address))

    def unlock(self, username: str) -> int:
        """Forget every failure of an account, from every address; returns how many pairs were cleared."""
        with self.engine.begin() as conn:
            result = conn.execute(delete(login_failures).where(login_failures.c.account_hash == self.account_hash(username)))
        return int(result.rowcount)
