"""Settings read once from the environment (and an optional ``.env`` file).

Nothing else in the package reads ``os.environ``: a :class:`Settings` object is
built at the edge (CLI, app factory, tests) and passed in.

Variable names follow the production guide (``SECRET_KEY``, ``DATABASE_URL``,
``MQTT_BROKER`` ...); ``.env.example`` documents each one.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from digitaltwin.security.client_address import parse_networks

#: The guide's placeholder secret, refused outside development.
PLACEHOLDER_SECRET = "your-secret-key-here-change-in-production"


class Settings(BaseSettings):
    """All runtime configuration of the product.

    Durations are in the unit their name gives (``*_MINUTES``, ``*_SECONDS``).
    With ``DATABASE_URL`` unset the product uses the embedded SQLite file
    ``DATA_DIR/digitaltwin.db``.
    """

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    environment: Literal["development", "test", "production"] = Field("development", alias="ENVIRONMENT")

    # Security (production guide)
    secret_key: str = Field(PLACEHOLDER_SECRET, alias="SECRET_KEY")
    jwt_algorithm: str = Field("HS256", alias="JWT_ALGORITHM")
    access_token_expire_minutes: int = Field(30, alias="ACCESS_TOKEN_EXPIRE_MINUTES", ge=1)
    # Security: key rotation, clock skew, sessions, login throttling, proxies, body size
    secret_key_previous: str | None = Field(
        None, alias="SECRET_KEY_PREVIOUS", description="the former SECRET_KEY; verifies (never signs) tokens during a grace period"
    )
    secret_key_previous_until: datetime | None = Field(
        None, alias="SECRET_KEY_PREVIOUS_UNTIL", description="end of the grace period of SECRET_KEY_PREVIOUS (RFC 3339)"
    )
    jwt_leeway_seconds: int = Field(30, alias="JWT_LEEWAY_SECONDS", ge=0, le=300, description="clock skew allowed on exp/iat")
    refresh_token_expire_days: int = Field(14, alias="REFRESH_TOKEN_EXPIRE_DAYS", ge=1, description="lifetime of a login session")
    login_rate_limit: int = Field(
        10, alias="LOGIN_RATE_LIMIT", ge=1,
        description="failed logins (or MFA codes) of one account from one address before each attempt is delayed",
    )
    login_max_delay_seconds: int = Field(
        300, alias="LOGIN_MAX_DELAY_SECONDS", ge=1,
        description="longest wait between attempts once LOGIN_RATE_LIMIT failures of one account from one address are used",
    )
    auth_rate_limit: int = Field(
        10, alias="AUTH_RATE_LIMIT", ge=1, description="requests per minute per client to /auth/token and /auth/mfa/*"
    )
    login_hash_concurrency: int | None = Field(
        None, alias="LOGIN_HASH_CONCURRENCY", ge=1,
        description="password checks (argon2id, 64 MiB each) running at once per process; unset: one per CPU",
    )
    login_hash_queue: int = Field(
        8, alias="LOGIN_HASH_QUEUE", ge=0, description="password checks waiting per process before more get 429 at once"
    )
    mfa_encryption_key: str | None = Field(
        None, alias="MFA_ENCRYPTION_KEY",
        description="comma-separated Fernet keys encrypting TOTP secrets (first encrypts); unset: derived from SECRET_KEY",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="TRUSTED_PROXIES", description="reverse proxies (IPs or CIDRs) whose X-Forwarded-For is read"
    )
    max_request_body_bytes: int = Field(
        10 * 1024 * 1024, alias="MAX_REQUEST_BODY_BYTES", ge=1024, description="larger bodies get 413"
    )
    auth_cache_seconds: float = Field(
        30.0, alias="AUTH_CACHE_SECONDS", ge=0,
        description="longest use of a cached session check per process; changes through the product apply at once; 0 = off",
    )
    rate_limit_key_prefix: str = Field(
        "digitaltwin", alias="RATE_LIMIT_KEY_PREFIX", description="prefix of the rate limiter's Redis keys"
    )

    # Storage
    database_url: str | None = Field(None, alias="DATABASE_URL")
    postgres_password: str | None = Field(None, alias="POSTGRES_PASSWORD")
    timescaledb: Literal["auto", "on", "off"] = Field(
        "auto", alias="TIMESCALEDB",
        description="readings as a TimescaleDB hypertable: auto (when the server can), on (required), off (plain PostgreSQL)",
    )
    raw_readings_retention_days: int = Field(
        0, alias="RAW_READINGS_RETENTION_DAYS", ge=0,
        description="days of raw readings kept once rollups hold the history; 0 = keep all (not applied before rollups exist)",
    )
    data_dir: Path = Field(Path("./data"), alias="DATA_DIR")
    models_dir: Path = Field(Path("./models"), alias="MODELS_DIR")
    log_dir: Path = Field(Path("./logs"), alias="LOG_DIR")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field("INFO", alias="LOG_LEVEL")

    # Cache
    redis_url: str | None = Field(None, alias="REDIS_URL")
    redis_password: str | None = Field(None, alias="REDIS_PASSWORD")

    # MQTT
    mqtt_broker: str | None = Field(None, alias="MQTT_BROKER")
    mqtt_username: str | None = Field(None, alias="MQTT_USERNAME")
    mqtt_password: str | None = Field(None, alias="MQTT_PASSWORD")
    # MQTT ingestion: see digitaltwin.ingest.mqtt_subscriber
    mqtt_client_id: str | None = Field(
        None, alias="MQTT_CLIENT_ID", description="stable per replica (persistent session); unset: digitaltwin-ingest-<hostname>"
    )
    mqtt_qos: int = Field(1, alias="MQTT_QOS", ge=0, le=2, description="subscription QoS; 0 gives up at-least-once")
    mqtt_max_message_bytes: int = Field(
        1024 * 1024, alias="MQTT_MAX_MESSAGE_BYTES", ge=1024, description="larger payloads are dead-lettered"
    )
    mqtt_auto_register_assets: bool = Field(
        False, alias="MQTT_AUTO_REGISTER_ASSETS",
        description="register unknown assets (and sites) from their topics; off: their messages are dead-lettered",
    )
    mqtt_topic_prefix: str = Field("", alias="MQTT_TOPIC_PREFIX", description="prefix of every topic, e.g. 'plant-a/'")
    mqtt_shared_group: str | None = Field(
        None, alias="MQTT_SHARED_GROUP",
        description="$share group the replicas join; unset: one per installation (mqtt_group); empty: no shared subscription",
    )
    mqtt_api_subscriber: bool = Field(
        True, alias="MQTT_API_SUBSCRIBER",
        description="with MQTT_BROKER, `serve` subscribes (one subscriber per serve); false when a separate `ingest` service does",
    )
    mqtt_session_expiry_s: int = Field(
        7 * 24 * 3600, alias="MQTT_SESSION_EXPIRY", ge=0, le=4_294_967_295,
        description="seconds the broker keeps a fixed client id's session (and queues its share) while it is away",
    )
    live_state_key_prefix: str = Field(
        "digitaltwin:live", alias="LIVE_STATE_KEY_PREFIX", description="prefix of the live twin state's Redis keys"
    )
    stream_max_per_principal: int = Field(
        10, alias="STREAM_MAX_PER_PRINCIPAL", ge=1, description="open live streams (SSE) per user or API key and API process"
    )
    stream_max_per_address: int = Field(
        20, alias="STREAM_MAX_PER_ADDRESS", ge=1, description="open live streams (SSE) per client address and API process"
    )

    # Monitoring (used by the compose stack)
    grafana_password: str | None = Field(None, alias="GRAFANA_PASSWORD")
    prometheus_retention: str = Field("15d", alias="PROMETHEUS_RETENTION")
    # Operations: folder where `serve --workers N` workers share metric values (prometheus_client
    # multiprocess mode); emptied at start. Unset: DATA_DIR/prometheus-multiproc.
    prometheus_multiproc_dir: Path | None = Field(None, alias="PROMETHEUS_MULTIPROC_DIR")

    # API
    api_rate_limit: int = Field(100, alias="API_RATE_LIMIT", ge=1, description="requests per minute per client")
    api_timeout: float = Field(30.0, alias="API_TIMEOUT", gt=0, description="seconds")
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list, alias="CORS_ORIGINS")

    # Energy analytics
    power_max_hold_seconds: int = Field(
        3600,
        alias="POWER_MAX_HOLD_SECONDS",
        ge=1,
        description="longest time a power sample is held (sample-and-hold) before the series counts as a gap",
    )

    # Forecasting: model hot reload, scheduled retraining, fleet training
    models_watch: bool = Field(
        True, alias="MODELS_WATCH", description="reload models when files change in MODELS_DIR, without a restart"
    )
    retrain_cadence_hours: float = Field(
        0.0, alias="RETRAIN_CADENCE_HOURS", ge=0, description="retrain each asset's champion this often; 0 = off"
    )
    retrain_asset_cadence: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=dict,
        alias="RETRAIN_ASSET_CADENCE",
        description="per-asset cadence in hours overriding RETRAIN_CADENCE_HOURS, e.g. 'steel-plant=24,b2=168'",
    )
    forecast_cache_size: int = Field(
        256,
        alias="FORECAST_CACHE_SIZE",
        ge=0,
        description="forecasts kept per process, keyed by the model and a hash of the data they read; 0 = off",
    )
    # Energy answers (services/energy_answers.py): bodies kept per process, keyed by their stored inputs
    energy_cache_mb: float = Field(
        64.0, alias="ENERGY_CACHE_MB", ge=0,
        description="megabytes of energy answers kept per API process, keyed by a hash of the data they are computed from; 0 = off",
    )
    energy_cache_seconds: float = Field(
        600.0, alias="ENERGY_CACHE_SECONDS", gt=0,
        description="longest time a kept energy answer is served (bounds changes made outside the product, e.g. a restore)",
    )
    # Energy rollups (services/energy_rollups.py): kept always, read when on
    energy_rollups: bool = Field(
        True, alias="ENERGY_ROLLUPS",
        description="energy reports, bills and forecast targets read the 15-minute rollups instead of every raw reading",
    )
    # Scheduling: the re-planning loop of schedules created with replan=true
    schedule_replan_seconds: float = Field(
        0.0, alias="SCHEDULE_REPLAN_SECONDS", ge=0,
        description="look for new meter data this often and re-plan the schedules that asked for it; 0 = off",
    )
    forecast_concurrency: int = Field(
        1,
        alias="FORECAST_CONCURRENCY",
        ge=1,
        le=64,
        description="forecasts computed at once in one API process (the others wait); throughput comes from workers",
    )
    retrain_check_seconds: float = Field(
        300.0, alias="RETRAIN_CHECK_SECONDS", gt=0, description="how often the scheduler looks for assets due"
    )
    fleet_n_jobs: int = Field(2, alias="FLEET_N_JOBS", description="processes of fleet training (joblib); -1 = all cores")
    dask_scheduler_address: str | None = Field(
        None, alias="DASK_SCHEDULER_ADDRESS", description="tcp://host:8786: fleet training on that Dask cluster"
    )

    # Jobs: trainings and backtests run outside the request (see digitaltwin.jobs)
    jobs_in_process: bool | None = Field(
        None, alias="JOBS_IN_PROCESS",
        description="serve runs queued jobs itself; unset: on when embedded (SQLite), else off (a `worker` service runs them)",
    )
    jobs_max_concurrent: int = Field(
        2, alias="JOBS_MAX_CONCURRENT", ge=1, le=64,
        description="jobs running at once on one host, over all its serve and worker processes; the others wait queued",
    )
    jobs_max_per_asset: int = Field(
        2, alias="JOBS_MAX_PER_ASSET", ge=1, description="queued or running jobs of one asset; more get 409 naming asset_id"
    )
    jobs_max_per_user: int = Field(
        4, alias="JOBS_MAX_PER_USER", ge=1, description="queued or running jobs of one user or API key; more get 429"
    )
    backtest_max_fits: int = Field(
        100, alias="BACKTEST_MAX_FITS", ge=1,
        description="model fits one backtest request may ask for (algorithms x refits); more get 422 naming retrain_every",
    )
    jobs_heartbeat_seconds: float = Field(
        5.0, alias="JOBS_HEARTBEAT_SECONDS", gt=0, description="how often a runner marks its running jobs alive"
    )
    jobs_stale_seconds: float = Field(
        60.0, alias="JOBS_STALE_SECONDS", gt=0,
        description="a running job whose heartbeat is older lost its process: re-queued, or failed after JOBS_MAX_ATTEMPTS",
    )
    jobs_max_attempts: int = Field(
        2, alias="JOBS_MAX_ATTEMPTS", ge=1, description="runs of one job before a lost process fails it instead of re-queueing"
    )
    jobs_poll_seconds: float = Field(
        1.0, alias="JOBS_POLL_SECONDS", gt=0, description="how often an idle runner looks for queued jobs"
    )
    # Monitoring: alarms, webhooks, the stale-device check, scheduled forecasts and drift (docs/alarms.md)
    alarm_clear_after: int = Field(
        2, alias="ALARM_CLEAR_AFTER", ge=1, le=100,
        description="consecutive evaluations without the condition that auto-clear an alarm (hysteresis)",
    )
    anomaly_detection: bool = Field(
        True, alias="ANOMALY_DETECTION",
        description="score each closed hour of consumption (profile, flatline, zero in busy hours, spike) and raise alarms",
    )
    stale_check_seconds: float = Field(
        60.0, alias="STALE_CHECK_SECONDS", ge=0, description="period of the stale-device check; 0 = off"
    )
    stale_missed_intervals: float = Field(
        3.0, alias="STALE_MISSED_INTERVALS", ge=1, description="intervals of a series' cadence without a reading that raise stale_device"
    )
    stale_critical_intervals: float = Field(
        12.0, alias="STALE_CRITICAL_INTERVALS", ge=1, description="intervals without a reading that make stale_device critical"
    )
    forecast_issue_local_time: dt_time | None = Field(
        None, alias="FORECAST_ISSUE_LOCAL_TIME", description="site-local HH:MM at which day-ahead forecasts are issued and stored; unset = off"
    )
    forecast_issue_assets: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="FORECAST_ISSUE_ASSETS",
        description="assets issued on the schedule and checked for drift, comma-separated; empty = every asset with a champion",
    )
    forecast_monitor_check_seconds: float = Field(
        300.0, alias="FORECAST_MONITOR_CHECK_SECONDS", gt=0, description="how often issuing and drift are checked"
    )
    drift_factor: float = Field(
        1.5, alias="DRIFT_FACTOR", gt=1, description="7-day MAE over the model's backtest MAE that raises forecast_drift"
    )
    drift_clear_ratio: float = Field(
        0.8, alias="DRIFT_CLEAR_RATIO", gt=0, le=1, description="forecast_drift clears below DRIFT_FACTOR x this"
    )
    drift_min_points: int = Field(24, alias="DRIFT_MIN_POINTS", ge=1, description="scored points needed to decide drift")
    drift_retrain: bool = Field(True, alias="DRIFT_RETRAIN", description="a raised forecast_drift alarm retrains the champion")
    webhook_max_attempts: int = Field(5, alias="WEBHOOK_MAX_ATTEMPTS", ge=1, le=20, description="attempts per webhook delivery")
    webhook_backoff_seconds: float = Field(
        1.0, alias="WEBHOOK_BACKOFF_SECONDS", gt=0, description="wait before the first retry of a delivery; doubles each retry"
    )
    webhook_timeout_seconds: float = Field(5.0, alias="WEBHOOK_TIMEOUT_SECONDS", gt=0, description="per delivery attempt")
    webhook_allowed_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="WEBHOOK_ALLOWED_NETWORKS",
        description="non-public networks (IPs or CIDRs, comma-separated) webhooks may reach besides public addresses",
    )

    @field_validator("forecast_issue_local_time", mode="before")
    @classmethod
    def _empty_time(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("forecast_issue_assets", mode="before")
    @classmethod
    def _split_assets(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        parse_networks(value, field="WEBHOOK_ALLOWED_NETWORKS")  # a bad entry fails at start, named
        return value

    @field_validator("retrain_asset_cadence", mode="before")
    @classmethod
    def _split_cadence(cls, value: object) -> object:
        if isinstance(value, str):
            pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
            if any(len(p) != 2 for p in pairs):
                raise ValueError("RETRAIN_ASSET_CADENCE must look like 'asset-a=24,asset-b=168'")
            return {k.strip(): float(v) for k, v in pairs}
        return value

    # Demo
    demo_replay_seconds_per_interval: float = Field(2.0, alias="DEMO_REPLAY_SECONDS_PER_INTERVAL", gt=0)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("postgresql://", "postgres://", "postgresql+psycopg://", "sqlite:///")):
            raise ValueError("must start with postgresql:// (or postgres://), or sqlite:/// for a file")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value or None

    @field_validator("cors_origins", "trusted_proxies", "webhook_allowed_networks", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @property
    def sqlalchemy_url(self) -> str:
        """SQLAlchemy URL of the configured database.

        ``postgresql://`` and ``postgres://`` (the guide's form) map to the
        psycopg 3 driver; ``POSTGRES_PASSWORD`` fills in a missing password.
        Without ``DATABASE_URL`` this is the embedded SQLite file.
        """
        if not self.database_url:
            return f"sqlite:///{(self.data_dir / 'digitaltwin.db').resolve()}"
        url = self.database_url
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                url = "postgresql+psycopg://" + url[len(prefix) :]
        if self.postgres_password and url.startswith("postgresql+psycopg://"):
            from sqlalchemy.engine import make_url

            parsed = make_url(url)
            if parsed.password is None and parsed.username:
                url = parsed.set(password=self.postgres_password).render_as_string(hide_password=False)
        return url

    @property
    def embedded(self) -> bool:
        """True when running on the embedded SQLite default."""
        return not self.database_url or self.database_url.startswith("sqlite")

    @property
    def mqtt_group(self) -> str | None:
        """The MQTT v5 shared-subscription group of this installation's subscribers, or None for none.

        ``MQTT_SHARED_GROUP`` when set (empty: plain subscriptions). Otherwise
        ``dt-<12 hex>``, a SHA-256 digest of the database the subscribers write (the SQLite
        file's absolute path, or the PostgreSQL URL without its password) and
        ``MQTT_TOPIC_PREFIX``: replicas writing one database split the stream, while two
        installations on one broker (or a test run next to a deployment) never take each
        other's messages, as they did with one fixed default group.
        """
        if self.mqtt_shared_group is not None:
            return self.mqtt_shared_group or None
        from sqlalchemy.engine import make_url

        database = make_url(self.sqlalchemy_url).render_as_string(hide_password=True)
        digest = hashlib.sha256(f"{database}\n{self.mqtt_topic_prefix}".encode()).hexdigest()
        return f"dt-{digest[:12]}"

    @property
    def power_max_hold(self) -> timedelta:
        return timedelta(seconds=self.power_max_hold_seconds)

    @property
    def run_jobs_in_process(self) -> bool:
        """Whether ``serve`` runs queued jobs itself: ``JOBS_IN_PROCESS`` when set, else on for the
        embedded database and off elsewhere (where ``digitaltwin worker`` processes run them)."""
        if self.jobs_in_process is not None:
            return self.jobs_in_process
        return self.embedded

    @property
    def mqtt_auto_register(self) -> bool:
        """Whether MQTT messages of unknown assets register them (``MQTT_AUTO_REGISTER_ASSETS``).

        Off by default on every database: anyone who may publish to the broker could otherwise
        create sites and assets; messages of unknown assets go to the dead letters instead.
        """
        return self.mqtt_auto_register_assets
