"""Storage of accounts, login sessions, refresh tokens, recovery codes, role policies, API keys and the audit log.

SQLAlchemy Core on the tables of migrations 0003 and 0005; works on SQLite and PostgreSQL.
Secrets are never stored in clear: passwords as argon2id hashes, refresh tokens,
recovery codes and API key secrets as SHA-256 hex digests (they are 256-, 80- and
256-bit random values, so a fast hash is enough), TOTP seeds as Fernet tokens under a key
kept outside the database (:mod:`.mfa_cipher`; this store only moves the tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from digitaltwin.domain.errors import ConflictError
from digitaltwin.security.roles import Role
from digitaltwin.storage.tables import (
    api_keys,
    audit_log,
    recovery_codes,
    refresh_tokens,
    role_policies,
    spent_mfa_challenges,
    token_families,
    users,
)


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A stored account (``password_hash`` is argon2id; ``mfa_secret`` is the encrypted TOTP seed, see :mod:`.mfa_cipher`)."""

    id: str
    username: str
    password_hash: str
    role: Role
    active: bool
    mfa_enabled: bool
    mfa_secret: str | None
    mfa_last_step: int | None
    created_at: datetime
    password_changed_at: datetime


@dataclass(frozen=True, slots=True)
class FamilyRecord:
    """A login session: all refresh tokens rotated from one login. ``amr`` is ``pwd`` or ``mfa``."""

    id: str
    user_id: str
    amr: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_reason: str | None


@dataclass(frozen=True, slots=True)
class RefreshRecord:
    """One refresh token of a family; ``used_at`` is set when it was exchanged."""

    id: str
    family_id: str
    issued_at: datetime
    used_at: datetime | None


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """A device or integration key; the secret itself is only known to its holder."""

    id: str
    name: str
    secret_hash: str
    scopes: tuple[str, ...]
    site_id: str | None
    created_by: str | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit log entry."""

    id: int
    ts: datetime
    event: str
    success: bool
    actor: str | None
    subject: str | None
    client_ip: str | None
    detail: dict[str, Any]


def _user(row: Any) -> UserRecord:
    return UserRecord(
        row.id, row.username, row.password_hash, Role(row.role), bool(row.active), bool(row.mfa_enabled),
        row.mfa_secret, row.mfa_last_step, row.created_at, row.password_changed_at,
    )


def _family(row: Any) -> FamilyRecord:
    return FamilyRecord(row.id, row.user_id, row.amr, row.created_at, row.expires_at, row.revoked_at, row.revoked_reason)


def _key(row: Any) -> ApiKeyRecord:
    return ApiKeyRecord(
        row.id, row.name, row.secret_hash, tuple(row.scopes or ()), row.site_id, row.created_by,
        row.created_at, row.expires_at, row.last_used_at, row.revoked_at,
    )


#: The per-request read of :meth:`SecurityStore.session_state`, built once: SQLAlchemy then
#: reuses its compiled form without computing the statement's cache key again.
_SESSION_STATE = (
    select(
        users,
        token_families.c.amr.label("f_amr"),
        token_families.c.created_at.label("f_created_at"),
        token_families.c.expires_at.label("f_expires_at"),
        token_families.c.revoked_at.label("f_revoked_at"),
        token_families.c.revoked_reason.label("f_revoked_reason"),
        role_policies.c.mfa_required,
    )
    .select_from(token_families)
    .join(users, users.c.id == token_families.c.user_id)
    .outerjoin(role_policies, role_policies.c.role == users.c.role)
    .where(token_families.c.id == bindparam("family_id"), users.c.id == bindparam("user_id"))
)


class SecurityStore:
    """Reads and writes of the security tables on one engine."""

    def __init__(self, engine: Engine, *, on_change: Callable[[], None] | None = None) -> None:
        """``on_change`` is called after each committed change that can end or alter what an
        access token stands for (users, sessions, role policies): the per-process session
        cache's invalidation (:mod:`digitaltwin.security.principal_cache`)."""
        self.engine = engine
        self.on_change = on_change

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    # --- users ---------------------------------------------------------------------------------

    def create_user(self, user: UserRecord) -> UserRecord:
        """Insert ``user``. Raises ConflictError naming ``username`` when it is taken."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(users).values(
                        id=user.id, username=user.username, password_hash=user.password_hash, role=user.role.value,
                        active=user.active, mfa_secret=user.mfa_secret, mfa_enabled=user.mfa_enabled,
                        mfa_last_step=user.mfa_last_step, created_at=user.created_at,
                        password_changed_at=user.password_changed_at,
                    )
                )
        except IntegrityError:
            raise ConflictError(f"user {user.username!r} exists", field="username") from None
        return user

    def get_user(self, user_id: str) -> UserRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.id == user_id)).first()
        return _user(row) if row else None

    def get_user_by_name(self, username: str) -> UserRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.username == username)).first()
        return _user(row) if row else None

    def list_users(self) -> list[UserRecord]:
        with self.engine.connect() as conn:
            return [_user(r) for r in conn.execute(select(users).order_by(users.c.username))]

    def update_user(self, user_id: str, **values: Any) -> None:
        """Set columns of one user (``role`` may be a :class:`Role`)."""
        if "role" in values:
            values["role"] = Role(values["role"]).value
        with self.engine.begin() as conn:
            conn.execute(update(users).where(users.c.id == user_id).values(**values))
        self._changed()

    def count_active_admins(self) -> int:
        with self.engine.connect() as conn:
            query = select(func.count()).select_from(users).where(users.c.role == Role.ADMIN.value, users.c.active.is_(True))
            return int(conn.execute(query).scalar_one())

    def advance_totp_step(self, user_id: str, step: int) -> bool:
        """Record ``step`` as the last used TOTP time step; False when it (or a later one) was used already."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(users)
                .where(users.c.id == user_id, or_(users.c.mfa_last_step.is_(None), users.c.mfa_last_step < step))
                .values(mfa_last_step=step)
            )
        return result.rowcount == 1

    def mfa_secrets(self) -> list[tuple[str, str]]:
        """(user id, stored secret) of every user with one."""
        with self.engine.connect() as conn:
            query = select(users.c.id, users.c.mfa_secret).where(users.c.mfa_secret.is_not(None))
            return [(r.id, r.mfa_secret) for r in conn.execute(query)]

    def spend_mfa_challenge(self, jti: str, expires_at: datetime, now: datetime) -> bool:
        """Record an MFA challenge as presented; False when it was presented before (atomic: the key is unique).

        Challenges past their expiry are dropped at the same time (they are refused by their ``exp`` anyway).
        """
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(spent_mfa_challenges).where(spent_mfa_challenges.c.expires_at < now))
                conn.execute(insert(spent_mfa_challenges).values(jti=jti, expires_at=expires_at))
        except IntegrityError:
            return False
        return True

    # --- role policies --------------------------------------------------------------------------

    def role_policies(self) -> dict[Role, bool]:
        """MFA requirement of every role (False where none was set)."""
        with self.engine.connect() as conn:
            stored = {Role(r.role): bool(r.mfa_required) for r in conn.execute(select(role_policies))}
        return {role: stored.get(role, False) for role in Role}

    def set_mfa_required(self, role: Role, required: bool) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(role_policies).where(role_policies.c.role == role.value))
            conn.execute(insert(role_policies).values(role=role.value, mfa_required=required))
        self._changed()

    # --- sessions and refresh tokens ------------------------------------------------------------

    def create_family(self, family: FamilyRecord) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(token_families).values(
                    id=family.id, user_id=family.user_id, amr=family.amr, created_at=family.created_at,
                    expires_at=family.expires_at, revoked_at=None, revoked_reason=None,
                )
            )

    def get_family(self, family_id: str) -> FamilyRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(token_families).where(token_families.c.id == family_id)).first()
        return _family(row) if row else None

    def session_state(self, user_id: str, family_id: str) -> tuple[UserRecord | None, FamilyRecord | None, bool]:
        """The user, their session ``family_id`` and whether the user's role requires MFA, read per request.

        One indexed query (session by primary key, joined to its user and the role's policy),
        so every request sees the session's revocation and the user's current state. Returns
        ``(None, None, False)`` unless the session exists and belongs to ``user_id``.
        """
        with self.engine.connect() as conn:
            row = conn.execute(_SESSION_STATE, {"family_id": family_id, "user_id": user_id}).first()
        if row is None:
            return None, None, False
        family = FamilyRecord(
            family_id, row.id, row.f_amr, row.f_created_at, row.f_expires_at, row.f_revoked_at, row.f_revoked_reason
        )
        return _user(row), family, bool(row.mfa_required)

    def set_family_amr(self, family_id: str, amr: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(token_families).where(token_families.c.id == family_id).values(amr=amr))
        self._changed()

    def add_refresh_token(self, token: RefreshRecord, token_hash: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(refresh_tokens).values(
                    id=token.id, family_id=token.family_id, token_hash=token_hash, issued_at=token.issued_at, used_at=None
                )
            )

    def find_refresh_token(self, token_hash: str) -> tuple[RefreshRecord, FamilyRecord] | None:
        """The token with this hash and its family, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(refresh_tokens, token_families.c.user_id, token_families.c.amr, token_families.c.created_at,
                       token_families.c.expires_at, token_families.c.revoked_at, token_families.c.revoked_reason)
                .join(token_families, token_families.c.id == refresh_tokens.c.family_id)
                .where(refresh_tokens.c.token_hash == token_hash)
            ).first()
        if row is None:
            return None
        token = RefreshRecord(row.id, row.family_id, row.issued_at, row.used_at)
        family = FamilyRecord(row.family_id, row.user_id, row.amr, row.created_at, row.expires_at, row.revoked_at, row.revoked_reason)
        return token, family

    def spend_refresh_token(self, token_id: str, now: datetime) -> bool:
        """Mark the token used; False when it was used already (atomic, so two racing refreshes cannot both win)."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(refresh_tokens)
                .where(refresh_tokens.c.id == token_id, refresh_tokens.c.used_at.is_(None))
                .values(used_at=now)
            )
        return result.rowcount == 1

    def revoke_family(self, family_id: str, *, reason: str, now: datetime) -> bool:
        """Revoke one session; False when it was revoked already."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(token_families)
                .where(token_families.c.id == family_id, token_families.c.revoked_at.is_(None))
                .values(revoked_at=now, revoked_reason=reason)
            )
        self._changed()
        return result.rowcount == 1

    def revoke_user_families(self, user_id: str, *, reason: str, now: datetime, keep: str | None = None) -> int:
        """Revoke every open session of a user except ``keep``; returns how many."""
        conditions = [token_families.c.user_id == user_id, token_families.c.revoked_at.is_(None)]
        if keep is not None:
            conditions.append(token_families.c.id != keep)
        with self.engine.begin() as conn:
            result = conn.execute(update(token_families).where(and_(*conditions)).values(revoked_at=now, revoked_reason=reason))
        self._changed()
        return int(result.rowcount)

    # --- recovery codes -------------------------------------------------------------------------

    def replace_recovery_codes(self, user_id: str, code_hashes: Sequence[str]) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(recovery_codes).where(recovery_codes.c.user_id == user_id))
            if code_hashes:
                conn.execute(insert(recovery_codes), [{"user_id": user_id, "code_hash": h, "used_at": None} for h in code_hashes])

    def use_recovery_code(self, user_id: str, code_hash: str, now: datetime) -> bool:
        """Spend an unused code of this user; False when there is none with this hash."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(recovery_codes)
                .where(recovery_codes.c.user_id == user_id, recovery_codes.c.code_hash == code_hash, recovery_codes.c.used_at.is_(None))
                .values(used_at=now)
            )
        return result.rowcount >= 1

    def unused_recovery_codes(self, user_id: str) -> int:
        with self.engine.connect() as conn:
            query = select(func.count()).select_from(recovery_codes).where(
                recovery_codes.c.user_id == user_id, recovery_codes.c.used_at.is_(None)
            )
            return int(conn.execute(query).scalar_one())

    # --- API keys -------------------------------------------------------------------------------

    def create_api_key(self, key: ApiKeyRecord) -> ApiKeyRecord:
        with self.engine.begin() as conn:
            conn.execute(
                insert(api_keys).values(
                    id=key.id, name=key.name, secret_hash=key.secret_hash, scopes=list(key.scopes), site_id=key.site_id,
                    created_by=key.created_by, created_at=key.created_at, expires_at=key.expires_at,
                    last_used_at=None, revoked_at=None,
                )
            )
        return key

    def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
        return _key(row) if row else None

    def list_api_keys(self) -> list[ApiKeyRecord]:
        with self.engine.connect() as conn:
            return [_key(r) for r in conn.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id))]

    def revoke_api_key(self, key_id: str, now: datetime) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)).values(revoked_at=now)
            )
        return result.rowcount == 1

    def touch_api_key(self, key_id: str, now: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=now))

    # --- audit log ------------------------------------------------------------------------------

    def record_audit(
        self, *, ts: datetime, event: str, success: bool, actor: str | None, subject: str | None,
        client_ip: str | None, detail: dict[str, Any],
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(audit_log).values(
                    ts=ts, event=event, success=success, actor=actor, subject=subject, client_ip=client_ip, detail=detail
                )
            )

    def list_audit(self, *, limit: int, event: str | None = None, before_id: int | None = None) -> list[AuditRecord]:
        """Newest first."""
        query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if event is not None:
            query = query.where(audit_log.c.event == event)
        if before_id is not None:
            query = query.where(audit_log.c.id < before_id)
        with self.engine.connect() as conn:
            return [
                AuditRecord(r.id, r.ts, r.event, bool(r.success), r.actor, r.subject, r.client_ip, dict(r.detail or {}))
                for r in conn.execute(query)
            ]
