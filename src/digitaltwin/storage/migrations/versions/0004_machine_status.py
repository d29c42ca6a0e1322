"""MQTT ingestion: the machine_status table (latest RUN/IDLE/STOP of each asset, by event time).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from digitaltwin.storage.tables import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "machine_status",
        sa.Column("asset_id", sa.String(64), sa.ForeignKey("assets.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("ts", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("machine_status")
