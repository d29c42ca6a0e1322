"""Field case cases/forecasting/flat-series.md: the flatliner policy with its exact expected values.

Hourly load in kW, 72 h of history, 24 h forecast requested:
(a) 42 h varying in [3, 8], then 30 h of 0.0 -> 24 x 0.0, flatliner;
(b) 42 h varying, then 30 h of 5.0 -> 24 x 5.0 (median of the flat window), flatliner;
(c) a PV day profile with 12 h of 0.0 every night -> not flagged, 24 finite values >= 0;
(d) all 72 values null -> a 4xx-style "insufficient valid data" error naming the series.
No case returns NaN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from digitaltwin.forecasting import InsufficientValidDataError, make_forecaster
from digitaltwin.forecasting.checks import flat_level

INDEX = pd.date_range("2024-06-01", periods=72, freq="1h", tz="UTC")
VARYING = 3.0 + 5.0 * (np.sin(np.arange(42) * 0.7) + 1) / 2  # within [3, 8]


def case_a() -> pd.Series:
    return pd.Series(np.concatenate([VARYING, np.zeros(30)]), index=INDEX, name="load_kw")


def case_b() -> pd.Series:
    return pd.Series(np.concatenate([VARYING, np.full(30, 5.0)]), index=INDEX, name="load_kw")


def case_c() -> pd.Series:
    hour = INDEX.hour.to_numpy()
    daylight = (hour >= 6) & (hour < 18)
    return pd.Series(np.where(daylight, 40.0 * np.sin(np.pi * (hour - 6) / 12), 0.0), index=INDEX, name="pv_kw")


def case_d() -> pd.Series:
    return pd.Series(np.full(72, np.nan), index=INDEX, name="load_kw")


def forecast(y: pd.Series, algorithm: str = "seasonal_naive_daily", quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)):  # noqa: ANN201
    model = make_forecaster(algorithm)
    model.fit(y, horizon_steps=24, timezone="Europe/Berlin")
    return model.forecast(y, steps=24, quantiles=quantiles)


@pytest.mark.parametrize(("make", "level"), [(case_a, 0.0), (case_b, 5.0)])
@pytest.mark.parametrize("algorithm", ["seasonal_naive_daily", "persistence"])
def test_flatliner_forecasts_the_flat_level(make, level: float, algorithm: str) -> None:  # noqa: ANN001
    result = forecast(make(), algorithm)
    assert result.flatliner is True
    assert result.values.to_numpy().tolist() == [level] * 24
    assert result.values.index[0] == INDEX[-1] + pd.Timedelta(hours=1)
    for q in (0.1, 0.5, 0.9):
        assert result.quantiles[q].tolist() == [level] * 24


def test_pv_nights_are_not_flatliners() -> None:
    y = case_c()
    assert flat_level(y, pd.Timedelta(hours=1)) is None  # 12 h of zeros < the 24 h window
    result = forecast(y, quantiles=())  # 72 h is too short to calibrate intervals
    assert result.flatliner is False
    values = result.values.to_numpy()
    assert len(values) == 24 and np.isfinite(values).all() and (values >= 0).all()


@pytest.mark.parametrize("algorithm", ["seasonal_naive_daily", "persistence", "lightgbm"])
def test_all_null_history_is_insufficient_valid_data_naming_the_series(algorithm: str) -> None:
    model = make_forecaster(algorithm)
    with pytest.raises(InsufficientValidDataError) as info:
        model.fit(case_d(), horizon_steps=24, timezone="Europe/Berlin")
    assert info.value.series == "load_kw" and info.value.available == 0
    assert "insufficient valid data" in str(info.value) and "load_kw" in str(info.value)
    fitted = make_forecaster("seasonal_naive_daily")
    fitted.fit(case_c(), horizon_steps=24, timezone="Europe/Berlin")
    with pytest.raises(InsufficientValidDataError, match="insufficient valid data in series 'load_kw'"):
        fitted.forecast(case_d(), steps=24)


def test_the_flat_window_is_24_hours_and_needs_two_valid_values() -> None:
    step = pd.Timedelta(hours=1)
    y = case_b()
    assert flat_level(y.iloc[-23:], step) is None  # shorter than the window
    varied = y.copy()
    varied.iloc[-24] = 5.5  # one varying value inside the last 24 h
    assert flat_level(varied, step) is None
    gappy = y.copy()
    gappy.iloc[-24:-1] = np.nan  # a single valid value: not enough to call it flat
    assert flat_level(gappy, step) is None
    gappy.iloc[-2] = 5.0
    assert flat_level(gappy, step) == 5.0
