"""Energy rollups: per series and 15-minute UTC cell, energy, coverage, counts and peak.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "energy_rollups",
        sa.Column("series_id", sa.Integer, sa.ForeignKey("series.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("cell_s", sa.BigInteger, primary_key=True),
        sa.Column("energy_kwh", sa.Float, nullable=False),
        sa.Column("covered_s", sa.Float, nullable=False),
        sa.Column("import_kwh", sa.Float, nullable=False),
        sa.Column("export_kwh", sa.Float, nullable=False),
        sa.Column("sample_count", sa.Integer, nullable=False),
        sa.Column("peak_power_kw", sa.Float, nullable=True),
    )
    op.create_table(
        "energy_rollup_state",
        sa.Column("series_id", sa.Integer, sa.ForeignKey("series.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("rules_key", sa.Text, nullable=False),
        sa.Column("frontier_s", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "energy_rollup_dirty",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("series_id", sa.Integer, nullable=False),
        sa.Column("lo_s", sa.Float, nullable=False),
        sa.Column("hi_s", sa.Float, nullable=False),
    )
    op.create_index("ix_energy_rollup_dirty_series_id", "energy_rollup_dirty", ["series_id"])
    op.create_table(
        "energy_rollup_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("series_id", sa.Integer, sa.ForeignKey("series.id", ondelete="CASCADE"), nullable=False),
        sa.Column("start_s", sa.Float, nullable=False),
        sa.Column("end_s", sa.Float, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index("ix_energy_rollup_events_series_start", "energy_rollup_events", ["series_id", "start_s"])


def downgrade() -> None:
    op.drop_table("energy_rollup_events")
    op.drop_table("energy_rollup_dirty")
    op.drop_table("energy_rollup_state")
    op.drop_table("energy_rollups")
