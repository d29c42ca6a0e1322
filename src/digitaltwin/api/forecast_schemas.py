"""Request and response bodies of forecasts, models, training, backtests and the legacy ``/predict``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from digitaltwin.services.forecasting import MAX_HORIZON

#: The legacy ``/predict``'s ``horizon_min`` bound: the forecast service's longest horizon, in minutes.
_MAX_HORIZON_MIN = int(MAX_HORIZON.total_seconds() // 60)


class ForecastPoint(BaseModel):
    ts: datetime = Field(description="interval start, UTC")
    value: float = Field(description="point forecast, kWh in the interval")
    quantiles: dict[str, float] | None = Field(
        None, description='quantile forecasts keyed by level, e.g. {"0.1": 3.2, "0.5": 4.0, "0.9": 5.1} (kWh)'
    )


class ForecastOut(BaseModel):
    asset_id: str
    algorithm: str = Field(description="algorithm that produced the forecast (the champion's for algorithm=best)")
    model_id: str | None = Field(description="stored model, null for algorithms fitted on the request's history")
    model_version: str | None
    unit: str = Field(description="unit of value and quantiles: kWh per interval")
    interval_seconds: int
    issued_at: datetime
    flatliner: bool = Field(
        description="the last 24 h were flat, so every point is that flat level (OpenSTEF-style flatliner policy)"
    )
    points: list[ForecastPoint]


class ModelOut(BaseModel):
    """A stored model: its manifest plus whether it is its asset's champion."""

    model_config = ConfigDict(protected_namespaces=())

    model_id: str
    asset_id: str
    algorithm: str
    version: str
    active: bool = Field(description="the asset's champion (served for algorithm=best)")
    serving: bool = Field(description="loaded and serving its algorithm for the asset")
    horizon_steps: int
    features: list[str]
    training_window: dict[str, str] = Field(description="{start, end} of the training data, UTC")
    metrics: dict[str, float | None] = Field(description="holdout backtest: mae/rmse kWh, cv_rmse/nmbe/coverage_80 fractions")
    data_fingerprint: str
    library_versions: dict[str, str]
    files: dict[str, str] = Field(description="artifact file -> SHA-256")
    created_at: str
    extra: dict[str, Any]


class ModelDetailOut(ModelOut):
    params: dict[str, Any] = Field(description="what the forecaster needs to load (context, calibration, model)")


class ModelsOut(BaseModel):
    models: list[ModelOut]
    load_failures: dict[str, str] = Field(description="models that failed to load (id or path -> reason)")


class ActivationOut(BaseModel):
    model_id: str
    activated_at: str
    reason: str
    by: str | None


class TrainIn(BaseModel):
    algorithm: str = Field("lightgbm", description="algorithm name or alias (rf, lstm, gru, xgboost, ...)")
    horizon: str = Field("PT24H", description="ISO 8601 duration the model must forecast")


class BacktestIn(BaseModel):
    algorithms: list[str] = Field(
        default_factory=lambda: ["seasonal_naive_weekly", "lightgbm"], description="algorithm names or aliases"
    )
    start: str = Field(description="first origin, local date YYYY-MM-DD (origins at each local midnight)")
    end: str = Field(description="last origin, local date YYYY-MM-DD")
    horizon: str = Field("PT24H", description="ISO 8601 duration per origin")
    retrain_every: int = Field(7, ge=1, description="origins between refits")


class BacktestOut(BaseModel):
    backtest_id: str
    asset_id: str
    purpose: str
    algorithms: list[str]
    horizon_steps: int
    interval_seconds: int
    retrain_every: int
    levels: list[float]
    origins: list[str]
    skipped: dict[str, str]
    metrics: dict[str, dict[str, float | None]] = Field(
        description="algorithm -> mae, rmse, peak_error, pinball (kWh); cv_rmse, nmbe, mape, coverage_80 (fractions); mase; n"
    )
    created_at: str
    extra: dict[str, Any]
    plot_url: str
    forecasts_url: str


class PredictIn(BaseModel):
    """The replaced system's request body."""

    machine_id: str = Field(description="asset id")
    horizon_min: int = Field(1440, ge=1, le=_MAX_HORIZON_MIN,
                             description=f"minutes ahead (at most {MAX_HORIZON.days} days, the server's longest horizon)")
    algo: str = Field("best", description="algorithm (lstm, gru, xgboost, rf, lightgbm, ... or best)")
    want_quantiles: bool = Field(False, description="add the 0.1, 0.5 and 0.9 quantiles")


class PredictPoint(BaseModel):
    t: datetime = Field(description="interval start, UTC")
    horizon_min: int = Field(description="minutes from the last reading to the end of the interval")
    yhat: float = Field(description="kWh in the interval")
    quantiles: dict[str, float] | None


class PredictResult(BaseModel):
    machine_id: str
    algo: str
    unit: str
    points: list[PredictPoint]


class PredictOut(BaseModel):
    result: PredictResult
