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
    stale = scheduler.run_due(later)  # no reading arrived since: the champion stays
    assert len(stale) == 1 and stale[0].error is None
    assert not stale[0].result.promoted and "without newer data" in stale[0].result.reason
    assert service.server.champion("s-1").manifest.model_id == first.model_id
    extra = pd.date_range("2024-05-22", periods=24, freq="1h", tz="UTC")  # one more day of readings
    repo.write_readings([Reading("s-1", "energy", t.to_pydatetime(), 10.0) for t in extra], interval_seconds=3600)
    outcomes = scheduler.run_due(later + timedelta(hours=25))
    assert len(outcomes) == 1 and outcomes[0].error is None
    retrained = outcomes[0].result
    assert retrained.promoted and retrained.previous_champion == first.model_id and "newer data" in retrained.reason
    assert retrained.manifest.horizon_steps == first.horizon_steps  # retrained at the champion's horizon
    assert service.server.champion("s-1").manifest.model_id == retrained.manifest.model_id
    assert RetrainScheduler(service, default_hours=0).enabled is False


def test_scheduler_retrains_at_the_champions_horizon(settings: Settings, repo: Repository) -> None:
    seed(repo, ["h-1"])
    service = ForecastService(repo, ModelRegistry(settings.models_dir), max_hold=settings.power_max_hold)
    first = service.train("h-1", "seasonal_naive_daily", horizon=timedelta(hours=48)).manifest
    assert first.horizon_steps == 48
    extra = pd.date_range("2024-05-22", periods=24, freq="1h", tz="UTC")
    repo.write_readings([Reading("h-1", "energy", t.to_pydatetime(), 10.0) for t in extra], interval_seconds=3600)
    outcomes = RetrainScheduler(service, default_hours=1).run_due(datetime.now(UTC) + timedelta(hours=2))
    retrained = outcomes[0].result
    assert retrained is not None and retrained.manifest.horizon_steps == 48 and retrained.promoted, outcomes
