"""Seasonal naive forecasters: tomorrow looks like today, next week like this week.

The value predicted for an interval is the value at the same *local* wall-clock
time one season (a local day or week) earlier in the site's zone, so a daily
profile stays aligned with the clock across daylight-saving changes. For steps
beyond one season the last observed season repeats.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from digitaltwin.forecasting.base import FitContext, Forecaster
from digitaltwin.forecasting.errors import InsufficientHistoryError
from digitaltwin.forecasting.series import samples_per_day, series_name

#: Grid assumed by ``required_history`` before ``fit`` (the finest the product uses).
UNFITTED_STEP = pd.Timedelta(minutes=15)
MODEL_FILE = "model.json"


class SeasonalNaiveForecaster(Forecaster):
    """Predict the value one season (``season_days`` local days) earlier.

    Gaps: when the source value is ``NaN`` (or falls on a daylight-saving hole)
    the value one more season back is used, and so on through the given history;
    if none is found, the mean of the history is used. Needs at least one
    season of history (``season_days * samples_per_day``; 96 for a day of
    15-min data). Fitting learns nothing beyond the grid step.

    Use the registered subclasses (:class:`DailySeasonalNaiveForecaster`,
    :class:`WeeklySeasonalNaiveForecaster`).
    """

    season_days: ClassVar[int]
    stateless: ClassVar[bool] = True
    artifact_files: ClassVar[tuple[str, ...]] = (MODEL_FILE,)

    def _required_history(self, context: FitContext) -> int:
        return self.season_days * samples_per_day(context.step)

    def _required_history_unfitted(self) -> int:
        return self.season_days * samples_per_day(UNFITTED_STEP)

    def _fit(self, y: pd.Series, context: FitContext, exog: pd.DataFrame | None) -> None:
        required = self._required_history(context)
        if len(y) < required:
            raise InsufficientHistoryError(available=len(y), required=required, series=series_name(y))

    def _predict(self, history: pd.Series, steps: int, exog: pd.DataFrame | None) -> np.ndarray:
        context = self.context
        target = pd.date_range(history.index[-1] + context.step, periods=steps, freq=context.step)
        wall = target.tz_convert(context.timezone).tz_localize(None)
        out = np.full(steps, np.nan)
        pending = np.ones(steps, dtype=bool)
        first = history.index[0]
        seasons = 1
        while pending.any():
            back = pd.Timedelta(days=self.season_days * seasons)
            source = (wall[pending] - back).tz_localize(context.timezone, ambiguous="NaT", nonexistent="NaT")
            source = source.tz_convert("UTC")
            exact = target[pending] - back  # fallback where the local time is ambiguous or missing
            source = source.where(~np.asarray(source.isna()), exact)
            values = history.reindex(source).to_numpy()
            found = ~np.isnan(values)
            idx = np.flatnonzero(pending)
            out[idx[found]] = values[found]
            pending[idx[found]] = False
            if (source < first).all():
                break
            seasons += 1
        if pending.any():
            fallback = float(np.nanmean(history.to_numpy())) if history.notna().any() else np.nan
            if np.isnan(fallback):
                raise InsufficientHistoryError(
                    available=0, required=1, series=series_name(history), purpose="non-missing history"
                )
            out[pending] = fallback
        return out

    def _to_files(self) -> tuple[dict[str, bytes], dict[str, Any]]:
        params = {"season_days": self.season_days, "season_steps": self.required_history()}
        return {MODEL_FILE: json.dumps(params, sort_keys=True).encode("utf-8")}, params

    @classmethod
    def _from_files(cls, files: dict[str, bytes], params: dict[str, Any], context: FitContext) -> Forecaster:
        if json.loads(files[MODEL_FILE].decode("utf-8")) != params:
            raise ValueError("seasonal naive artifact does not match its params")
        if int(params.get("season_days", -1)) != cls.season_days:
            raise ValueError(f"params describe season_days={params.get('season_days')}, not a {cls.__name__}")
        return cls()


class DailySeasonalNaiveForecaster(SeasonalNaiveForecaster):
    """Value at the same local time one day earlier (96 steps back for 15-min data)."""

    name = "seasonal_naive_daily"
    season_days = 1


class WeeklySeasonalNaiveForecaster(SeasonalNaiveForecaster):
    """Value at the same local time one week earlier (672 steps back for 15-min data)."""

    name = "seasonal_naive_weekly"
    season_days = 7


class PersistenceForecaster(Forecaster):
    """Persistence: every step equals the last non-missing value of the history.

    The reference for intra-day forecasts (1 to 4 steps ahead). Needs one sample.
    """

    name = "persistence"
    stateless: ClassVar[bool] = True
    artifact_files: ClassVar[tuple[str, ...]] = (MODEL_FILE,)

    def _required_history(self, context: FitContext) -> int:
        return 1

    def _required_history_unfitted(self) -> int:
        return 1

    def _fit(self, y: pd.Series, context: FitContext, exog: pd.DataFrame | None) -> None:
        return None

    def _predict(self, history: pd.Series, steps: int, exog: pd.DataFrame | None) -> np.ndarray:
        valid = history.dropna()
        if valid.empty:
            raise InsufficientHistoryError(available=0, required=1, series=series_name(history), purpose="non-missing history")
        return np.full(steps, float(valid.iloc[-1]))

    def _to_files(self) -> tuple[dict[str, bytes], dict[str, Any]]:
        return {MODEL_FILE: b"{}"}, {}

    @classmethod
    def _from_files(cls, files: dict[str, bytes], params: dict[str, Any], context: FitContext) -> Forecaster:
        return cls()
