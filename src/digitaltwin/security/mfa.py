"""Multi-factor authentication: TOTP (RFC 6238, pyotp) and single-use recovery codes.

TOTP uses 30-second steps, 6 digits and HMAC-SHA1 (what authenticator apps implement);
one step of drift either way is accepted (RFC 6238 section 5.2) and each step can be
used once per account (a code seen by a shoulder-surfer cannot be replayed).
Recovery codes are 16 base32 characters (80 random bits) shown once as ``XXXX-XXXX-XXXX-XXXX``
and stored as SHA-256 digests; each works once. TOTP seeds are stored encrypted
(:mod:`.mfa_cipher`). Enabling MFA ends the user's other sessions (they were opened with the
password alone), as a password change does.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import pyotp

from digitaltwin.domain.errors import ConflictError, ValidationError
from digitaltwin.security.audit import AuditEvent, AuditLog
from digitaltwin.security.errors import AuthenticationError
from digitaltwin.security.mfa_cipher import MfaCipher
from digitaltwin.security.store import SecurityStore, UserRecord

ISSUER = "Digital Twin Energy"
RECOVERY_CODE_COUNT = 10
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_TOTP = re.compile(r"^\d{6}$")


@dataclass(frozen=True, slots=True)
class Enrolment:
    """A pending TOTP secret and its ``otpauth://`` URI (for a QR code)."""

    secret: str
    otpauth_uri: str


def _normalise_recovery(code: str) -> str:
    return code.replace("-", "").replace(" ", "").upper()


def hash_recovery_code(code: str) -> str:
    """SHA-256 hex digest of a recovery code, ignoring dashes, spaces and case."""
    return hashlib.sha256(_normalise_recovery(code).encode()).hexdigest()


def new_recovery_codes(count: int = RECOVERY_CODE_COUNT) -> list[str]:
    """``count`` fresh codes formatted ``XXXX-XXXX-XXXX-XXXX``."""
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(_BASE32) for _ in range(16))
        codes.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
    return codes


class Mfa:
    """TOTP enrolment, confirmation, verification and recovery codes."""

    def __init__(self, store: SecurityStore, audit: AuditLog, clock: Callable[[], datetime], cipher: MfaCipher) -> None:
        self.store = store
        self.audit = audit
        self.clock = clock
        self.cipher = cipher

    def enrol(self, user: UserRecord) -> Enrolment:
        """Start enrolment with a new secret (replacing an unconfirmed one).

        Raises:
            ConflictError: naming ``mfa`` when MFA is already enabled.
        """
        if user.mfa_enabled:
            raise ConflictError("multi-factor authentication is already enabled", field="mfa")
        secret = pyotp.random_base32()  # 32 base32 characters = 160 bits, RFC 4226's recommended length
        self.store.update_user(user.id, mfa_secret=self.cipher.encrypt(secret), mfa_last_step=None)
        uri = pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=ISSUER)
        return Enrolment(secret, uri)

    def _check_totp(self, user: UserRecord, code: str) -> bool:
        if not user.mfa_secret or not _TOTP.fullmatch(code):
            return False
        totp = pyotp.TOTP(self.cipher.decrypt(user.mfa_secret))
        now_step = totp.timecode(self.clock())
        for step in (now_step, now_step - 1, now_step + 1):
            if hmac.compare_digest(totp.generate_otp(step), code):
                return self.store.advance_totp_step(user.id, step)
        return False

    def confirm(self, user: UserRecord, code: str, *, session_id: str | None, client_ip: str | None = None) -> list[str]:
        """Enable MFA after a correct code from the pending secret; returns the recovery codes (shown once).

        The session the confirmation came from counts as multi-factor from now on; the user's
        other sessions, opened with the password alone, are revoked.

        Raises:
            ConflictError: naming ``mfa`` without a pending enrolment or when already enabled.
            ValidationError: naming ``code`` for a wrong code.
        """
        if user.mfa_enabled:
            raise ConflictError("multi-factor authentication is already enabled", field="mfa")
        if not user.mfa_secret:
            raise ConflictError("no pending enrolment; POST /api/v1/auth/mfa/enroll first", field="mfa")
        if not self._check_totp(user, code.strip()):
            raise ValidationError("wrong or already used code", field="code")
        codes = new_recovery_codes()
        self.store.update_user(user.id, mfa_enabled=True)
        self.store.replace_recovery_codes(user.id, [hash_recovery_code(c) for c in codes])
        if session_id:
            self.store.set_family_amr(session_id, "mfa")
        self.store.revoke_user_families(user.id, reason="mfa_enabled", now=self.clock(), keep=session_id)
        self.audit.record(AuditEvent.MFA_ENABLED, actor=f"user:{user.username}", subject=user.username, client_ip=client_ip)
        return codes

    def verify(self, user: UserRecord, code: str, *, field: str = "code", client_ip: str | None = None) -> str:
        """Check a TOTP code or spend a recovery code of an MFA user; returns ``totp`` or ``recovery``.

        Raises:
            AuthenticationError: naming ``field`` for a wrong, replayed or spent code.
        """
        code = (code or "").strip()
        if user.mfa_enabled:
            if self._check_totp(user, code):
                return "totp"
            if len(_normalise_recovery(code)) == 16 and self.store.use_recovery_code(user.id, hash_recovery_code(code), self.clock()):
                left = self.store.unused_recovery_codes(user.id)
                self.audit.record(AuditEvent.RECOVERY_CODE_USED, actor=f"user:{user.username}", subject=user.username, client_ip=client_ip, left=left)
                return "recovery"
        self.audit.record(AuditEvent.MFA_FAILED, success=False, subject=user.username, client_ip=client_ip)
        raise AuthenticationError("wrong or already used code", field=field)

    def regenerate_recovery_codes(self, user: UserRecord, code: str, *, client_ip: str | None = None) -> list[str]:
        """New recovery codes (the old ones stop working), after a valid code."""
        if not user.mfa_enabled:
            raise ConflictError("multi-factor authentication is not enabled", field="mfa")
        self.verify(user, code, client_ip=client_ip)
        codes = new_recovery_codes()
        self.store.replace_recovery_codes(user.id, [hash_recovery_code(c) for c in codes])
        self.audit.record(AuditEvent.RECOVERY_CODES_REGENERATED, actor=f"user:{user.username}", subject=user.username, client_ip=client_ip)
        return codes

    def disable(self, user: UserRecord, code: str, *, required_by_role: bool, client_ip: str | None = None) -> None:
        """Turn MFA off after a valid code, unless the user's role requires it.

        Raises:
            ConflictError: naming ``mfa`` when not enabled or required for the role.
            AuthenticationError: naming ``code``.
        """
        if not user.mfa_enabled:
            raise ConflictError("multi-factor authentication is not enabled", field="mfa")
        if required_by_role:
            raise ConflictError(f"role {user.role.value} requires multi-factor authentication", field="mfa")
        self.verify(user, code, client_ip=client_ip)
        self.store.update_user(user.id, mfa_enabled=False, mfa_secret=None, mfa_last_step=None)
        self.store.replace_recovery_codes(user.id, [])
        self.audit.record(AuditEvent.MFA_DISABLED, actor=f"user:{user.username}", subject=user.username, client_ip=client_ip)
