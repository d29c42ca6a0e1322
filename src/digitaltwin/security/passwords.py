"""Password hashing with argon2id (argon2-cffi).

Parameters are argon2-cffi's defaults, RFC 9106's "second recommended option"
(t=3 iterations, m=64 MiB, p=4 lanes). A stored hash made with weaker parameters
is upgraded at the next successful login (:func:`needs_rehash`).
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from digitaltwin.domain.errors import ValidationError

_HASHER = PasswordHasher()  # argon2id by default

#: Shortest accepted password (NIST SP 800-63B-4 asks at least 15 for password-only; 12 with MFA available).
MIN_PASSWORD_LENGTH = 12
#: Longest accepted password, bounding the hashing work one request can cause.
MAX_PASSWORD_LENGTH = 1024

# Hash of a random password, verified against when the user does not exist so that
# unknown and known usernames take the same time to fail.
_DUMMY_HASH = _HASHER.hash("dummy-password-never-valid-9f1c")


def check_password_strength(password: str, *, username: str | None = None, field: str = "password") -> None:
    """Reject passwords that are too short, too long, or equal to the username.

    Raises:
        ValidationError: naming ``field``.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(f"password must have at least {MIN_PASSWORD_LENGTH} characters", field=field)
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationError(f"password must have at most {MAX_PASSWORD_LENGTH} characters", field=field)
    if username and password.casefold() == username.casefold():
        raise ValidationError("password must differ from the username", field=field)


def hash_password(password: str) -> str:
    """argon2id hash in PHC string format (``$argon2id$v=19$m=65536,t=3,p=4$...``)."""
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when ``password`` matches ``stored_hash``; ``None`` (no such user) is checked against a dummy hash."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        ok = _HASHER.verify(stored_hash or _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return ok and stored_hash is not None


def needs_rehash(stored_hash: str) -> bool:
    """True when ``stored_hash`` was made with other parameters than the current ones."""
    return _HASHER.check_needs_rehash(stored_hash)
