"""Initial schema: sites, assets, series, readings (a hypertable when TimescaleDB is available).

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from digitaltwin.storage.tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sites",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("country", sa.String(8), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "assets",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("site_id", sa.String(64), sa.ForeignKey("sites.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("parent_id", sa.String(64), sa.ForeignKey("assets.id", ondelete="SET NULL"), nullable=True),
        sa.Column("rated_power_kw", sa.Float, nullable=True),
        sa.Column("attributes", sa.JSON, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_assets_site_id", "assets", ["site_id"])
    op.create_table(
        "series",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("asset_id", sa.String(64), sa.ForeignKey("assets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("quantity", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("interval_seconds", sa.Integer, nullable=True),
        sa.UniqueConstraint("asset_id", "quantity", name="uq_series_asset_quantity"),
    )
    op.create_table(
        "readings",
        sa.Column("series_id", sa.Integer, sa.ForeignKey("series.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("ts", UTCDateTime(), primary_key=True),
        sa.Column("value", sa.Float, nullable=False),
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        from digitaltwin.storage.timescale import probe, use_timescaledb

        config = op.get_context().config
        mode = config.attributes.get("timescaledb", "auto") if config is not None else "auto"
        if use_timescaledb(mode, probe(bind)):
            op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            # No default (ts DESC) index: every query of readings names its series, which the
            # primary key (series_id, ts) serves; the extra index only cost write time and space.
            op.execute(
                "SELECT create_hypertable('readings', 'ts', chunk_time_interval => INTERVAL '7 days', "
                "migrate_data => true, create_default_indexes => false)"
            )
            op.execute(
                "ALTER TABLE readings SET (timescaledb.compress, timescaledb.compress_segmentby = 'series_id', "
                "timescaledb.compress_orderby = 'ts')"
            )
            op.execute("SELECT add_compression_policy('readings', INTERVAL '30 days')")


def downgrade() -> None:
    op.drop_table("readings")
    op.drop_table("series")
    op.drop_index("ix_assets_site_id", table_name="assets")
    op.drop_table("assets")
    op.drop_table("sites")
