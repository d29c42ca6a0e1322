"""Request and response bodies of the monitoring routes: alarms, webhooks, issued forecasts, skill."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, Field, field_validator

from digitaltwin.api.schemas import RequestModel
from digitaltwin.monitoring.alarms import Alarm

SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_FORECAST_POINTS = 10_000


class AlarmOut(BaseModel):
    id: int
    asset_id: str
    site_id: str
    type: str
    severity: Literal["info", "warning", "critical"]
    state: Literal["active", "acknowledged", "cleared"]
    started_at: datetime
    last_seen_at: datetime
    score: float
    evidence: dict[str, Any] = Field(description="what the detector saw: `actual`, `expected` [low, high] and its own keys")
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    acknowledged_comment: str | None = None
    cleared_at: datetime | None = None
    cleared_by: str | None = Field(None, description="the operator, or 'auto' when the condition ended")
    cleared_comment: str | None = None
    notifications: list[dict[str, Any]] | None = Field(None, description="webhook deliveries (detail only)")

    @classmethod
    def of(cls, alarm: Alarm, notifications: list[dict[str, Any]] | None = None) -> AlarmOut:
        return cls(
            id=alarm.id or 0, asset_id=alarm.asset_id, site_id=alarm.site_id, type=alarm.type,
            severity=alarm.severity.value, state=alarm.state.value, started_at=alarm.started_at,
            last_seen_at=alarm.last_seen_at, score=alarm.score, evidence=alarm.evidence,
            acknowledged_at=alarm.acknowledged_at, acknowledged_by=alarm.acknowledged_by,
            acknowledged_comment=alarm.acknowledged_comment, cleared_at=alarm.cleared_at,
            cleared_by=alarm.cleared_by, cleared_comment=alarm.cleared_comment, notifications=notifications,
        )


class CommentIn(RequestModel):
    comment: str | None = Field(None, max_length=2000)


class WebhookIn(RequestModel):
    url: AnyHttpUrl = Field(description="http(s) URL the alarm events are POSTed to (at most 2000 characters)")
    secret: str = Field(min_length=16, max_length=200, description="HMAC-SHA256 key of the X-DT-Signature header")
    site_id: str | None = Field(None, max_length=64, description="only alarms of this site; all sites when omitted")
    min_severity: Literal["info", "warning", "critical"] = "warning"


    @field_validator("url")
    @classmethod
    def _short(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        if len(str(value)) > 2000:
            raise ValueError("at most 2000 characters")
        return value


class WebhookOut(BaseModel):
    id: int
    url: str
    site_id: str | None
    min_severity: str
    created_at: datetime
    created_by: str | None


class ForecastPointIn(RequestModel):
    ts: datetime = Field(description="interval start, RFC 3339 with a UTC offset")
    value: float = Field(description="kWh in the interval")
    quantiles: dict[str, float] | None = Field(None, description='kWh by level, e.g. {"0.1": 3.2, "0.9": 4.8}')

    @field_validator("ts")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("needs a UTC offset")
        return value

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @field_validator("quantiles")
    @classmethod
    def _levels(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        levels = []
        for level, kwh in value.items():
            try:
                number = float(level)
            except ValueError:
                raise ValueError(f"quantile level {level!r} is not a number") from None
            if not 0.01 <= number <= 0.99:
                raise ValueError(f"quantile level {level!r} is outside [0.01, 0.99]")
            if not math.isfinite(kwh):
                raise ValueError(f"quantile {level!r} must be a finite number")
            levels.append((number, kwh))
        ordered = [kwh for _, kwh in sorted(levels)]
        if any(b < a for a, b in zip(ordered, ordered[1:], strict=False)):
            raise ValueError("quantile values must not decrease with the level")
        return value


class ExternalForecastIn(RequestModel):
    source: str = Field(description="the vendor or forecast's name; stored as external:<source>")
    issued_at: datetime = Field(description="when the vendor issued it, RFC 3339 with a UTC offset")
    step_seconds: int = Field(3600, ge=60, le=86_400, description="interval length of each point")
    points: list[ForecastPointIn] = Field(min_length=1, max_length=MAX_FORECAST_POINTS)

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if not SOURCE_NAME.match(value):
            raise ValueError("must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return value

    @field_validator("issued_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("needs a UTC offset")
        return value


class IssuedForecastOut(BaseModel):
    id: int
    asset_id: str
    source: str
    issued_at: datetime
    step_seconds: int
    points: int


class SkillRowOut(BaseModel):
    source: str
    window: Literal["7d", "30d"]
    lead: str = Field(description="lead-time bucket: 0-1h, 1-6h, 6-12h, 12-24h, 24-48h, 48h+ or all")
    n: int = Field(description="forecast points with an actual")
    mae: float | None = Field(None, description="kWh per interval")
    rmse: float | None = None
    cv_rmse: float | None = Field(None, description="rmse / mean(actual), a fraction")
    bias: float | None = Field(None, description="mean(forecast - actual), kWh; > 0 over-forecasts")
    nmbe: float | None = Field(None, description="sum(forecast - actual) / sum(actual), a fraction")
    coverage: float | None = Field(None, description="share of actuals inside `interval`")
    interval: tuple[float, float] | None = Field(None, description="quantile levels of the interval scored for coverage")


class SkillOut(BaseModel):
    asset_id: str
    end: datetime
    rows: list[SkillRowOut]
