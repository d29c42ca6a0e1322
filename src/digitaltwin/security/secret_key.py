"""The keys that sign tokens, and the refusal to run with a weak one.

Outside ``ENVIRONMENT=development`` the service refuses to start when ``SECRET_KEY`` is
missing, shorter than :data:`MIN_SECRET_LENGTH` characters, or the production guide's
placeholder. In development such a key is replaced by a random one kept in
``DATA_DIR/.secret_key`` (mode 0600), so even a demo never signs with a published secret.

``SECRET_KEY_PREVIOUS`` (the key before a rotation) only verifies, never signs, and only
until ``SECRET_KEY_PREVIOUS_UNTIL`` when that is set.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from datetime import datetime

from digitaltwin.config import PLACEHOLDER_SECRET, Settings
from digitaltwin.security.errors import InsecureConfigurationError

log = logging.getLogger(__name__)

#: Shortest accepted SECRET_KEY in characters (RFC 7518 section 3.2: an HS256 key needs >= 256 bits).
MIN_SECRET_LENGTH = 32
#: JWT_ALGORITHM values accepted: HMAC with SHA-2, the only family a shared SECRET_KEY can sign with.
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
DEV_KEY_FILE = ".secret_key"


@dataclass(frozen=True, slots=True)
class SigningKeys:
    """The current key (signs and verifies) and the previous one (verifies until ``previous_until``)."""

    current: str
    previous: str | None = None
    previous_until: datetime | None = None


def is_weak(key: str | None) -> bool:
    """True for a missing, short or placeholder key."""
    return not key or len(key) < MIN_SECRET_LENGTH or key == PLACEHOLDER_SECRET


def _development_key(settings: Settings) -> str:
    path = settings.data_dir / DEV_KEY_FILE
    if path.is_file():
        key = path.read_text(encoding="utf-8").strip()
        if not is_weak(key):
            return key
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key)
    return key


def resolve_signing_keys(settings: Settings) -> SigningKeys:
    """The keys to use, after checking them against the environment.

    Raises:
        InsecureConfigurationError: outside development, for a weak ``SECRET_KEY`` or
            ``SECRET_KEY_PREVIOUS``; in any environment, for a non-HMAC ``JWT_ALGORITHM``.
    """
    if settings.jwt_algorithm not in HMAC_ALGORITHMS:
        raise InsecureConfigurationError(
            f"JWT_ALGORITHM={settings.jwt_algorithm!r} is not supported; use one of {', '.join(sorted(HMAC_ALGORITHMS))}"
        )
    current = settings.secret_key
    if is_weak(current):
        if settings.environment != "development":
            raise InsecureConfigurationError(
                f"SECRET_KEY is missing, shorter than {MIN_SECRET_LENGTH} characters or the placeholder; "
                "refusing to start with ENVIRONMENT="
                f"{settings.environment} (generate one: python -c \"import secrets; print(secrets.token_urlsafe(48))\")"
            )
        current = _development_key(settings)
        log.warning("SECRET_KEY is weak or the placeholder: development uses the random key in %s", settings.data_dir / DEV_KEY_FILE)
    previous = settings.secret_key_previous or None
    if previous is not None and is_weak(previous):
        if settings.environment != "development":
            raise InsecureConfigurationError("SECRET_KEY_PREVIOUS is shorter than 32 characters or the placeholder")
        previous = None
    if previous is not None and settings.secret_key_previous_until is None:
        log.warning("SECRET_KEY_PREVIOUS has no SECRET_KEY_PREVIOUS_UNTIL: it verifies tokens until it is removed")
    return SigningKeys(current, previous, settings.secret_key_previous_until)
