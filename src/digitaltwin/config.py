"""Settings read once from the environment (and an optional ``.env`` file).

Nothing else in the package reads ``os.environ``: a :class:`Settings` object is
built at the edge (CLI, app factory, tests) and passed in.

Variable names follow the production guide (``SECRET_KEY``, ``DATABASE_URL``,
``MQTT_BROKER`` ...); ``.env.example`` documents each one.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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

    # Storage
    database_url: str | None = Field(None, alias="DATABASE_URL")
    postgres_password: str | None = Field(None, alias="POSTGRES_PASSWORD")
    data_dir: Path = Field(Path("./data"), alias="DATA_DIR")
    models_dir: Path = Field(Path("./models"), alias="MODELS_DIR")
    log_dir: Path = Field(Path("./logs"), alias="LOG_DIR")
    log_level: str = Field("INFO", alias="LOG_LEVEL")

    # Cache
    redis_url: str | None = Field(None, alias="REDIS_URL")
    redis_password: str | None = Field(None, alias="REDIS_PASSWORD")

    # MQTT
    mqtt_broker: str | None = Field(None, alias="MQTT_BROKER")
    mqtt_username: str | None = Field(None, alias="MQTT_USERNAME")
    mqtt_password: str | None = Field(None, alias="MQTT_PASSWORD")

    # Monitoring (used by the compose stack)
    grafana_password: str | None = Field(None, alias="GRAFANA_PASSWORD")
    prometheus_retention: str = Field("15d", alias="PROMETHEUS_RETENTION")

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

    # Demo
    demo_replay_seconds_per_interval: float = Field(2.0, alias="DEMO_REPLAY_SECONDS_PER_INTERVAL", gt=0)

    @field_validator("cors_origins", mode="before")
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
        return not self.database_url

    @property
    def power_max_hold(self) -> timedelta:
        return timedelta(seconds=self.power_max_hold_seconds)
