"""Energy rollups: the cells summed per UTC day, so a long range reads days instead of cells.

Every write of a series' cells rewrites the day sums of the days it touches in the same
transaction (storage/rollups.py); this migration sums the cells already stored.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

#: The start of a cell's UTC day (a floor also for cells before 1970).
_DAY = "cell_s - ((cell_s % 86400) + 86400) % 86400"


def upgrade() -> None:
    op.create_table(
        "energy_rollup_days",
        sa.Column("series_id", sa.Integer, sa.ForeignKey("series.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("day_s", sa.BigInteger, primary_key=True),
        sa.Column("energy_kwh", sa.Float, nullable=False),
        sa.Column("covered_s", sa.Float, nullable=False),
        sa.Column("import_kwh", sa.Float, nullable=False),
        sa.Column("export_kwh", sa.Float, nullable=False),
        sa.Column("sample_count", sa.BigInteger, nullable=False),
        sa.Column("peak_power_kw", sa.Float, nullable=True),
    )
    op.execute(
        "INSERT INTO energy_rollup_days (series_id, day_s, energy_kwh, covered_s, import_kwh, export_kwh, sample_count, peak_power_kw)"
        f" SELECT series_id, {_DAY}, sum(energy_kwh), sum(covered_s), sum(import_kwh), sum(export_kwh), sum(sample_count),"
        f" max(peak_power_kw) FROM energy_rollups GROUP BY series_id, {_DAY}"
    )


def downgrade() -> None:
    op.drop_table("energy_rollup_days")
