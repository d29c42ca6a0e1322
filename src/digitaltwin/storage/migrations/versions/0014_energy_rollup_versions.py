"""Energy rollups: a version per series' rollup state, bumped by every write of its cells.

A refresh stores its cells only if the version it read is still the stored one (compare and
set), so two refreshes of one series in different processes cannot interleave their writes,
and a reader can tell that the cells changed while it read them (services/energy_rollups.py).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("energy_rollup_state") as batch:
        batch.add_column(sa.Column("version", sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("energy_rollup_state") as batch:
        batch.drop_column("version")
