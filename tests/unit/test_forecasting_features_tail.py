"""The prediction path's features (:func:`make_features_tail`) equal the full-table ones (:func:`make_features`).

Real data: the Cambridge b2 building (hourly, Europe/London, GB holidays, Bedford temperature
as exogenous column) and the steel plant (15 min), both with gaps cut in, over the DST changes
of 2018 and 2019, Christmas and the turn of the year.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from digitaltwin.demo_data import STEEL_CSV
from digitaltwin.forecasting.features import FeaturePlan, make_features, make_features_tail, nanmedian_columns
from digitaltwin.forecasting.lightgbm_forecaster import LightGBMForecaster
from digitaltwin.forecasting.series import to_grid

DATASETS = Path(__file__).resolve().parents[2] / "datasets"


def cambridge() -> tuple[pd.Series, pd.DataFrame]:
    """Hourly kWh of building b2 and Bedford temperature (2019, UTC hour starts), with gaps cut in."""
    folder = DATASETS / "cambridge_estates_2019"
    frame = pd.read_csv(folder / "UCam_Building_b2" / "electricity" / "2019.csv")
    index = pd.DatetimeIndex(pd.to_datetime(frame["datetime"])).tz_localize("UTC")
    y = pd.Series(frame["equipment load [kWh]"].to_numpy(dtype=float), index=index, name="b2")
    y = y.drop(y.index[2000:2030])  # a missing day and a quarter (mid March)
    y.iloc[7100:7110] = np.nan  # and NaN readings (late October)
    weather = pd.read_csv(folder / "weather_bedford" / "2019.csv")
    stamps = pd.DatetimeIndex(pd.to_datetime(weather["datetime"])).tz_localize("UTC")
    exog = pd.DataFrame({"temperature": weather["air_temperature [degC]"].to_numpy(dtype=float)}, index=stamps)
    exog = exog.drop(exog.index[2100:2110])
    grid = to_grid(y, pd.Timedelta(hours=1))
    return grid, exog.reindex(grid.index.append(pd.date_range(grid.index[-1] + pd.Timedelta(hours=1), periods=48, freq="h")))


def steel() -> pd.Series:
    """15-min kWh of the steel plant (2018, UTC interval starts), with gaps cut in."""
    frame = pd.read_csv(STEEL_CSV, encoding="utf-8-sig", usecols=["date", "Usage_kWh"])
    end = pd.to_datetime(frame["date"], format="%d/%m/%Y %H:%M")
    end = end + pd.to_timedelta(((end.dt.hour == 0) & (end.dt.minute == 0)).astype(int), unit="D")
    start = (end - pd.Timedelta(minutes=15)).dt.tz_localize("Asia/Seoul").dt.tz_convert("UTC")
    y = pd.Series(frame["Usage_kWh"].to_numpy(dtype=float), index=pd.DatetimeIndex(start), name="steel")
    y = y.drop(y.index[8000:8150])  # a missing day and a half (late March)
    y.iloc[28500:28600] = np.nan
    return to_grid(y, pd.Timedelta(minutes=15))


def frame_at(y: pd.Series, origin: pd.Timestamp, plan: FeaturePlan, steps: int, extra: int = 0) -> pd.Series:
    """What the prediction path builds: ``required_history + extra`` samples before ``origin``, then ``steps`` NaN."""
    before = y[y.index < origin].iloc[-(plan.required_history + extra) :]
    step = y.index[1] - y.index[0]
    future = pd.Series(np.nan, index=pd.date_range(before.index[-1] + step, periods=steps, freq=step))
    return pd.concat([before, future])


def assert_same(frame: pd.Series, plan: FeaturePlan, steps: int, *, timezone: str, country: str | None,
                exog: pd.DataFrame | None = None, step: pd.Timedelta | None = None) -> None:
    part = None if exog is None else exog.reindex(frame.index)
    full = make_features(frame, plan, timezone=timezone, country=country, exog=part).to_numpy()[-steps:]
    tail = make_features_tail(
        frame.to_numpy(), plan, start=frame.index[0], step=step or frame.index[1] - frame.index[0], rows=steps,
        timezone=timezone, country=country,
        exog=None if part is None else {c: part[c].to_numpy() for c in part.columns},
    )
    assert tail.shape == full.shape
    np.testing.assert_array_equal(tail, full)  # bit for bit, NaN in the same places


# Origins (UTC) whose frame or future rows cross a DST change (at 01:00 UTC in Europe), a gap, Christmas.
CAMBRIDGE_ORIGINS = ["2019-03-30 23:00", "2019-03-31 01:00", "2019-03-31 13:00", "2019-04-01 00:00", "2019-04-08 00:00",
                     "2019-10-26 23:00", "2019-10-27 00:00", "2019-10-27 01:00", "2019-10-28 00:00", "2019-11-05 00:00",
                     "2019-12-25 00:00", "2019-12-27 00:00"]


@pytest.mark.parametrize("horizon_steps", [24, 1, 6])
@pytest.mark.parametrize("with_exog", [True, False])
def test_hourly_tail_features_equal_the_full_table(horizon_steps: int, with_exog: bool) -> None:
    y, exog = cambridge()
    plan = FeaturePlan.for_horizon(step=pd.Timedelta(hours=1), horizon_steps=horizon_steps, holidays=True,
                                   exog=("temperature",) if with_exog else ())
    for origin in CAMBRIDGE_ORIGINS:
        frame = frame_at(y, pd.Timestamp(origin, tz="UTC"), plan, horizon_steps)
        assert_same(frame, plan, horizon_steps, timezone="Europe/London", country="GB", exog=exog if with_exog else None)
    # more history than needed, fewer rows than the horizon, and no holidays
    frame = frame_at(y, pd.Timestamp("2019-10-27", tz="UTC"), plan, horizon_steps, extra=50)
    assert_same(frame, plan, max(1, horizon_steps // 2), timezone="Europe/London", country="GB",
                exog=exog if with_exog else None)
    plain = FeaturePlan.for_horizon(step=pd.Timedelta(hours=1), horizon_steps=horizon_steps, holidays=False)
    assert_same(frame, plain, horizon_steps, timezone="Europe/London", country=None)


@pytest.mark.parametrize("horizon_steps", [96, 4])
@pytest.mark.parametrize(("timezone", "country"), [("Europe/Berlin", "DE"), ("Asia/Seoul", "KR"), ("America/New_York", "US")])
def test_quarter_hour_tail_features_equal_the_full_table(horizon_steps: int, timezone: str, country: str) -> None:
    y = steel()
    plan = FeaturePlan.for_horizon(step=pd.Timedelta(minutes=15), horizon_steps=horizon_steps, holidays=True)
    # UTC origins around the DST changes of Europe (01:00 UTC) and New York (07:00 / 06:00 UTC), Christmas, New Year
    origins = ["2018-03-11 06:45", "2018-03-11 07:00", "2018-03-24 23:00", "2018-03-25 00:45", "2018-03-25 01:30",
               "2018-03-26 00:00", "2018-04-01 00:00", "2018-10-27 22:00", "2018-10-28 01:00", "2018-10-28 03:00",
               "2018-11-04 05:45", "2018-11-04 06:00", "2018-12-25 00:00", "2018-12-31 12:00"]
    for origin in origins:
        frame = frame_at(y, pd.Timestamp(origin, tz="UTC"), plan, horizon_steps)
        assert_same(frame, plan, horizon_steps, timezone=timezone, country=country)


def test_frames_shorter_than_the_history_give_nan_like_the_full_table() -> None:
    y = steel()
    plan = FeaturePlan.for_horizon(step=pd.Timedelta(minutes=15), horizon_steps=96, holidays=True)
    for length in (1, 50, 96, 97, 200, 700, plan.required_history - 1):
        frame = y.iloc[1000 : 1000 + length]
        for rows in sorted({1, min(length, 96), length}):
            assert_same(frame, plan, rows, timezone="Europe/Berlin", country="DE", step=pd.Timedelta(minutes=15))


def test_rows_out_of_range_raise() -> None:
    plan = FeaturePlan.for_horizon(step=pd.Timedelta(hours=1), horizon_steps=24, holidays=False)
    stamp = pd.Timestamp("2019-01-01", tz="UTC")
    for rows in (0, 11):
        with pytest.raises(ValueError, match="rows"):
            make_features_tail(np.ones(10), plan, start=stamp, step=pd.Timedelta(hours=1), rows=rows, timezone="UTC", country=None)
    exog_plan = FeaturePlan.for_horizon(step=pd.Timedelta(hours=1), horizon_steps=24, holidays=False, exog=("temperature",))
    with pytest.raises(ValueError, match="temperature"):
        make_features_tail(np.ones(10), exog_plan, start=stamp, step=pd.Timedelta(hours=1), rows=2, timezone="UTC", country=None)


def test_lightgbm_predicts_from_the_tail_what_it_predicts_from_the_full_table() -> None:
    """The served path against the full-table features of the same frame, on the Cambridge DST weekend."""
    y, exog = cambridge()
    model = LightGBMForecaster(num_boost_round=40)
    cut = y.index < pd.Timestamp("2019-10-20", tz="UTC")
    model.fit(y[cut], horizon_steps=24, timezone="Europe/London", country="GB", exog=exog, calibrate=False)
    plan = model._plan
    assert plan is not None
    for origin in ("2019-10-26 23:00", "2019-10-27 00:00", "2019-10-27 01:00", "2019-10-28 05:00"):
        history = y[y.index < pd.Timestamp(origin, tz="UTC")]
        served = model.predict(history, steps=24, exog=exog)
        frame = frame_at(y, pd.Timestamp(origin, tz="UTC"), plan, 24)
        full = make_features(frame, plan, timezone="Europe/London", country="GB", exog=exog.reindex(frame.index))
        expected = np.maximum(model._predict_matrix(full.to_numpy()[-24:]), 0.0)
        np.testing.assert_array_equal(served.to_numpy(), expected)


def test_nanmedian_columns_is_numpys_nanmedian_bit_for_bit() -> None:
    rng = np.random.default_rng(5)
    for trial in range(300):
        k, n = int(rng.integers(1, 10)), int(rng.integers(1, 40))
        values = [rng.normal(size=(k, n)) * 1e3, np.round(rng.normal(size=(k, n)) * 3), rng.gamma(2.0, 10.0, size=(k, n))][trial % 3]
        values[rng.random((k, n)) < rng.random()] = np.nan  # ties, gaps and all-NaN columns
        with np.errstate(all="ignore"), pytest.warns(RuntimeWarning) if np.isnan(values).all(axis=0).any() else nullcontext():
            expected = np.nanmedian(values, axis=0)
        np.testing.assert_array_equal(nanmedian_columns(values), expected)
    with pytest.raises(ValueError):
        nanmedian_columns(np.ones(3))
