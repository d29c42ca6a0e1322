"""Security hardening: TOTP secrets encrypted at rest, login failures per account and address, spent MFA challenges.

Existing clear ``users.mfa_secret`` values are encrypted with the key of the settings handed to
:func:`digitaltwin.storage.db.migrate` (``MFA_ENCRYPTION_KEY``, or derived from ``SECRET_KEY``;
see :mod:`digitaltwin.security.mfa_cipher`). ``digitaltwin migrate``, ``serve`` and
``users`` pass them; a migration without settings stops before changing anything when there
is a clear secret to encrypt. The downgrade decrypts them again.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from digitaltwin.storage.tables import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_users = sa.table("users", sa.column("id", sa.String), sa.column("mfa_secret", sa.String))


def _cipher():  # type: ignore[no-untyped-def]
    """The MFA cipher of the settings given to migrate(), or None."""
    settings = context.config.attributes.get("settings")
    if settings is None:
        return None
    from digitaltwin.security.mfa_cipher import cipher_for

    return cipher_for(settings)


def _secrets(conn: sa.Connection) -> list[tuple[str, str]]:
    return [(r.id, r.mfa_secret) for r in conn.execute(sa.select(_users.c.id, _users.c.mfa_secret).where(_users.c.mfa_secret.is_not(None)))]


def upgrade() -> None:
    from digitaltwin.security.mfa_cipher import is_encrypted

    conn = op.get_bind()
    clear = [(uid, secret) for uid, secret in _secrets(conn) if not is_encrypted(secret)]
    cipher = _cipher() if clear else None
    if clear and cipher is None:
        raise RuntimeError(
            f"{len(clear)} TOTP secret(s) must be encrypted and no settings were given to the migration: "
            "run `digitaltwin migrate` with SECRET_KEY (and MFA_ENCRYPTION_KEY if used) set"
        )
    with op.batch_alter_table("users") as batch:
        batch.alter_column("mfa_secret", existing_type=sa.String(64), type_=sa.String(512), existing_nullable=True)
    for uid, secret in clear:
        conn.execute(sa.update(_users).where(_users.c.id == uid).values(mfa_secret=cipher.encrypt(secret)))
    op.create_table(
        "login_failures",
        sa.Column("account_hash", sa.String(64), primary_key=True),
        sa.Column("client_ip", sa.String(64), primary_key=True),
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_failure_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_login_failures_last_failure_at", "login_failures", ["last_failure_at"])
    op.create_table(
        "spent_mfa_challenges",
        sa.Column("jti", sa.String(64), primary_key=True),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_spent_mfa_challenges_expires_at", "spent_mfa_challenges", ["expires_at"])


def downgrade() -> None:
    from digitaltwin.security.mfa_cipher import is_encrypted

    op.drop_index("ix_spent_mfa_challenges_expires_at", table_name="spent_mfa_challenges")
    op.drop_table("spent_mfa_challenges")
    op.drop_index("ix_login_failures_last_failure_at", table_name="login_failures")
    op.drop_table("login_failures")
    conn = op.get_bind()
    sealed = [(uid, secret) for uid, secret in _secrets(conn) if is_encrypted(secret)]
    cipher = _cipher() if sealed else None
    if sealed and cipher is None:
        raise RuntimeError("encrypted TOTP secrets need the settings (their key) to be decrypted on downgrade")
    for uid, secret in sealed:
        conn.execute(sa.update(_users).where(_users.c.id == uid).values(mfa_secret=cipher.decrypt(secret)))
    with op.batch_alter_table("users") as batch:
        batch.alter_column("mfa_secret", existing_type=sa.String(512), type_=sa.String(64), existing_nullable=True)
