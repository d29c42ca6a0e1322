"""Fleet training in parallel processes (joblib) and scheduled retraining, on both real databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from digitaltwin.config import Settings
from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.domain.readings import Reading
from digitaltwin.registry.store import ModelRegistry
from digitaltwin.services.fleet import train_fleet
from digitaltwin.services.forecasting import ForecastService
from digitaltwin.services.retraining import RetrainScheduler
from digitaltwin.storage.repository import Repository


def seed(repo: Repository, asset_ids: list[str], days: int = 21) -> None:
    repo.create_site(Site("fleet", "fleet", "Europe/Berlin", "DE"))
    index = pd.date_range("2024-05-01", periods=24 * days, freq="1h", tz="UTC")
    for n, asset_id in enumerate(asset_ids):
        repo.create_asset(Asset(asset_id, "fleet", asset_id, AssetKind.METER))
        values = 10 * (n + 1) + 3 * np.sin(2 * np.pi * index.hour / 24)
        repo.write_readings([Reading(asset_id, "energy", t.to_pydatetime(), float(v)) for t, v in zip(index, values, strict=True)],
                            interval_seconds=3600)


def test_fleet_training_runs_assets_in_parallel_processes(settings: Settings, repo: Repository) -> None:
    seed(repo, ["m-1", "m-2", "m-3"])
    outcomes = train_fleet(settings, ["m-1", "m-2", "m-3", "missing"], algorithm="seasonal_naive_daily", n_jobs=2)
    assert [o.asset_id for o in outcomes] == ["m-1", "m-2", "m-3", "missing"]
    assert all(o.model_id and o.promoted for o in outcomes[:3])
    assert outcomes[3].model_id is None and "missing" in outcomes[3].reason
    registry = ModelRegistry(settings.models_dir)
    assert {m.asset_id for m in registry.list()} == {"m-1", "m-2", "m-3"}
    for asset_id in ("m-1", "m-2", "m-3"):
        assert registry.active(asset_id) is not None


def test_scheduler_retrains_champions_older_than_their_cadence(settings: Settings, repo: Repository) -> None:
    seed(repo, ["s-1", "s-2"])
    service = ForecastService(repo, ModelRegistry(settings.models_dir), max_hold=settings.power_max_hold)
    first = service.train("s-1", "seasonal_naive_weekly").manifest
    service.train("s-2", "seasonal_naive_daily")
    scheduler = RetrainScheduler(service, default_hours=24, per_asset_hours={"s-2": 0})
    now = datetime.now(UTC)
    assert scheduler.due(now) == []
    later = now + timedelta(hours=25)
    assert scheduler.due(later) == [("s-1", "seasonal_naive_weekly")]  # s-2 is not scheduled
    outcomes = scheduler.run_due(later)
    assert len(outcomes) == 1 and outcomes[0].error is None
    retrained = outcomes[0].result
    assert retrained.promoted and retrained.previous_champion == first.model_id
    assert service.server.champion("s-1").manifest.model_id == retrained.manifest.model_id
    assert RetrainScheduler(service, default_hours=0).enabled is False
