"""Served models: champion, hot reload on MODELS_DIR changes, load failures kept visible while the previous model serves."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from digitaltwin.forecasting import make_forecaster
from digitaltwin.registry import ModelRegistry
from digitaltwin.registry.manifest import ModelManifest
from digitaltwin.registry.serving import ModelServer


def series() -> pd.Series:
    index = pd.date_range("2024-01-01", periods=24 * 21, freq="1h", tz="UTC")
    rng = np.random.default_rng(2)
    return pd.Series(10 + 4 * np.sin(2 * np.pi * index.hour / 24) + rng.normal(0, 0.2, len(index)), index=index, name="kwh")


def store(registry: ModelRegistry, algorithm: str, *, mae: float | None = None, asset_id: str = "a-1") -> ModelManifest:
    y = series()
    model = make_forecaster(algorithm)
    model.fit(y, horizon_steps=24, timezone="UTC", calibrate=False)
    return registry.save(model, asset_id=asset_id, training_start=y.index[0], training_end=y.index[-1],
                         metrics=None if mae is None else {"mae": mae})


def test_champion_is_the_active_model_else_the_lowest_holdout_mae(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    weekly = store(registry, "seasonal_naive_weekly", mae=2.0)
    daily = store(registry, "seasonal_naive_daily", mae=1.0)
    server = ModelServer(registry)
    server.reload()
    assert server.champion("a-1").manifest.model_id == daily.model_id  # no active.json yet
    registry.activate(weekly.model_id, reason="test")
    server.reload()
    assert server.champion("a-1").manifest.model_id == weekly.model_id
    assert server.champion_id("a-1") == weekly.model_id
    newer = store(registry, "seasonal_naive_weekly", mae=0.5)
    server.reload()
    assert server.get("a-1", "seasonal_naive_weekly").manifest.model_id == weekly.model_id  # the champion stays pinned
    registry.activate(newer.model_id, reason="test")
    server.reload()
    assert server.get("a-1", "seasonal_naive_weekly").manifest.model_id == newer.model_id
    assert server.champion("b-2") is None


def test_a_model_that_fails_to_load_is_reported_and_the_previous_keeps_serving(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    good = store(registry, "lightgbm")
    reported: list[tuple[str, str]] = []
    counts: list[tuple[int, int]] = []
    server = ModelServer(registry, on_failure=lambda i, r: reported.append((i, r)), on_reload=lambda a, b: counts.append((a, b)))
    server.reload()
    bad = store(registry, "lightgbm")
    artifact = tmp_path / "a-1" / "lightgbm" / bad.version / "model.txt"
    artifact.write_bytes(artifact.read_bytes().replace(b"tree", b"TREE", 1))
    server.reload()
    server.reload()  # the same broken files are reported once
    assert server.get("a-1", "lightgbm").manifest.model_id == good.model_id
    assert list(server.failures) == [bad.model_id] and "checksum" in server.failures[bad.model_id]
    assert [i for i, _ in reported] == [bad.model_id]
    assert counts[-1] == (1, 1)
    (tmp_path / "a-1" / "lightgbm" / "20990101T000000000000Z").mkdir()
    (tmp_path / "a-1" / "lightgbm" / "20990101T000000000000Z" / "manifest.json").write_text("{not json")
    server.reload()
    assert any("manifest" in reason for reason in server.failures.values())
    shutil.rmtree(tmp_path / "a-1" / "lightgbm" / bad.version)
    shutil.rmtree(tmp_path / "a-1" / "lightgbm" / "20990101T000000000000Z")
    server.reload()
    assert server.failures == {} and server.get("a-1", "lightgbm").manifest.model_id == good.model_id


def test_watcher_reloads_when_a_model_is_copied_into_models_dir(tmp_path: Path) -> None:
    elsewhere = ModelRegistry(tmp_path / "elsewhere")
    manifest = store(elsewhere, "seasonal_naive_daily")
    registry = ModelRegistry(tmp_path / "models")
    reloaded = threading.Event()
    server = ModelServer(registry, on_reload=lambda loaded, failed: reloaded.set() if loaded else None)
    server.reload()
    assert server.get("a-1", "seasonal_naive_daily") is None
    thread, stop = server.start_watching()
    try:
        shutil.copytree(tmp_path / "elsewhere" / "a-1", tmp_path / "models" / "a-1")
        for attempt in range(40):  # until the watcher reloads (touching a file again in case it armed after the copy)
            if reloaded.wait(timeout=0.5):
                break
            (tmp_path / "models" / "a-1" / "touched.txt").write_text(str(attempt))
        assert reloaded.is_set(), "the watcher did not reload"
    finally:
        stop.set()
        thread.join(timeout=5)
    assert server.get("a-1", "seasonal_naive_daily").manifest.model_id == manifest.model_id


@pytest.mark.parametrize("broken", ["bad json", "old schema"])
def test_unreadable_or_old_manifests_are_failures_not_crashes(tmp_path: Path, broken: str) -> None:
    registry = ModelRegistry(tmp_path)
    manifest = store(registry, "persistence")
    path = tmp_path / "a-1" / "persistence" / manifest.version / "manifest.json"
    path.write_text("{" if broken == "bad json" else path.read_text().replace('"schema": 2', '"schema": 1'))
    server = ModelServer(registry)
    server.reload()
    assert server.get("a-1", "persistence") is None and len(server.failures) == 1
