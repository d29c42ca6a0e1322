"""LightGBM forecaster on synthetic series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from digitaltwin.forecasting import InsufficientHistoryError, make_forecaster
from digitaltwin.forecasting.features import FeaturePlan, make_features
from digitaltwin.forecasting.lightgbm_forecaster import LightGBMForecaster


def synthetic(days: int, freq: str = "1h", seed: int = 0) -> pd.Series:
    """Daily sine plus a weekend step plus noise (kW)."""
    index = pd.date_range("2024-01-01", periods=days * pd.Timedelta("1D") // pd.Timedelta(freq), freq=freq, tz="UTC")
    local = index.tz_convert("Europe/Berlin")
    hours = local.hour + local.minute / 60
    rng = np.random.default_rng(seed)
    values = 20 + 8 * np.sin(2 * np.pi * hours / 24) - 6 * (local.day_of_week >= 5) + rng.normal(0, 0.5, len(index))
    return pd.Series(values, index=index, name="site_kw")


def test_fit_predict_returns_finite_values_on_the_next_intervals() -> None:
    y = synthetic(60)
    model = make_forecaster("lightgbm")
    model.fit(y.iloc[:-24], horizon_steps=24, timezone="Europe/Berlin", country="DE")
    forecast = model.predict(y.iloc[:-24], steps=24)
    assert len(forecast) == 24 and np.isfinite(forecast).all()
    pd.testing.assert_index_equal(forecast.index, y.index[-24:], check_names=False)
    assert np.mean(np.abs(forecast.to_numpy() - y.iloc[-24:].to_numpy())) < 1.5
    assert len(model.predict(y.iloc[:-24], steps=5)) == 5


def test_steps_beyond_fitted_horizon_raise() -> None:
    y = synthetic(30)
    model = make_forecaster("lightgbm")
    model.fit(y, horizon_steps=24, timezone="Europe/Berlin")
    with pytest.raises(ValueError, match="24"):
        model.predict(y, steps=25)


def test_training_is_deterministic() -> None:
    y = synthetic(30)
    first, second = make_forecaster("lightgbm"), make_forecaster("lightgbm")
    for model in (first, second):
        model.fit(y, horizon_steps=24, timezone="Europe/Berlin")
    pd.testing.assert_series_equal(first.predict(y, steps=24), second.predict(y, steps=24))


def test_gaps_in_target_are_skipped_and_tolerated_in_history() -> None:
    y = synthetic(40)
    y.iloc[200:260] = np.nan
    y = y.drop(y.index[500:510])
    model = make_forecaster("lightgbm")
    model.fit(y, horizon_steps=24, timezone="Europe/Berlin")
    history = y.copy()
    history.iloc[-5:] = np.nan
    assert np.isfinite(model.predict(history, steps=24)).all()


def test_insufficient_history_fields() -> None:
    y = synthetic(30)
    model = make_forecaster("lightgbm")
    model.fit(y, horizon_steps=24, timezone="Europe/Berlin")
    assert model.required_history() == 336  # two weeks of hourly lags
    with pytest.raises(InsufficientHistoryError) as info:
        model.predict(y.iloc[:100], steps=24)
    assert (info.value.available, info.value.required, info.value.series) == (100, 336, "site_kw")
    with pytest.raises(InsufficientHistoryError) as info:
        make_forecaster("lightgbm").fit(y.iloc[:340], horizon_steps=24, timezone="UTC")
    assert info.value.series == "site_kw" and info.value.available == 340


def test_feature_plan_for_resolution_and_horizon() -> None:
    quarter = pd.Timedelta(minutes=15)
    day_ahead = FeaturePlan.for_horizon(step=quarter, horizon_steps=96, holidays=False)
    assert day_ahead.lags == (96, 192, 288, 672, 1344)
    assert "is_holiday" not in day_ahead.feature_names
    assert {"mean_96", "max_96", "mean_672", "max_672", "quarter_hour_of_day"} <= set(day_ahead.feature_names)
    short = FeaturePlan.for_horizon(step=quarter, horizon_steps=1, holidays=True)
    assert short.lags[:4] == (1, 2, 3, 4) and {"mean_4", "mean_16", "is_holiday"} <= set(short.feature_names)
    assert all(lag >= 3 for lag in FeaturePlan.for_horizon(step=quarter, horizon_steps=3, holidays=False).lags)
    far = FeaturePlan.for_horizon(step=pd.Timedelta(hours=1), horizon_steps=400, holidays=False)
    assert min(far.lags) >= 400 and len(far.lags) >= 3


def test_features_only_look_back_at_least_the_horizon() -> None:
    y = synthetic(20)
    plan = FeaturePlan.for_horizon(step=pd.Timedelta(hours=1), horizon_steps=24, holidays=True)
    changed = y.copy()
    changed.iloc[-24:] = 1e6  # the last horizon must not affect any feature of the last horizon
    a = make_features(y, plan, timezone="Europe/Berlin", country="DE")
    b = make_features(changed, plan, timezone="Europe/Berlin", country="DE")
    pd.testing.assert_frame_equal(a.iloc[-24:], b.iloc[-24:])


def test_calendar_features_use_site_local_time_and_holidays() -> None:
    index = pd.date_range("2024-12-24 22:45", periods=3, freq="15min", tz="UTC")  # 23:45..00:15 in Berlin
    plan = FeaturePlan.for_horizon(step=pd.Timedelta(minutes=15), horizon_steps=96, holidays=True)
    features = make_features(pd.Series(1.0, index=index), plan, timezone="Europe/Berlin", country="DE")
    assert features["quarter_hour_of_day"].tolist() == [95, 0, 1]
    assert features["is_holiday"].tolist() == [0, 1, 1]  # Christmas Day starts at local midnight
    assert features["day_of_week"].tolist() == [1, 2, 2]


def test_artifact_is_lightgbm_text_and_round_trips() -> None:
    y = synthetic(30)
    model = make_forecaster("lightgbm")
    model.fit(y, horizon_steps=24, timezone="Europe/Berlin", country="DE")
    files, params = model.to_artifact()
    assert list(files) == ["model.txt"] and files["model.txt"].startswith(b"tree\n")
    assert params["model"]["plan"]["lags"] == [24, 48, 72, 168, 336] and params["context"]["step_seconds"] == 3600
    assert params["feature_names"] == model.feature_names
    restored = LightGBMForecaster.from_artifact(files, params)
    pd.testing.assert_series_equal(restored.predict(y, steps=24), model.predict(y, steps=24))
    bad_plan = {**params["model"]["plan"], "lags": params["model"]["plan"]["lags"][:-1]}
    with pytest.raises(ValueError):
        LightGBMForecaster.from_artifact(files, {**params, "model": {**params["model"], "plan": bad_plan}})


def test_profile_features_summarise_the_same_local_time_on_earlier_days() -> None:
    index = pd.date_range("2024-01-01", periods=24 * 10, freq="1h", tz="UTC")  # Mon 1 Jan (a DE holiday) .. Wed 10 Jan
    y = pd.Series(np.arange(len(index), dtype=float), index=index)
    y.iloc[24 * 7 + 12] = 0.0  # an outage hour on Mon 8 Jan, 12:00 UTC
    plan = FeaturePlan.for_horizon(step=pd.Timedelta(hours=1), horizon_steps=24, holidays=True)
    assert plan.profile_lags == (24, 48, 72, 96, 120, 144, 168) and plan.hour_of_week
    features = make_features(y, plan, timezone="UTC", country="DE")
    row = features.loc[pd.Timestamp("2024-01-09 12:00", tz="UTC")]  # Tuesday, a working day
    past = [y[pd.Timestamp("2024-01-09 12:00", tz="UTC") - pd.Timedelta(days=k)] for k in range(1, 8)]
    assert row["profile_mean"] == pytest.approx(np.mean(past))
    assert row["profile_median"] == pytest.approx(np.median(past))
    # working days among 2..8 Jan: Tue 2 .. Fri 5 and Mon 8 (Sat 6, Sun 7 are the other type)
    working = [y[pd.Timestamp(f"2024-01-0{d} 12:00", tz="UTC")] for d in (2, 3, 4, 5, 8)]
    assert row["profile_daytype_mean"] == pytest.approx(np.mean(working))
    assert row["hour_of_week"] == 24 + 12
    holiday = features.loc[pd.Timestamp("2024-01-08 03:00", tz="UTC")]  # Monday; 1 Jan (holiday) is the other type
    assert holiday["profile_daytype_mean"] == pytest.approx(np.mean([y[pd.Timestamp(f"2024-01-0{d} 03:00", tz="UTC")] for d in (2, 3, 4, 5)]))
    assert np.isnan(features["profile_mean"].iloc[:24]).all()  # nothing a day back yet


def test_exogenous_context_reads_the_last_day_of_weather() -> None:
    index = pd.date_range("2024-01-01", periods=24 * 3, freq="1h", tz="UTC")
    y = pd.Series(1.0, index=index)
    temperature = pd.DataFrame({"temperature": np.arange(len(index), dtype=float)}, index=index)
    plan = FeaturePlan.for_horizon(step=pd.Timedelta(hours=1), horizon_steps=24, holidays=False, exog=("temperature",))
    assert plan.exog_window == 24
    features = make_features(y, plan, timezone="UTC", country=None, exog=temperature)
    last = features.iloc[-1]
    assert (last["exog_temperature"], last["exog_temperature_lag_24"], last["exog_temperature_diff_24"]) == (71, 47, 24)
    assert last["exog_temperature_mean_24"] == pytest.approx(np.mean(np.arange(48, 72)))
    assert "exog_temperature_lag_24" not in FeaturePlan.for_horizon(step=pd.Timedelta(hours=1), horizon_steps=24, holidays=False).feature_names


def test_a_model_saved_before_the_profile_features_still_loads_and_predicts() -> None:
    y = synthetic(30)
    current = FeaturePlan.for_horizon(step=pd.Timedelta(hours=1), horizon_steps=24, holidays=True)
    old_plan = {k: v for k, v in current.to_dict().items() if k not in ("profile_lags", "hour_of_week", "exog_window")}
    model = make_forecaster("lightgbm")
    model._plan = FeaturePlan.from_dict(old_plan)  # the plan every model had before these features
    model.fit(y, horizon_steps=24, timezone="Europe/Berlin", country="DE")
    assert "profile_mean" not in model.feature_names and "hour_of_week" not in model.feature_names
    files, params = model.to_artifact()
    params["model"]["plan"] = old_plan  # a manifest written by the earlier release
    params["calibration"].pop("hour_scales", None)
    restored = LightGBMForecaster.from_artifact(files, params)
    pd.testing.assert_series_equal(restored.predict(y, steps=24), model.predict(y, steps=24))
    assert restored.forecast(y, steps=24, quantiles=(0.1, 0.9)).quantiles.notna().all().all()
    with pytest.raises(ValueError, match="features do not match"):  # the new plan against the old booster
        LightGBMForecaster.from_artifact(files, {**params, "model": {**params["model"], "plan": current.to_dict()}})
