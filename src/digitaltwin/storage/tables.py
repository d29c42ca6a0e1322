"""Table definitions (SQLAlchemy Core).

``readings`` is keyed by ``(series_id, ts)`` so the same reading written twice
is stored once. On PostgreSQL ``ts`` is ``timestamptz``; on SQLite it is an
integer count of microseconds since the Unix epoch (UTC), which keeps range
scans and sorting numeric and exact.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy import text
from sqlalchemy.types import TypeDecorator, TypeEngine

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC instant: ``timestamptz`` on PostgreSQL, epoch microseconds on SQLite.

    Binding a naive ``datetime`` raises ``ValueError``: naive times never enter storage.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[object]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> object:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime cannot be stored; attach a timezone")
        if dialect.name == "sqlite":
            return to_epoch_us(value)
        return value.astimezone(UTC)

    def process_result_value(self, value: object, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, int):
            return from_epoch_us(value)
        assert isinstance(value, datetime)
        return value.astimezone(UTC)


def to_epoch_us(value: datetime) -> int:
    """Exact integer microseconds since the Unix epoch of an aware datetime."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_epoch_us(value: int) -> datetime:
    """Inverse of :func:`to_epoch_us`."""
    return _EPOCH + timedelta(microseconds=value)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

sites = Table(
    "sites",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("country", String(8), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    # Energy accounting (migration 0008): CO2 factor or carbon intensity asset, capacity, location.
    Column("attributes", JSON, nullable=False, default=dict, server_default=text("'{}'")),
)

assets = Table(
    "assets",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("site_id", String(64), ForeignKey("sites.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("parent_id", String(64), ForeignKey("assets.id", ondelete="SET NULL"), nullable=True),
    Column("rated_power_kw", Float, nullable=True),
    Column("attributes", JSON, nullable=False, default=dict),
    Column("created_at", UTCDateTime(), nullable=False),
)

series = Table(
    "series",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("asset_id", String(64), ForeignKey("assets.id", ondelete="CASCADE"), nullable=False),
    Column("quantity", String(32), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("unit", String(16), nullable=False),
    Column("interval_seconds", Integer, nullable=True),
    # What the series declares about itself (sign convention, register modulus, ...; migration 0006).
    Column("attributes", JSON, nullable=True),
    UniqueConstraint("asset_id", "quantity", name="uq_series_asset_quantity"),
)

# On plain PostgreSQL the series foreign key of readings is enforced by statement-level triggers
# with the same effect (migration 0009: one check per statement instead of one lookup per row).
readings = Table(
    "readings",
    metadata,
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), primary_key=True),
    Column("ts", UTCDateTime(), primary_key=True),
    Column("value", Float, nullable=False),
)

# --- Meter accounting (migration 0006): meter replacements of a counter series ---------------------
# The old meter's final and the new meter's first reading (kWh); energy reads them (services.meter).
meter_events = Table(
    "meter_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("old_ts", UTCDateTime(), nullable=False),
    Column("old_value_kwh", Float, nullable=False),
    Column("new_ts", UTCDateTime(), nullable=False),
    Column("new_value_kwh", Float, nullable=False),
    Column("old_serial", String(64), nullable=True),
    Column("new_serial", String(64), nullable=True),
    Column("source", String(16), nullable=False),
    Column("created_by", String(100), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

# --- MQTT ingestion (migration 0004): the latest machine state of each asset --------------
# From factory/{line}/{machine_id}/power (RUN|IDLE|STOP); "latest" by the reported timestamp, not by
# arrival, so the state survives a restart of the service without Redis.
machine_status = Table(
    "machine_status",
    metadata,
    Column("asset_id", String(64), ForeignKey("assets.id", ondelete="CASCADE"), primary_key=True),
    Column("status", String(8), nullable=False),
    Column("ts", UTCDateTime(), nullable=False),
)

# --- MQTT ingestion (migration 0002): rejected telemetry with its reason -----------------
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("received_at", UTCDateTime(), nullable=False, index=True),
    Column("topic", String(512), nullable=False),
    Column("payload", Text, nullable=False),  # the first 1 KiB, see domain/dead_letters.py
    Column("payload_bytes", Integer, nullable=False),
    Column("item_index", Integer, nullable=True),
    Column("field", String(128), nullable=True),
    Column("reason", Text, nullable=False),
    Column("reason_code", String(32), nullable=False),
)

# --- Security (migration 0003): accounts, sessions, API keys, audit log --------------------

users = Table(
    "users",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    Column("active", Boolean, nullable=False),
    # Fernet token of the base32 TOTP seed (migration 0005), never the seed itself
    Column("mfa_secret", String(512), nullable=True),
    Column("mfa_enabled", Boolean, nullable=False),
    Column("mfa_last_step", BigInteger, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("password_changed_at", UTCDateTime(), nullable=False),
)

# One row per login session; every refresh token of the session belongs to its family.
token_families = Table(
    "token_families",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("amr", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Column("revoked_reason", String(32), nullable=True),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("family_id", String(32), ForeignKey("token_families.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("issued_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
)

recovery_codes = Table(
    "recovery_codes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("code_hash", String(64), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
)

role_policies = Table(
    "role_policies",
    metadata,
    Column("role", String(16), primary_key=True),
    Column("mfa_required", Boolean, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("site_id", String(64), ForeignKey("sites.id", ondelete="CASCADE"), nullable=True),
    Column("created_by", String(64), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("last_used_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", UTCDateTime(), nullable=False, index=True),
    Column("event", String(40), nullable=False),
    Column("success", Boolean, nullable=False),
    Column("actor", String(100), nullable=True),
    Column("subject", String(100), nullable=True),
    Column("client_ip", String(64), nullable=True),
    Column("detail", JSON, nullable=False),
)

# --- Accounting (migration 0007): tariffs as imported, and which site or asset is billed by which ------
# ``source`` is the record as it came (URDB JSON or the native form), so a tariff can be shown and
# re-parsed as it was imported; ``format`` says which parser reads it.
tariffs = Table(
    "tariffs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("format", String(16), nullable=False),
    Column("currency", String(8), nullable=False),
    Column("source", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

# Exactly one of site_id / asset_id; validity in local calendar dates of the site, valid_to exclusive
# (None: open-ended); bill_day None means calendar months.
tariff_assignments = Table(
    "tariff_assignments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("site_id", String(64), ForeignKey("sites.id", ondelete="CASCADE"), nullable=True, index=True),
    Column("asset_id", String(64), ForeignKey("assets.id", ondelete="CASCADE"), nullable=True, index=True),
    Column("tariff_id", String(64), ForeignKey("tariffs.id", ondelete="RESTRICT"), nullable=False, index=True),
    Column("valid_from", Date, nullable=False),
    Column("valid_to", Date, nullable=True),
    Column("bill_day", Integer, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

# --- Security hardening (migration 0005): login throttling, single-use MFA challenges -----------

# Failed logins (scope ``password``) and MFA codes (scope ``code``) per account and client address.
# The account is a SHA-256 of the casefolded name, so a password typed as a username is not kept.
login_failures = Table(
    "login_failures",
    metadata,
    Column("account_hash", String(64), primary_key=True),
    Column("client_ip", String(64), primary_key=True),
    Column("scope", String(16), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("last_failure_at", UTCDateTime(), nullable=False, index=True),
)

# Identifiers (``jti``) of MFA challenge tokens already presented; kept until the token expires.
spent_mfa_challenges = Table(
    "spent_mfa_challenges",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("expires_at", UTCDateTime(), nullable=False, index=True),
)

# --- Scheduling (migration 0011): versioned schedules of a site's flexible assets ---------------------
# Each solve is a new version; the plan holds the per-step arrays (JSON) so a schedule can be
# published, shown and compared with what was realised without solving again.
schedules = Table(
    "schedules",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("site_id", String(64), ForeignKey("sites.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(100), nullable=True),
    Column("start", UTCDateTime(), nullable=False),
    Column("step_seconds", Integer, nullable=False),
    Column("steps", Integer, nullable=False),
    Column("mode", String(16), nullable=False),
    Column("request", JSON, nullable=False),
    Column("plan", JSON, nullable=False),
    Column("published", JSON, nullable=False),
    UniqueConstraint("site_id", "version", name="uq_schedules_site_version"),
)

# --- Jobs (migration 0010): trainings and backtests run outside the request that asked for them -----
# One row per job; the row is also the queue (workers claim queued rows, see digitaltwin.jobs.store).
jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),  # train | backtest
    Column("asset_id", String(64), nullable=False, index=True),
    Column("requested_by", String(100), nullable=True),  # the principal's label (user:NAME, key:ID) or a service
    Column("state", String(16), nullable=False, index=True),  # queued | running | succeeded | failed | cancelled
    Column("progress", Float, nullable=False),  # 0..1
    Column("params", JSON, nullable=False),
    Column("result", JSON, nullable=True),
    Column("error", JSON, nullable=True),  # {"detail": ..., "field": ...}
    Column("cancel_requested", Boolean, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False, index=True),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("heartbeat_at", UTCDateTime(), nullable=True),
    Column("worker_id", String(128), nullable=True),  # host/pid of the process running it
    Column("worker_host", String(128), nullable=True),
)

# --- Monitoring (migration 0012): issued forecasts, alarms, webhooks and their deliveries ---------

# One row per forecast as issued (the product's scheduled forecasts, `source` 'model:<model_id>',
# and external ones posted over the API, 'external:<name>'), its points in issued_forecast_points.
issued_forecasts = Table(
    "issued_forecasts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("asset_id", String(64), ForeignKey("assets.id", ondelete="CASCADE"), nullable=False),
    Column("source", String(200), nullable=False),
    Column("issued_at", UTCDateTime(), nullable=False),
    Column("step_s", Integer, nullable=False),
    Column("points", Integer, nullable=False),
    Index("ix_issued_forecasts_asset_source", "asset_id", "source", "issued_at"),
)

# Points carry asset_id and source as well, so scoring reads one index range (asset, ts) without a join.
issued_forecast_points = Table(
    "issued_forecast_points",
    metadata,
    Column("forecast_id", Integer, ForeignKey("issued_forecasts.id", ondelete="CASCADE"), primary_key=True),
    Column("ts", UTCDateTime(), primary_key=True),
    Column("asset_id", String(64), nullable=False),
    Column("source", String(200), nullable=False),
    Column("lead_time_s", Integer, nullable=False),
    Column("value", Float, nullable=False),
    Column("quantiles", JSON, nullable=True),  # {"0.1": kWh, "0.9": kWh}
    Index("ix_issued_forecast_points_asset_ts", "asset_id", "ts"),
)

# open_key is "<asset_id>|<type>" while the alarm is open and NULL once cleared: the unique index
# allows one open alarm per asset and type (NULLs never collide on either backend) and any history.
alarms = Table(
    "alarms",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("asset_id", String(64), ForeignKey("assets.id", ondelete="CASCADE"), nullable=False),
    Column("site_id", String(64), nullable=False),
    Column("type", String(48), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("open_key", String(120), nullable=True, unique=True),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("last_seen_at", UTCDateTime(), nullable=False),
    Column("score", Float, nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("inactive_count", Integer, nullable=False),
    Column("acknowledged_at", UTCDateTime(), nullable=True),
    Column("acknowledged_by", String(100), nullable=True),
    Column("acknowledged_comment", Text, nullable=True),
    Column("cleared_at", UTCDateTime(), nullable=True),
    Column("cleared_by", String(100), nullable=True),
    Column("cleared_comment", Text, nullable=True),
    Index("ix_alarms_site_state", "site_id", "state"),
    Index("ix_alarms_asset_started", "asset_id", "started_at"),
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("url", String(2000), nullable=False),
    Column("secret", String(200), nullable=False),  # the HMAC key; never returned after creation
    Column("site_id", String(64), ForeignKey("sites.id", ondelete="CASCADE"), nullable=True),
    Column("min_severity", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(100), nullable=True),
)

alarm_notifications = Table(
    "alarm_notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alarm_id", Integer, ForeignKey("alarms.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("webhook_id", Integer, ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    Column("event", String(16), nullable=False),
    Column("result", String(16), nullable=False),  # pending, delivered, failed
    Column("attempts", Integer, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
)

# Per-asset detector settings (JSON object per asset and detector), checked by digitaltwin.monitoring.alarm_settings.
detector_settings = Table(
    "detector_settings",
    metadata,
    Column("asset_id", String(64), ForeignKey("assets.id", ondelete="CASCADE"), primary_key=True),
    Column("detector", String(48), primary_key=True),
    Column("settings", JSON, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("updated_by", String(100), nullable=True),
)

# Energy rollups (storage/rollups.py): per series and 15-minute UTC cell, the per-bucket totals
# of the same segments the raw energy path spreads (docs/architecture.md, "Energy rollups").
energy_rollups = Table(
    "energy_rollups",
    metadata,
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), primary_key=True),
    Column("cell_s", BigInteger, primary_key=True),  # epoch seconds of the cell start, a multiple of 900
    Column("energy_kwh", Float, nullable=False),
    Column("covered_s", Float, nullable=False),
    Column("import_kwh", Float, nullable=False),  # energy of positive segments
    Column("export_kwh", Float, nullable=False),  # minus the energy of negative segments
    Column("sample_count", Integer, nullable=False),
    Column("peak_power_kw", Float, nullable=True),
)

# The cells summed per UTC day, kept with the cells (same transaction): a year by month reads
# 365 of these and the cells of the partial days at the group edges instead of 35,040 cells.
energy_rollup_days = Table(
    "energy_rollup_days",
    metadata,
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), primary_key=True),
    Column("day_s", BigInteger, primary_key=True),  # epoch seconds of the UTC day's start, a multiple of 86400
    Column("energy_kwh", Float, nullable=False),
    Column("covered_s", Float, nullable=False),
    Column("import_kwh", Float, nullable=False),
    Column("export_kwh", Float, nullable=False),
    Column("sample_count", BigInteger, nullable=False),
    Column("peak_power_kw", Float, nullable=True),
)

energy_rollup_state = Table(
    "energy_rollup_state",
    metadata,
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), primary_key=True),
    Column("rules_key", Text, nullable=False),  # what else the cells depend on (services/energy_rollups.py)
    Column("frontier_s", BigInteger, nullable=False),  # cells before it are stored and final
    # bumped by every write of the series' cells: compare and set (storage/rollups.py)
    Column("version", BigInteger, nullable=False, server_default="0"),
)

energy_rollup_dirty = Table(
    "energy_rollup_dirty",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("series_id", Integer, nullable=False, index=True),
    Column("lo_s", Float, nullable=False),  # changed readings' time span, epoch seconds
    Column("hi_s", Float, nullable=False),
)

energy_rollup_events = Table(
    "energy_rollup_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), nullable=False),
    Column("start_s", Float, nullable=False),
    Column("end_s", Float, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Index("ix_energy_rollup_events_series_start", "series_id", "start_s"),
)
