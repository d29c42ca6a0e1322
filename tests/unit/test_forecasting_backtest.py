"""Rolling-origin backtest and origin helpers on synthetic series."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from digitaltwin.forecasting import UnknownAlgorithmError, backtest, daily_origins


def daily_pattern(days: int) -> pd.Series:
    """Hourly kWh repeating exactly every local (Asia/Seoul) day, plus a slow trend."""
    index = pd.date_range("2024-01-01 15:00", periods=24 * days, freq="1h", tz="UTC")  # local midnight start
    local_hour = index.tz_convert("Asia/Seoul").hour.to_numpy()
    return pd.Series(10.0 + local_hour, index=index, name="kwh")


def test_backtest_tables_skips_and_exact_naive_score() -> None:
    y = daily_pattern(25)
    origins = daily_origins(y, timezone="Asia/Seoul", start=date(2024, 1, 2), end=date(2024, 1, 26))
    assert len(origins) == 25 and origins[0] == y.index[0]
    result = backtest(
        y,
        algorithms=["seasonal_naive_daily", "lightgbm"],
        origins=origins,
        horizon_steps=24,
        timezone="Asia/Seoul",
        country="KR",
        retrain_every=3,
    )
    # lightgbm needs 336 + 24 samples: the first 15 origins are skipped for every algorithm
    assert result.skipped_origins == origins[:15]
    assert set(result.skip_reasons) == set(origins[:15])
    kept = origins[15:]
    assert list(result.forecasts.columns) == ["origin", "ts", "algorithm", "actual", "predicted", "q0.1", "q0.5", "q0.9"]
    assert len(result.forecasts) == len(kept) * 24 * 2
    assert (result.forecasts["ts"] >= result.forecasts["origin"]).all()
    assert list(result.metrics.index) == ["seasonal_naive_daily", "lightgbm"]
    assert list(result.metrics.columns) == [
        "mae", "rmse", "cv_rmse", "nmbe", "mape", "mase", "pinball", "coverage_80", "peak_error", "n"
    ]
    naive = result.metrics.loc["seasonal_naive_daily"]
    assert naive["mae"] == 0 and naive["nmbe"] == 0
    assert result.metrics.loc["lightgbm", "n"] == len(kept) * 24
    assert np.isfinite(result.forecasts["predicted"]).all()


def test_backtest_never_sees_the_future_of_an_origin() -> None:
    y = daily_pattern(20)
    origin = y.index[-48]
    changed = y.copy()
    changed.loc[origin:] = 1e6
    runs = [
        backtest(
            s,
            algorithms=["lightgbm", "seasonal_naive_weekly"],
            origins=[origin],
            horizon_steps=24,
            timezone="Asia/Seoul",
        )
        for s in (y, changed)
    ]
    np.testing.assert_array_equal(runs[0].forecasts["predicted"], runs[1].forecasts["predicted"])
    assert (runs[1].forecasts["actual"] == 1e6).all()


def test_min_train_samples_and_argument_errors() -> None:
    y = daily_pattern(10)
    origins = [y.index[24 * 2], y.index[24 * 8]]
    result = backtest(
        y, algorithms=["seasonal_naive_daily"], origins=origins, horizon_steps=24, timezone="UTC", min_train_samples=100
    )
    assert result.skipped_origins == origins[:1]
    with pytest.raises(UnknownAlgorithmError):
        backtest(y, algorithms=["nope"], origins=origins, horizon_steps=24, timezone="UTC")
    with pytest.raises(ValueError, match="grid"):
        backtest(
            y,
            algorithms=["seasonal_naive_daily"],
            origins=[y.index[50] + pd.Timedelta(minutes=7)],
            horizon_steps=24,
            timezone="UTC",
        )
    with pytest.raises(ValueError, match="naive"):
        backtest(
            y,
            algorithms=["seasonal_naive_daily"],
            origins=[pd.Timestamp("2024-01-05")],
            horizon_steps=24,
            timezone="UTC",
        )


def test_daily_origins_are_local_midnights_in_utc() -> None:
    index = pd.date_range("2024-03-28", "2024-04-03", freq="15min", tz="UTC")
    y = pd.Series(1.0, index=index)
    origins = daily_origins(y, timezone="Europe/Berlin", start=date(2024, 3, 29), end=date(2024, 4, 1))
    assert origins == [
        pd.Timestamp("2024-03-28 23:00", tz="UTC"),
        pd.Timestamp("2024-03-29 23:00", tz="UTC"),
        pd.Timestamp("2024-03-30 23:00", tz="UTC"),
        pd.Timestamp("2024-03-31 22:00", tz="UTC"),  # summer time from 2024-03-31
    ]
    seoul = daily_origins(y, timezone="Asia/Seoul", start=date(2024, 3, 20), end=date(2024, 3, 30))
    assert seoul == [pd.Timestamp("2024-03-28 15:00", tz="UTC"), pd.Timestamp("2024-03-29 15:00", tz="UTC")]
