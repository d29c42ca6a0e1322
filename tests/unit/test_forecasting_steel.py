"""Day-ahead backtest on the real UCI steel-plant data (15-min kWh, Asia/Seoul)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from digitaltwin.demo_data import STEEL_CSV
from digitaltwin.forecasting import backtest, daily_origins

TIMEZONE = "Asia/Seoul"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not STEEL_CSV.is_file(), reason=f"{STEEL_CSV} not present"),
]


def load_steel_usage() -> pd.Series:
    """``Usage_kWh`` (kWh per 15-min interval) indexed by UTC interval start.

    The file labels interval ENDS in local time as ``DD/MM/YYYY HH:MM``; each
    date's ``00:00`` row is 24:00 of that date (see the SOURCE.md beside it).
    """
    frame = pd.read_csv(STEEL_CSV, encoding="utf-8-sig", usecols=["date", "Usage_kWh"])
    end = pd.to_datetime(frame["date"], format="%d/%m/%Y %H:%M")
    end = end + pd.to_timedelta(((end.dt.hour == 0) & (end.dt.minute == 0)).astype(int), unit="D")
    start = (end - pd.Timedelta(minutes=15)).dt.tz_localize(TIMEZONE).dt.tz_convert("UTC")
    return pd.Series(
        frame["Usage_kWh"].to_numpy(dtype=float), index=pd.DatetimeIndex(start, name="ts"), name="Usage_kWh"
    )


@pytest.fixture(scope="module")
def usage() -> pd.Series:
    y = load_steel_usage()
    assert len(y) == 35_040 and y.index.is_unique and y.index.is_monotonic_increasing
    assert y.index[0] == pd.Timestamp("2017-12-31 15:00", tz="UTC")  # 2018-01-01 00:00 KST
    assert (y.index[1:] - y.index[:-1] == pd.Timedelta(minutes=15)).all()
    return y


def test_weekly_seasonal_naive_reference_figures(usage: pd.Series) -> None:
    origins = daily_origins(usage, timezone=TIMEZONE, start=date(2018, 11, 5), end=date(2018, 12, 30))
    assert len(origins) == 56 and origins[0] == pd.Timestamp("2018-11-04 15:00", tz="UTC")
    result = backtest(usage, algorithms=["seasonal_naive_weekly"], origins=origins, horizon_steps=96, timezone=TIMEZONE)
    metrics = result.metrics.loc["seasonal_naive_weekly"]
    assert metrics["n"] == 56 * 96
    assert metrics["mae"] == pytest.approx(12.63, abs=0.005)
    assert metrics["cv_rmse"] == pytest.approx(0.961, abs=0.0005)


def test_lightgbm_day_ahead_beats_weekly_seasonal_naive(usage: pd.Series) -> None:
    all_days = daily_origins(usage, timezone=TIMEZONE, start=date(2018, 11, 5), end=date(2018, 12, 30))
    origins = all_days[::8]  # 7 origins spread over Nov-Dec 2018, one LightGBM fit
    result = backtest(
        usage,
        algorithms=["seasonal_naive_weekly", "lightgbm"],
        origins=origins,
        horizon_steps=96,
        timezone=TIMEZONE,
        country="KR",
        retrain_every=7,
    )
    assert result.skipped_origins == []
    assert (result.metrics["n"] == 7 * 96).all()
    assert result.metrics.loc["lightgbm", "mae"] < result.metrics.loc["seasonal_naive_weekly", "mae"]
