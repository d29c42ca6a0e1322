"""Monitoring: issued forecasts and their points, alarms, webhooks, alarm notifications, detector settings.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from digitaltwin.storage.tables import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "issued_forecasts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("asset_id", sa.String(64), sa.ForeignKey("assets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("issued_at", UTCDateTime(), nullable=False),
        sa.Column("step_s", sa.Integer(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
    )
    op.create_index("ix_issued_forecasts_asset_source", "issued_forecasts", ["asset_id", "source", "issued_at"])
    op.create_table(
        "issued_forecast_points",
        sa.Column("forecast_id", sa.Integer(), sa.ForeignKey("issued_forecasts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("ts", UTCDateTime(), primary_key=True),
        sa.Column("asset_id", sa.String(64), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("lead_time_s", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("quantiles", sa.JSON(), nullable=True),
    )
    op.create_index("ix_issued_forecast_points_asset_ts", "issued_forecast_points", ["asset_id", "ts"])
    op.create_table(
        "alarms",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("asset_id", sa.String(64), sa.ForeignKey("assets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(48), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("open_key", sa.String(120), nullable=True, unique=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("inactive_count", sa.Integer(), nullable=False),
        sa.Column("acknowledged_at", UTCDateTime(), nullable=True),
        sa.Column("acknowledged_by", sa.String(100), nullable=True),
        sa.Column("acknowledged_comment", sa.Text(), nullable=True),
        sa.Column("cleared_at", UTCDateTime(), nullable=True),
        sa.Column("cleared_by", sa.String(100), nullable=True),
        sa.Column("cleared_comment", sa.Text(), nullable=True),
    )
    op.create_index("ix_alarms_site_state", "alarms", ["site_id", "state"])
    op.create_index("ix_alarms_asset_started", "alarms", ["asset_id", "started_at"])
    op.create_table(
        "webhooks",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("secret", sa.String(200), nullable=False),
        sa.Column("site_id", sa.String(64), sa.ForeignKey("sites.id", ondelete="CASCADE"), nullable=True),
        sa.Column("min_severity", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=True),
    )
    op.create_table(
        "alarm_notifications",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("alarm_id", sa.Integer(), sa.ForeignKey("alarms.id", ondelete="CASCADE"), nullable=False),
        sa.Column("webhook_id", sa.Integer(), sa.ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_alarm_notifications_alarm_id", "alarm_notifications", ["alarm_id"])
    op.create_table(
        "detector_settings",
        sa.Column("asset_id", sa.String(64), sa.ForeignKey("assets.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("detector", sa.String(48), primary_key=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=True),
    )


def downgrade() -> None:
    for table in ("detector_settings", "alarm_notifications", "webhooks", "alarms", "issued_forecast_points", "issued_forecasts"):
        op.drop_table(table)
