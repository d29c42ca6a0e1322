"""Meter accounting: declared attributes of each series and the meter events energy reads.

``series.attributes`` holds what a series declares about itself (sign convention, register
modulus and direction, resolution, the current meter serial); ``meter_events`` holds meter
replacements (the old meter's final and the new meter's first reading).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from digitaltwin.storage.tables import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("series") as batch:
        batch.add_column(sa.Column("attributes", sa.JSON, nullable=True))
    op.create_table(
        "meter_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("series_id", sa.Integer, sa.ForeignKey("series.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("old_ts", UTCDateTime(), nullable=False),
        sa.Column("old_value_kwh", sa.Float, nullable=False),
        sa.Column("new_ts", UTCDateTime(), nullable=False),
        sa.Column("new_value_kwh", sa.Float, nullable=False),
        sa.Column("old_serial", sa.String(64), nullable=True),
        sa.Column("new_serial", sa.String(64), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("meter_events")
    with op.batch_alter_table("series") as batch:
        batch.drop_column("attributes")
