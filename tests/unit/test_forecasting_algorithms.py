"""Every algorithm behind the one interface: fit, forecast with quantiles, native artifacts, aliases."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from digitaltwin.forecasting import (
    ALGORITHMS,
    MissingExogenousError,
    NotCalibratedError,
    OptionalDependencyError,
    UnknownAlgorithmError,
    backtest,
    canonical_name,
    make_forecaster,
)
from digitaltwin.forecasting.ensemble import WeightedEnsembleForecaster
from digitaltwin.forecasting.sklearn_forecasters import RidgeForecaster, load_skops
from digitaltwin.registry import ModelRegistry

HAS_TORCH = importlib.util.find_spec("torch") is not None
NATIVE = {
    "persistence": {"model.json"},
    "seasonal_naive_daily": {"model.json"},
    "seasonal_naive_weekly": {"model.json"},
    "ridge": {"model.skops"},
    "random_forest": {"model.skops"},
    "xgboost": {"model.ubj"},
    "lightgbm": {"model.txt"},
    "lstm": {"model.safetensors", "model.json"},
    "gru": {"model.safetensors", "model.json"},
    "ensemble_mean": {"m0-model.txt", "m1-model.ubj", "m2-model.skops"},
    "ensemble_median": {"m0-model.txt", "m1-model.ubj", "m2-model.skops"},
    "ensemble_weighted": {"m0-model.txt", "m1-model.ubj", "m2-model.skops"},
}


def synthetic(days: int = 42, seed: int = 0) -> tuple[pd.Series, pd.DataFrame]:
    """Hourly kWh: a daily profile, a weekend dip, a temperature effect and noise; plus the temperature."""
    index = pd.date_range("2024-01-01", periods=24 * days, freq="1h", tz="UTC")
    local = index.tz_convert("Europe/Berlin")
    rng = np.random.default_rng(seed)
    temperature = 8 + 6 * np.sin(2 * np.pi * (local.hour - 9) / 24) + rng.normal(0, 2, len(index)).cumsum() * 0.05
    load = 20 + 8 * np.sin(2 * np.pi * local.hour / 24) - 6 * (local.day_of_week >= 5) + 0.8 * (15 - temperature)
    y = pd.Series(load + rng.normal(0, 0.5, len(index)), index=index, name="site_kwh")
    return y, pd.DataFrame({"temperature": temperature}, index=index)


def available() -> list[str]:
    return sorted(ALGORITHMS)


@pytest.mark.parametrize("algorithm", available())
def test_fit_forecast_quantiles_and_registry_round_trip(algorithm: str, tmp_path: Path) -> None:
    y, exog = synthetic()
    train, actual = y.iloc[:-24], y.iloc[-24:]
    model = make_forecaster(algorithm)
    model.fit(train, horizon_steps=24, timezone="Europe/Berlin", country="DE", exog=exog)
    result = model.forecast(train, steps=24, quantiles=(0.9, 0.1, 0.5), exog=exog)
    values = result.values.to_numpy()
    assert result.flatliner is False and len(values) == 24 and np.isfinite(values).all()
    pd.testing.assert_index_equal(result.values.index, actual.index, check_names=False)
    assert list(result.quantiles.columns) == [0.1, 0.5, 0.9]
    q = result.quantiles.to_numpy()
    assert np.isfinite(q).all() and (np.diff(q, axis=1) >= 0).all()
    if algorithm not in {"persistence"}:
        assert np.mean(np.abs(values - actual.to_numpy())) < 3.0, algorithm

    registry = ModelRegistry(tmp_path)
    manifest = registry.save(model, asset_id="site-1", training_start=train.index[0], training_end=train.index[-1], metrics=None)
    assert set(manifest.files) == NATIVE[algorithm]
    directory = tmp_path / "site-1" / model.name / manifest.version
    for name in manifest.files:
        assert not (directory / name).read_bytes().startswith(b"\x80"), "pickle protocol header"
    loaded, _ = registry.load(manifest.model_id)
    again = loaded.forecast(train, steps=24, quantiles=(0.1, 0.5, 0.9), exog=exog)
    np.testing.assert_allclose(again.values.to_numpy(), values, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(again.quantiles.to_numpy(), q, rtol=1e-6, atol=1e-6)


def test_aliases_of_the_replaced_system_and_unknown_names() -> None:
    assert canonical_name("rf") == "random_forest"
    assert canonical_name("XGBoost") == "xgboost"
    assert make_forecaster("rf").name == "random_forest"
    for name in ("lstm", "gru"):
        if HAS_TORCH:
            assert make_forecaster(name).name == name
        else:
            with pytest.raises(OptionalDependencyError, match="torch"):
                make_forecaster(name)
    with pytest.raises(UnknownAlgorithmError) as info:
        make_forecaster("prophet")
    assert info.value.algorithm == "prophet" and {"lightgbm", "lstm", "gru", "xgboost"} <= set(info.value.known)


def test_exogenous_temperature_is_a_feature_and_required_when_predicting() -> None:
    y, exog = synthetic()
    model = make_forecaster("lightgbm")
    model.fit(y.iloc[:-24], horizon_steps=24, timezone="Europe/Berlin", exog=exog)
    assert "exog_temperature" in model.feature_names and model.context.exog == ("temperature",)
    with pytest.raises(MissingExogenousError) as info:
        model.predict(y.iloc[:-24], steps=24)
    assert info.value.expected == ["temperature"]
    plain = make_forecaster("lightgbm")
    plain.fit(y.iloc[:-24], horizon_steps=24, timezone="Europe/Berlin")
    with_temp = np.abs(model.predict(y.iloc[:-24], steps=24, exog=exog).to_numpy() - y.iloc[-24:].to_numpy()).mean()
    without = np.abs(plain.predict(y.iloc[:-24], steps=24).to_numpy() - y.iloc[-24:].to_numpy()).mean()
    assert with_temp < without


def test_skops_loading_refuses_types_outside_the_trusted_list() -> None:
    y, _ = synthetic()
    model = make_forecaster("ridge")
    model.fit(y, horizon_steps=24, timezone="Europe/Berlin")
    files, _ = model.to_artifact()
    assert set(sio.get_untrusted_types(data=files["model.skops"])) <= set(RidgeForecaster.trusted_types)
    forest = make_forecaster("rf")
    forest.fit(y, horizon_steps=24, timezone="Europe/Berlin", calibrate=False)
    forest_files, _ = forest.to_artifact()
    with pytest.raises(ValueError, match="untrusted types: sklearn.tree._tree.Tree"):
        load_skops(forest_files["model.skops"], RidgeForecaster.trusted_types)


def test_weighted_ensemble_weights_follow_holdout_skill() -> None:
    y, _ = synthetic()
    model = WeightedEnsembleForecaster(members=("lightgbm", "xgboost", "persistence"))
    model.fit(y, horizon_steps=24, timezone="Europe/Berlin")
    weights = dict(zip([m.name for m in model.members], model.weights))
    assert sum(weights.values()) == pytest.approx(1.0)
    # a flat line misses the daily profile: its holdout MAE is several times the boosted trees'
    assert weights["persistence"] < 0.5 * min(weights["lightgbm"], weights["xgboost"])
    mean = make_forecaster("ensemble_mean")
    mean.fit(y, horizon_steps=24, timezone="Europe/Berlin", calibrate=False)
    assert list(mean.weights) == pytest.approx([1 / 3] * 3)


def test_without_calibration_quantiles_are_refused_and_forecasts_are_non_negative() -> None:
    y, _ = synthetic(days=3)
    model = make_forecaster("seasonal_naive_daily")
    model.fit(y, horizon_steps=24, timezone="Europe/Berlin")
    assert model.calibration is None
    with pytest.raises(NotCalibratedError):
        model.forecast(y, steps=24, quantiles=(0.1,))
    spiky = y.copy()
    spiky.iloc[:] = np.where(np.arange(len(y)) % 24 < 12, 0.0, 10.0)
    ridge = make_forecaster("ridge")
    ridge.fit(synthetic()[0].clip(lower=0), horizon_steps=24, timezone="Europe/Berlin", calibrate=False)
    assert ridge.context.nonnegative


def test_interval_coverage_and_probabilistic_metrics_in_a_backtest() -> None:
    y, exog = synthetic(days=70, seed=3)
    origins = list(y.index[-24 * 14 :: 24])
    result = backtest(
        y, algorithms=["lightgbm"], origins=origins, horizon_steps=24, timezone="Europe/Berlin", retrain_every=14, exog=exog
    )
    row = result.metrics.loc["lightgbm"]
    assert 0.65 <= row["coverage_80"] <= 0.95
    assert row["pinball"] > 0 and row["mase"] < 1 and np.isfinite(row["mape"]) and row["peak_error"] >= 0
    assert result.forecasts[["q0.1", "q0.5", "q0.9"]].notna().all().all()
