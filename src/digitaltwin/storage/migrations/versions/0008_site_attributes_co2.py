"""Energy accounting: free-form site attributes (CO2 factor or carbon intensity asset, connection capacity, location).

Revision ID: 0008
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot ALTER a column's constraints in place; existing sites get {}.
    with op.batch_alter_table("sites") as batch:
        batch.add_column(sa.Column("attributes", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))


def downgrade() -> None:
    with op.batch_alter_table("sites") as batch:
        batch.drop_column("attributes")
