"""The security facade the API, the CLI and the demo use: one object per engine and settings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from digitaltwin.config import Settings
from digitaltwin.security.accounts import Accounts
from digitaltwin.security.api_keys import ApiKeys
from digitaltwin.security.audit import AuditLog
from digitaltwin.security.errors import AuthenticationError
from digitaltwin.security.hash_gate import HashGate, default_concurrency
from digitaltwin.security.login_throttle import LoginThrottle, throttle_key
from digitaltwin.security.mfa import Mfa
from digitaltwin.security.mfa_cipher import MfaCipher
from digitaltwin.security.principal import Principal
from digitaltwin.security.principal_cache import PrincipalCache, epoch_for
from digitaltwin.security.secret_key import SigningKeys, resolve_signing_keys
from digitaltwin.security.sessions import Sessions
from digitaltwin.security.store import SecurityStore
from digitaltwin.security.tokens import TokenCodec


def _now() -> datetime:
    return datetime.now(UTC)


class SecurityService:
    """Accounts, sessions, MFA, API keys and the audit log on one database.

    Args:
        settings: ``SECRET_KEY`` (checked, see :mod:`.secret_key`), ``JWT_ALGORITHM``,
            ``ACCESS_TOKEN_EXPIRE_MINUTES``, ``JWT_LEEWAY_SECONDS``, ``REFRESH_TOKEN_EXPIRE_DAYS``,
            ``LOGIN_RATE_LIMIT``, ``LOGIN_MAX_DELAY_SECONDS``, ``LOGIN_HASH_CONCURRENCY``,
            ``LOGIN_HASH_QUEUE``, ``MFA_ENCRYPTION_KEY``.
        engine: the product's database (migrated to 0003 or later).
        keys: signing keys; default: resolved from ``settings``.
        clock: current UTC time.

    Raises:
        InsecureConfigurationError: for a weak key outside development.
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        keys: SigningKeys | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.settings = settings
        self.clock = clock
        keys = keys or resolve_signing_keys(settings)
        epoch = epoch_for(settings)
        self.store = SecurityStore(engine, on_change=epoch.bump if epoch is not None else None)
        cache = PrincipalCache(epoch, ttl_s=settings.auth_cache_seconds) if epoch is not None else None
        self.audit = AuditLog(self.store, clock)
        self.codec = TokenCodec(
            keys,
            algorithm=settings.jwt_algorithm,
            access_ttl=timedelta(minutes=settings.access_token_expire_minutes),
            leeway_s=settings.jwt_leeway_seconds,
            clock=clock,
        )
        cipher = MfaCipher.from_settings(settings, secret_key=keys.current, previous_secret_key=keys.previous)
        self.mfa = Mfa(self.store, self.audit, clock, cipher)
        self.api_keys = ApiKeys(self.store, self.audit, clock)
        self.throttle = LoginThrottle(
            engine, key=throttle_key(keys.current), free_failures=settings.login_rate_limit,
            max_delay_s=settings.login_max_delay_seconds, clock=clock,
        )
        self.accounts = Accounts(self.store, self.audit, clock, self.throttle)
        self.sessions = Sessions(
            self.store, self.codec, self.mfa, self.audit, self.throttle,
            refresh_ttl=timedelta(days=settings.refresh_token_expire_days), clock=clock, cache=cache,
        )
        #: Bounds the password checks running at once in this process (see :mod:`.hash_gate`).
        self.hash_gate = HashGate(concurrency=settings.login_hash_concurrency or default_concurrency(), queue=settings.login_hash_queue)

    def cached_principal(self, *, bearer: str | None, api_key: str | None, epoch: int | None) -> Principal | None:
        """The caller behind a bearer token whose session this process has cached under the
        security ``epoch`` (read by the rate limiter for this request), found without I/O; None
        when :meth:`authenticate` must run (API keys, nothing cached, no epoch).

        Raises:
            AuthenticationError: naming ``Authorization`` for a token that fails verification.
        """
        if not bearer or api_key:
            return None
        return self.sessions.cached(bearer, epoch)

    def authenticate(self, *, bearer: str | None, api_key: str | None, epoch: int | None = None) -> Principal:
        """The caller behind an access token or an API key (exactly one of them).

        ``epoch``: the security epoch read at the start of the request, if any (see
        :mod:`.principal_cache`); read here otherwise.

        Raises:
            AuthenticationError: naming ``Authorization`` or ``X-API-Key``.
        """
        if bearer and api_key:
            raise AuthenticationError("send either a bearer token or an API key, not both")
        if api_key:
            return self.api_keys.authenticate(api_key)
        if bearer:
            return self.sessions.authenticate(bearer, epoch=epoch)
        raise AuthenticationError("not authenticated: send 'Authorization: Bearer <access token>' or 'X-API-Key: <key>'")
