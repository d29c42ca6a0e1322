"""Energy accounting: free-form site attributes (CO2 factor or carbon intensity asset, connection capacity, location).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN on both backends (SQLite accepts NOT NULL with a constant default): a batch
    # rebuild of ``sites`` on SQLite, which runs with foreign keys on, would cascade-delete every asset.
    op.add_column("sites", sa.Column("attributes", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))


def downgrade() -> None:
    # DROP COLUMN in place (SQLite >= 3.35), for the same reason: no rebuild of the table.
    op.execute("ALTER TABLE sites DROP COLUMN attributes")
