"""TimescaleDB options: drop the hypertable's extra ``readings_ts_idx`` (ts DESC) index.

``create_hypertable`` used to add it beside the primary key (series_id, ts). Every query of
readings names its series (ranges, latest, extent, energy and forecast frames), which the
primary key serves, so the index only cost write time and disk. New databases never get it
(0001 passes ``create_default_indexes => false``); this drops it from existing ones. Plain
PostgreSQL and SQLite never had it: nothing happens there.

Revision ID: 0009
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS readings_ts_idx")


def downgrade() -> None:
    """Nothing to restore: the index was never needed (see the module docstring)."""
