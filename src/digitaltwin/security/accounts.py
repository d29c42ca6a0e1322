"""User accounts and the MFA requirement of each role.

There are no default accounts: the first admin comes from ``digitaltwin users create NAME
--role admin`` (or the embedded demo, which prints a random password once). The last
active admin can neither be demoted nor disabled, so an installation cannot lock itself out.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import datetime

from digitaltwin.domain.errors import ConflictError, NotFoundError, ValidationError
from digitaltwin.security.audit import AuditEvent, AuditLog
from digitaltwin.security.login_throttle import LoginThrottle
from digitaltwin.security.passwords import check_password_strength, hash_password, verify_password
from digitaltwin.security.roles import Role
from digitaltwin.security.store import SecurityStore, UserRecord

_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def check_username(username: str, *, field: str = "username") -> str:
    """The username if it is 1-64 of ``A-Z a-z 0-9 _ . @ -`` starting alphanumeric. Raises ValidationError naming ``field``."""
    if not isinstance(username, str) or not _USERNAME.fullmatch(username):
        raise ValidationError("username must be 1-64 characters of letters, digits, '_', '.', '@' or '-'", field=field)
    return username


def parse_role(value: str, *, field: str = "role") -> Role:
    """The :class:`Role` named ``value``. Raises ValidationError naming ``field``."""
    try:
        return Role(value)
    except ValueError:
        raise ValidationError(f"unknown role {value!r}; known: {', '.join(r.value for r in Role)}", field=field) from None


class Accounts:
    """Creating, changing and listing users; role MFA policies."""

    def __init__(
        self, store: SecurityStore, audit: AuditLog, clock: Callable[[], datetime], throttle: LoginThrottle | None = None
    ) -> None:
        self.store = store
        self.audit = audit
        self.clock = clock
        self.throttle = throttle

    def create(self, username: str, password: str, role: Role, *, actor: str, client_ip: str | None = None) -> UserRecord:
        """Create an active user with an argon2id password hash.

        Raises:
            ValidationError: naming ``username`` or ``password``.
            ConflictError: naming ``username`` when it exists, also in another case (``Admin`` beside
                ``admin`` would be a look-alike in the audit log and in every list of users).
        """
        check_username(username)
        check_password_strength(password, username=username)
        taken = next((u.username for u in self.store.list_users() if u.username.casefold() == username.casefold()), None)
        if taken is not None:
            raise ConflictError(f"user {taken!r} exists (usernames differing only in case are refused)", field="username")
        now = self.clock()
        user = UserRecord(
            id=secrets.token_hex(16), username=username, password_hash=hash_password(password), role=role, active=True,
            mfa_enabled=False, mfa_secret=None, mfa_last_step=None, created_at=now, password_changed_at=now,
        )
        self.store.create_user(user)
        self.audit.record(AuditEvent.USER_CREATED, actor=actor, subject=username, client_ip=client_ip, role=role.value)
        return user

    def get(self, username: str) -> UserRecord:
        """The user named ``username``. Raises NotFoundError naming ``username``."""
        user = self.store.get_user_by_name(username)
        if user is None:
            raise NotFoundError(f"unknown user {username!r}", field="username")
        return user

    def list(self) -> list[UserRecord]:
        return self.store.list_users()

    def _guard_last_admin(self, user: UserRecord, field: str) -> None:
        if user.role is Role.ADMIN and user.active and self.store.count_active_admins() <= 1:
            raise ConflictError("the last active admin cannot be demoted or disabled", field=field)

    def update(
        self,
        username: str,
        *,
        actor: str,
        role: Role | None = None,
        active: bool | None = None,
        password: str | None = None,
        reset_mfa: bool = False,
        client_ip: str | None = None,
    ) -> UserRecord:
        """Change a user's role, state, password or MFA (admin action); every change is audited.

        Disabling, a new password and an MFA reset end the user's sessions.

        Raises:
            NotFoundError: naming ``username``.
            ConflictError: naming ``role``/``active`` for the last active admin.
            ValidationError: naming ``password``.
        """
        user = self.get(username)
        now = self.clock()
        if role is not None and role is not user.role:
            if user.role is Role.ADMIN:
                self._guard_last_admin(user, "role")
            self.store.update_user(user.id, role=role)
            self.audit.record(AuditEvent.ROLE_CHANGED, actor=actor, subject=username, client_ip=client_ip, old=user.role.value, new=role.value)
        if active is not None and active != user.active:
            if not active:
                self._guard_last_admin(user, "active")
            self.store.update_user(user.id, active=active)
            if not active:
                self.store.revoke_user_families(user.id, reason="disabled", now=now)
            self.audit.record(AuditEvent.USER_ENABLED if active else AuditEvent.USER_DISABLED, actor=actor, subject=username, client_ip=client_ip)
        if password is not None:
            check_password_strength(password, username=username)
            self.store.update_user(user.id, password_hash=hash_password(password), password_changed_at=now)
            self.store.revoke_user_families(user.id, reason="password_changed", now=now)
            self.audit.record(AuditEvent.PASSWORD_CHANGED, actor=actor, subject=username, client_ip=client_ip)
        if reset_mfa and (user.mfa_enabled or user.mfa_secret):
            self.store.update_user(user.id, mfa_enabled=False, mfa_secret=None, mfa_last_step=None)
            self.store.replace_recovery_codes(user.id, [])
            self.store.revoke_user_families(user.id, reason="mfa_reset", now=now)
            self.audit.record(AuditEvent.MFA_RESET, actor=actor, subject=username, client_ip=client_ip)
        return self.get(username)

    def unlock(self, username: str, *, actor: str, client_ip: str | None = None) -> int:
        """Forget the failed logins and codes of ``username`` from every address (admin action, audited).

        Returns how many (address, scope) counts were cleared.

        Raises:
            NotFoundError: naming ``username``.
        """
        if self.throttle is None:
            raise RuntimeError("Accounts was built without a LoginThrottle")
        user = self.get(username)
        cleared = self.throttle.unlock(user.username)
        self.audit.record(AuditEvent.USER_UNLOCKED, actor=actor, subject=user.username, client_ip=client_ip, cleared=cleared)
        return cleared

    def change_own_password(
        self, user_id: str, current: str, new: str, *, keep_session: str | None, client_ip: str | None = None
    ) -> None:
        """A user's own password change; ends their other sessions.

        Raises:
            AuthenticationError: naming ``current_password`` when it is wrong.
            ValidationError: naming ``new_password``.
        """
        from digitaltwin.security.errors import AuthenticationError

        user = self.store.get_user(user_id)
        if user is None or not verify_password(user.password_hash, current):
            raise AuthenticationError("current password is wrong", field="current_password")
        check_password_strength(new, username=user.username, field="new_password")
        now = self.clock()
        self.store.update_user(user.id, password_hash=hash_password(new), password_changed_at=now)
        self.store.revoke_user_families(user.id, reason="password_changed", now=now, keep=keep_session)
        self.audit.record(AuditEvent.PASSWORD_CHANGED, actor=f"user:{user.username}", subject=user.username, client_ip=client_ip)

    def role_policies(self) -> dict[Role, bool]:
        """Whether each role requires MFA."""
        return self.store.role_policies()

    def set_mfa_required(self, role: Role, required: bool, *, actor: str, client_ip: str | None = None) -> None:
        """Require (or stop requiring) MFA for every user of ``role``.

        Users of that role without MFA can then only reach their own account and the MFA
        enrolment routes until they enrol.
        """
        self.store.set_mfa_required(role, required)
        self.audit.record(AuditEvent.MFA_POLICY_CHANGED, actor=actor, subject=f"role:{role.value}", client_ip=client_ip, mfa_required=required)
