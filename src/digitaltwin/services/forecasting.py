"""Training, backtesting and serving forecasts of an asset's energy.

The target is the asset's energy per interval (kWh) on a regular grid in UTC,
built from whatever series carries its energy (interval energy, counter or
power) by :func:`digitaltwin.services.energy.energy_report`, at 15-minute
resolution, or hourly for series of hourly or longer intervals. Gaps are NaN.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pandas as pd

from digitaltwin.analytics.buckets import Bucket
from digitaltwin.domain.errors import NotFoundError, ValidationError
from digitaltwin.forecasting.algorithms import make_forecaster
from digitaltwin.forecasting.backtest import BacktestResult, backtest, daily_origins
from digitaltwin.forecasting.base import Forecaster
from digitaltwin.registry.store import ModelManifest, ModelRegistry
from digitaltwin.services.energy import energy_report, pick_energy_series
from digitaltwin.storage.repository import Repository

#: Algorithms that need no stored model: they are fitted on the request's history.
STATELESS = frozenset({"seasonal_naive_daily", "seasonal_naive_weekly"})
DAY_AHEAD_HORIZON = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Target:
    """An asset's energy per interval: ``y`` in kWh indexed by UTC interval starts."""

    y: pd.Series
    step: timedelta
    timezone: str
    country: str | None


@dataclass(frozen=True, slots=True)
class ForecastResult:
    """Forecast values (kWh per interval) indexed by UTC interval starts."""

    asset_id: str
    algorithm: str
    values: pd.Series
    step: timedelta
    manifest: ModelManifest | None


class ForecastService:
    """Use cases around forecasting one asset.

    Args:
        repo: storage.
        registry: model artifacts in ``MODELS_DIR``.
        max_hold: longest hold of one power sample (see the energy service).
    """

    def __init__(self, repo: Repository, registry: ModelRegistry, *, max_hold: timedelta) -> None:
        self.repo = repo
        self.registry = registry
        self.max_hold = max_hold
        self._loaded: dict[str, tuple[Forecaster, ModelManifest]] = {}
        self._lock = threading.Lock()

    def target(self, asset_id: str, *, start: datetime | None = None, end: datetime | None = None) -> Target:
        """The asset's energy per interval over ``[start, end)`` (default: all stored data).

        Raises:
            NotFoundError: unknown asset, or no energy-carrying readings.
        """
        asset = self.repo.get_asset(asset_id)
        site = self.repo.get_site(asset.site_id)
        info = pick_energy_series(self.repo, asset_id)
        extent = self.repo.series_extent(info.id)
        if extent is None:
            raise NotFoundError(f"asset {asset_id!r} has no readings", field="asset_id")
        hourly = (info.interval_seconds or 0) >= 3600
        step = timedelta(hours=1) if hourly else timedelta(minutes=15)
        first, last, _ = extent
        start = max(start, first) if start else first
        end = min(end, last + step) if end else last + step
        if end <= start:
            raise NotFoundError(f"asset {asset_id!r} has no readings in the requested window", field="asset_id")
        report = energy_report(
            self.repo,
            asset_id,
            start=start,
            end=end,
            bucket=Bucket.HOUR if hourly else Bucket.QUARTER_HOUR,
            max_hold=self.max_hold,
            quantity=info.quantity,
        )
        index = pd.DatetimeIndex([r.start for r in report.rows]).tz_convert("UTC")
        y = pd.Series([r.energy_kwh for r in report.rows], index=index, dtype="float64", name=asset_id)
        return Target(y, step, site.timezone, site.country)

    def train(self, asset_id: str, algorithm: str, *, horizon: timedelta = DAY_AHEAD_HORIZON) -> ModelManifest:
        """Fit ``algorithm`` on all stored history and save it with its holdout metrics.

        Metrics come from a backtest over the last 14 local days (one fit before
        them), so a manifest always says how well its model did on unseen data.
        """
        target = self.target(asset_id)
        steps = _steps(horizon, target.step)
        metrics: dict[str, float] | None = None
        last_day = target.y.index[-1].tz_convert(target.timezone).date()
        origins = daily_origins(target.y, timezone=target.timezone, start=last_day - timedelta(days=14), end=last_day - timedelta(days=1))
        if origins:
            result = backtest(
                target.y, algorithms=[algorithm], origins=origins, horizon_steps=steps,
                timezone=target.timezone, country=target.country, retrain_every=len(origins),
            )
            if algorithm in result.metrics.index:
                metrics = {k: float(v) for k, v in result.metrics.loc[algorithm].items()}
        model = make_forecaster(algorithm)
        model.fit(target.y, horizon_steps=steps, timezone=target.timezone, country=target.country)
        return self.registry.save(
            model,
            asset_id=asset_id,
            training_start=target.y.index[0].to_pydatetime(),
            training_end=(target.y.index[-1] + target.step).to_pydatetime(),
            metrics=metrics,
        )

    def backtest(
        self,
        asset_id: str,
        algorithms: list[str],
        *,
        start: date,
        end: date,
        horizon: timedelta = DAY_AHEAD_HORIZON,
        retrain_every: int = 7,
    ) -> BacktestResult:
        """Rolling-origin backtest with one origin at each local midnight from ``start`` to ``end``."""
        target = self.target(asset_id)
        origins = daily_origins(target.y, timezone=target.timezone, start=start, end=end)
        if not origins:
            raise ValidationError("no origin with data between start and end", field="start")
        return backtest(
            target.y, algorithms=algorithms, origins=origins, horizon_steps=_steps(horizon, target.step),
            timezone=target.timezone, country=target.country, retrain_every=retrain_every,
        )

    def model(self, asset_id: str, algorithm: str) -> tuple[Forecaster, ModelManifest] | None:
        """The newest stored model of ``algorithm`` for the asset, loaded once and verified."""
        manifest = self.registry.latest(asset_id, algorithm)
        if manifest is None:
            return None
        with self._lock:
            cached = self._loaded.get(manifest.model_id)
            if cached is None:
                cached = self._loaded[manifest.model_id] = self.registry.load(manifest.model_id)
        return cached

    def forecast(self, asset_id: str, algorithm: str, *, horizon: timedelta = DAY_AHEAD_HORIZON) -> ForecastResult:
        """Forecast the intervals after the last stored reading.

        Raises:
            NotFoundError: no trained model of a trained algorithm.
            ValidationError: naming ``horizon`` when it is not a positive multiple
                of the resolution or exceeds what the model was trained for.
            InsufficientHistoryError: too little recent history for the model's lags.
        """
        stored = None if algorithm in STATELESS else self.model(asset_id, algorithm)
        if algorithm not in STATELESS and stored is None:
            make_forecaster(algorithm)  # unknown names raise UnknownAlgorithmError first
            raise NotFoundError(
                f"no trained {algorithm} model for asset {asset_id!r}; train one first", field="algorithm"
            )
        info = pick_energy_series(self.repo, asset_id)
        extent = self.repo.series_extent(info.id)
        if extent is None:
            raise NotFoundError(f"asset {asset_id!r} has no readings", field="asset_id")
        if stored is not None:
            model, manifest = stored
        else:
            model, manifest = make_forecaster(algorithm), None
        # Enough recent history for the model's lags, plus a day of margin.
        probe = self.target(asset_id, start=extent[1] - timedelta(days=1))
        steps = _steps(horizon, probe.step)
        window = probe.step * (model.required_history() + steps) + timedelta(days=1)
        target = self.target(asset_id, start=extent[1] - window)
        if manifest is None:
            model.fit(target.y, horizon_steps=steps, timezone=target.timezone, country=target.country)
        if manifest is not None and steps > manifest.horizon_steps:
            raise ValidationError(
                f"horizon of {steps} steps exceeds the {manifest.horizon_steps} steps the model was trained for",
                field="horizon",
            )
        values = model.predict(target.y, steps=steps)
        return ForecastResult(asset_id, algorithm, values, target.step, manifest)


def _steps(horizon: timedelta, step: timedelta) -> int:
    steps = horizon / step
    if horizon <= timedelta(0) or steps != int(steps):
        raise ValidationError(f"horizon must be a positive multiple of {int(step.total_seconds() // 60)} minutes", field="horizon")
    return int(steps)

