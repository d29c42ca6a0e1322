"""Model registry: save/load round trip, integrity checks, listing."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from digitaltwin.forecasting import make_forecaster
from digitaltwin.forecasting.base import Forecaster
from digitaltwin.registry import ModelIntegrityError, ModelManifest, ModelNotFoundError, ModelRegistry


def series() -> pd.Series:
    index = pd.date_range("2024-01-01", periods=24 * 30, freq="1h", tz="UTC")
    rng = np.random.default_rng(1)
    values = 15 + 5 * np.sin(2 * np.pi * index.hour / 24) + rng.normal(0, 0.3, len(index))
    return pd.Series(values, index=index, name="kwh")


def fitted(name: str) -> Forecaster:
    model = make_forecaster(name)
    model.fit(series(), horizon_steps=24, timezone="Europe/Berlin", country="DE")
    return model


def save(registry: ModelRegistry, model: Forecaster, asset_id: str = "plant-1") -> ModelManifest:
    y = series()
    return registry.save(
        model,
        asset_id=asset_id,
        training_start=y.index[0],
        training_end=y.index[-1],
        metrics={"mae": 0.4, "nmbe": float("nan")},
    )


@pytest.mark.parametrize("algorithm", ["lightgbm", "seasonal_naive_weekly"])
def test_round_trip_gives_identical_predictions(tmp_path: Path, algorithm: str) -> None:
    registry = ModelRegistry(tmp_path)
    model = fitted(algorithm)
    manifest = save(registry, model)
    loaded, read_back = registry.load(manifest.model_id)
    assert read_back.to_dict() == manifest.to_dict()
    assert read_back.metrics["mae"] == 0.4 and math.isnan(read_back.metrics["nmbe"])  # null on disk
    pd.testing.assert_series_equal(loaded.predict(series(), steps=24), model.predict(series(), steps=24))


def test_layout_and_manifest_fields(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    manifest = save(registry, fitted("lightgbm"))
    directory = tmp_path / "plant-1" / "lightgbm" / manifest.version
    assert sorted(p.name for p in directory.iterdir()) == ["manifest.json", "model.txt"]
    assert manifest.model_id == f"plant-1--lightgbm--{manifest.version}"
    stored = json.loads((directory / "manifest.json").read_text())
    assert stored["training_window"] == {"start": "2024-01-01T00:00:00Z", "end": "2024-01-30T23:00:00Z"}
    assert stored["files"] == {"model.txt": hashlib.sha256((directory / "model.txt").read_bytes()).hexdigest()}
    assert stored["schema"] == 2
    assert stored["metrics"] == {"mae": 0.4, "nmbe": None}
    assert stored["horizon_steps"] == 24 and "lag_24" in stored["features"]
    assert set(stored["library_versions"]) >= {"python", "lightgbm", "pandas", "numpy", "digitaltwin"}
    assert ModelManifest.from_dict(stored).to_dict() == stored == manifest.to_dict()


def test_tampered_artifact_raises_integrity_error(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    manifest = save(registry, fitted("lightgbm"))
    artifact = tmp_path / "plant-1" / "lightgbm" / manifest.version / "model.txt"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError) as info:
        registry.load(manifest.model_id)
    assert info.value.path == artifact
    assert info.value.expected == manifest.files["model.txt"]
    assert info.value.actual == hashlib.sha256(bytes(data)).hexdigest() != manifest.files["model.txt"]


def test_missing_models_raise_not_found(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    with pytest.raises(ModelNotFoundError):
        registry.load("plant-1--lightgbm--20240101T000000000000Z")
    with pytest.raises(ModelNotFoundError):
        registry.load("../../etc--lightgbm--x")
    assert registry.latest("plant-1", "lightgbm") is None and registry.list() == []


def test_latest_and_list(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    model = fitted("seasonal_naive_daily")
    first, second = save(registry, model), save(registry, model)
    other = save(registry, model, asset_id="plant-2")
    assert first.version < second.version
    latest = registry.latest("plant-1", "seasonal_naive_daily")
    assert latest is not None and latest.model_id == second.model_id
    assert [m.model_id for m in registry.list("plant-1")] == [first.model_id, second.model_id]
    assert [m.model_id for m in registry.list()] == [first.model_id, second.model_id, other.model_id]


def test_save_rejects_bad_input(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    model = fitted("seasonal_naive_daily")
    stamp = pd.Timestamp("2024-01-01", tz="UTC")
    with pytest.raises(ValueError, match="naive"):
        registry.save(model, asset_id="a", training_start=pd.Timestamp("2024-01-01"), training_end=stamp, metrics=None)
    for bad in ("../x", "a/b", "a--b", ""):
        with pytest.raises(ValueError):
            registry.save(model, asset_id=bad, training_start=stamp, training_end=stamp, metrics=None)
    assert registry.list() == []
