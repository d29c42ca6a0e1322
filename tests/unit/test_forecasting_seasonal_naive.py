"""Seasonal naive forecasters: exact values on synthetic series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from digitaltwin.forecasting import InsufficientHistoryError, NotFittedError, UnknownAlgorithmError, make_forecaster
from digitaltwin.forecasting.algorithms import ALGORITHMS
from digitaltwin.forecasting.seasonal_naive import (
    DailySeasonalNaiveForecaster,
    SeasonalNaiveForecaster,
    WeeklySeasonalNaiveForecaster,
)


def ramp(periods: int, freq: str = "15min", start: str = "2024-01-01") -> pd.Series:
    index = pd.date_range(start, periods=periods, freq=freq, tz="UTC", name="ts")
    return pd.Series(np.arange(periods, dtype=float), index=index, name="load_kwh")


def test_daily_repeats_the_last_local_day_beyond_the_season() -> None:
    y = ramp(96 * 3)
    model = make_forecaster("seasonal_naive_daily")
    model.fit(y, horizon_steps=96, timezone="Asia/Seoul")
    forecast = model.predict(y, steps=200)
    last = len(y) - 1
    expected = [last - 96 + ((s - 1) % 96) + 1 for s in range(1, 201)]
    assert forecast.to_numpy().tolist() == expected
    assert forecast.index[0] == y.index[-1] + pd.Timedelta(minutes=15)
    assert (forecast.index.to_series().diff().dropna() == pd.Timedelta(minutes=15)).all()
    assert str(forecast.index.tz) == "UTC"


def test_weekly_takes_the_value_one_week_earlier() -> None:
    y = ramp(24 * 10, freq="h")
    model = make_forecaster("seasonal_naive_weekly")
    model.fit(y, horizon_steps=24, timezone="UTC")
    assert model.required_history() == 168
    forecast = model.predict(y, steps=24)
    assert forecast.to_numpy().tolist() == [len(y) - 168 + s for s in range(24)]


def test_daily_follows_local_clock_across_daylight_saving() -> None:
    # hourly values equal to the local (Europe/Berlin) hour; 2024-03-31 has 23 local hours
    index = pd.date_range("2024-03-20 23:00", "2024-03-30 22:00", freq="h", tz="UTC")
    y = pd.Series(index.tz_convert("Europe/Berlin").hour.to_numpy(dtype=float), index=index)
    model = make_forecaster("seasonal_naive_daily")
    model.fit(y, horizon_steps=24, timezone="Europe/Berlin")
    forecast = model.predict(y, steps=23)
    local_hours = forecast.index.tz_convert("Europe/Berlin").hour.to_numpy(dtype=float)
    assert forecast.to_numpy().tolist() == local_hours.tolist()


def test_gap_falls_back_one_more_season() -> None:
    y = ramp(96 * 3)
    y.iloc[-96] = np.nan  # the source of the first step
    model = make_forecaster("seasonal_naive_daily")
    model.fit(y, horizon_steps=96, timezone="UTC")
    forecast = model.predict(y, steps=2)
    assert forecast.tolist() == [len(y) - 192, len(y) - 95]


def test_missing_timestamps_are_gaps_not_errors() -> None:
    y = ramp(96 * 3).drop(ramp(96 * 3).index[100:110])
    model = make_forecaster("seasonal_naive_daily")
    model.fit(y, horizon_steps=4, timezone="UTC")
    assert np.isfinite(model.predict(y, steps=96)).all()


def test_insufficient_history_names_counts_and_series() -> None:
    model = make_forecaster("seasonal_naive_weekly")
    model.fit(ramp(96 * 8), horizon_steps=96, timezone="UTC")
    with pytest.raises(InsufficientHistoryError) as info:
        model.predict(ramp(96 * 2), steps=96)
    assert (info.value.available, info.value.required, info.value.series) == (192, 672, "load_kwh")
    assert "192" in str(info.value) and "672" in str(info.value) and "load_kwh" in str(info.value)
    with pytest.raises(InsufficientHistoryError):
        make_forecaster("seasonal_naive_weekly").fit(ramp(100), horizon_steps=96, timezone="UTC")


def test_required_history_before_fit_assumes_15_minutes() -> None:
    assert make_forecaster("seasonal_naive_daily").required_history() == 96
    assert make_forecaster("seasonal_naive_weekly").required_history() == 672
    with pytest.raises(NotFittedError):
        make_forecaster("lightgbm").required_history()


def test_contract_errors() -> None:
    model = make_forecaster("seasonal_naive_daily")
    with pytest.raises(NotFittedError):
        model.predict(ramp(200), steps=1)
    with pytest.raises(NotFittedError):
        model.to_artifact()
    naive = ramp(200)
    naive.index = naive.index.tz_localize(None)
    with pytest.raises(ValueError, match="naive"):
        model.fit(naive, horizon_steps=4, timezone="UTC")
    with pytest.raises(ValueError, match="timezone"):
        model.fit(ramp(200), horizon_steps=4, timezone="Mars/Olympus")
    model.fit(ramp(200), horizon_steps=4, timezone="UTC")
    with pytest.raises(ValueError, match="grid"):
        model.predict(ramp(200, freq="10min"), steps=1)
    with pytest.raises(ValueError, match="steps"):
        model.predict(ramp(200), steps=0)


def test_artifact_round_trip_is_plain_json() -> None:
    model = make_forecaster("seasonal_naive_weekly")
    y = ramp(96 * 8)
    model.fit(y, horizon_steps=96, timezone="Asia/Seoul", country="KR")
    files, params = model.to_artifact()
    assert params["model"]["season_steps"] == 672 and params["context"]["step_seconds"] == 900
    assert list(files) == ["model.json"] and files["model.json"].startswith(b"{")
    restored = WeeklySeasonalNaiveForecaster.from_artifact(files, params)
    assert isinstance(restored, WeeklySeasonalNaiveForecaster)
    pd.testing.assert_series_equal(restored.predict(y, steps=96), model.predict(y, steps=96))
    with pytest.raises(ValueError):
        DailySeasonalNaiveForecaster.from_artifact(files, params)
    with pytest.raises(ValueError):
        SeasonalNaiveForecaster.from_artifact(files, params)


def test_registry_of_algorithms() -> None:
    assert set(ALGORITHMS) >= {
        "persistence", "seasonal_naive_daily", "seasonal_naive_weekly", "ridge", "random_forest", "xgboost", "lightgbm",
        "ensemble_mean", "ensemble_median", "ensemble_weighted",
    }
    with pytest.raises(UnknownAlgorithmError) as info:
        make_forecaster("prophet")
    assert info.value.algorithm == "prophet" and "lightgbm" in info.value.known
