"""Encryption at rest of TOTP secrets (``users.mfa_secret``) with Fernet (``cryptography``).

A TOTP seed must be readable by the server (it computes the expected code), so unlike
passwords it cannot be hashed; it is stored as a Fernet token (AES-128-CBC + HMAC-SHA256,
authenticated) under a key that is never in the database, so a database dump or backup alone
does not give anyone's second factor.

Keys, first match wins:

* ``MFA_ENCRYPTION_KEY``: comma-separated Fernet keys (``Fernet.generate_key()``). The first
  encrypts; all decrypt.
* otherwise keys derived from ``SECRET_KEY`` (and ``SECRET_KEY_PREVIOUS``, decrypting only)
  with HKDF-SHA256 (RFC 5869), info :data:`HKDF_INFO`.

Rotation: put the new key first (``MFA_ENCRYPTION_KEY=new,old``; or rotate ``SECRET_KEY`` with
the old one in ``SECRET_KEY_PREVIOUS``), restart, run ``digitaltwin users rotate-mfa-key``
(re-encrypts every stored secret under the first key), then drop the old key.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from digitaltwin.config import Settings

#: HKDF ``info`` of the key derived from SECRET_KEY (separates it from the token-signing use).
HKDF_INFO = b"digitaltwin/mfa-secret-encryption/v1"
#: Every Fernet token starts with this (version byte 0x80, base64url): tells a token from a clear seed.
FERNET_PREFIX = "gAAAAA"


class MfaSecretError(RuntimeError):
    """A stored TOTP secret cannot be decrypted with the configured keys (wrong or missing key)."""


def derive_key(secret: str) -> bytes:
    """A Fernet key (urlsafe base64 of 32 bytes) derived from ``secret`` with HKDF-SHA256."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(secret.encode())
    return base64.urlsafe_b64encode(raw)


class MfaCipher:
    """Encrypts and decrypts TOTP secrets.

    Args:
        keys: Fernet keys, the first encrypting; all decrypt.

    Raises:
        ValueError: for no key or a malformed one.
    """

    def __init__(self, keys: Sequence[bytes | str]) -> None:
        if not keys:
            raise ValueError("MFA_ENCRYPTION_KEY: at least one key is needed")
        try:
            self._fernet = MultiFernet([Fernet(k) for k in keys])
        except (ValueError, TypeError):
            raise ValueError("MFA_ENCRYPTION_KEY: each key must be 32 url-safe base64-encoded bytes (Fernet.generate_key())") from None

    @classmethod
    def from_settings(cls, settings: Settings, *, secret_key: str, previous_secret_key: str | None = None) -> MfaCipher:
        """The cipher of ``MFA_ENCRYPTION_KEY``, or of keys derived from the (resolved) signing keys."""
        if settings.mfa_encryption_key:
            return cls([k.strip() for k in settings.mfa_encryption_key.split(",") if k.strip()])
        keys = [derive_key(secret_key)]
        if previous_secret_key:
            keys.append(derive_key(previous_secret_key))
        return cls(keys)

    def encrypt(self, secret: str) -> str:
        """The Fernet token of a base32 seed, under the first key."""
        return self._fernet.encrypt(secret.encode()).decode()

    def decrypt(self, stored: str) -> str:
        """The seed of a stored token.

        Raises:
            MfaSecretError: when no configured key opens it.
        """
        try:
            return self._fernet.decrypt(stored.encode()).decode()
        except InvalidToken:
            raise MfaSecretError(
                "a stored MFA secret cannot be decrypted: MFA_ENCRYPTION_KEY (or SECRET_KEY) is not the key it was stored with"
            ) from None

    def rotate(self, stored: str) -> str:
        """The same seed encrypted under the first key (for ``digitaltwin users rotate-mfa-key``)."""
        try:
            return self._fernet.rotate(stored.encode()).decode()
        except InvalidToken:
            raise MfaSecretError("a stored MFA secret cannot be decrypted with any configured key") from None


def is_encrypted(stored: str) -> bool:
    """True when ``stored`` is a Fernet token rather than a clear base32 seed (which has no lowercase letters)."""
    return stored.startswith(FERNET_PREFIX)


def cipher_for(settings: Settings) -> MfaCipher:
    """The cipher of ``settings``, with the signing keys resolved as the API resolves them."""
    from digitaltwin.security.secret_key import resolve_signing_keys

    keys = resolve_signing_keys(settings)
    return MfaCipher.from_settings(settings, secret_key=keys.current, previous_secret_key=keys.previous)
