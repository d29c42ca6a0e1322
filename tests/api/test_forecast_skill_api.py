"""Forecasts stored as issued (scheduled model forecasts and external ones), their skill against actuals,
and forecast drift raising an alarm that retrains through the champion rule; SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from digitaltwin.api.app import create_app
from digitaltwin.config import Settings
from digitaltwin.domain.readings import Reading
from digitaltwin.security.roles import Role
from digitaltwin.services.monitoring import Monitoring
from digitaltwin.storage.repository import Repository
from tests.api.conftest import ClientAs, headers_for, train

SITE = {"id": "site-fs", "name": "site-fs", "timezone": "Europe/Berlin", "country": "DE"}
START = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
def client(settings: Settings, repo: Repository) -> Iterator[TestClient]:
    """(Overrides the suite's ``client``.) Issue time 06:00 local, drift decided on 12 points, timers off."""
    tuned = settings.model_copy(update={"forecast_issue_local_time": time(6, 0), "drift_min_points": 12, "stale_check_seconds": 0})
    with TestClient(create_app(tuned)) as test_client:
        test_client.headers.update(headers_for(test_client, Role.ADMIN, username="admin"))
        yield test_client


def monitoring_of(client: TestClient) -> Monitoring:
    return client.app.state.dt.monitoring  # type: ignore[attr-defined]


def register(client: TestClient, asset_id: str) -> None:
    if client.get(f"/api/v1/sites/{SITE['id']}").status_code == 404:
        assert client.post("/api/v1/sites", json=SITE).status_code == 201
    assert client.post("/api/v1/assets", json={"id": asset_id, "site_id": SITE["id"], "name": asset_id, "kind": "meter"}).status_code == 201


def store_hourly(repo: Repository, asset_id: str, values: np.ndarray, start: datetime = START) -> pd.DatetimeIndex:
    index = pd.date_range(start, periods=len(values), freq="1h", tz="UTC")
    repo.write_readings([Reading(asset_id, "energy", ts.to_pydatetime(), float(v)) for ts, v in zip(index, values, strict=True)],
                        interval_seconds=3600)
    return index


def profile(hours: int) -> np.ndarray:
    index = pd.date_range(START, periods=hours, freq="1h", tz="UTC").tz_convert("Europe/Berlin")
    rng = np.random.default_rng(1)
    return 30 + 12 * np.sin(2 * np.pi * index.hour / 24) + rng.normal(0, 1, len(index))


def test_external_forecast_is_stored_validated_and_scored(client: TestClient, repo: Repository, operator_client: ClientAs,
                                                          viewer_client: ClientAs) -> None:
    register(client, "m-ext")
    index = store_hourly(repo, "m-ext", np.array([10.0, 10.0, 20.0, 20.0]))
    points = [
        {"ts": ts.isoformat(), "value": v, "quantiles": {"0.1": v - 1.5, "0.9": v + 1.5}}
        for ts, v in zip(index, [12.0, 8.0, 23.0, 21.0], strict=True)
    ]
    body = {"source": "vendor-pv", "issued_at": "2024-02-29T18:00:00Z", "points": points}
    assert viewer_client.post("/api/v1/assets/m-ext/forecasts", json=body).status_code == 403
    created = operator_client.post("/api/v1/assets/m-ext/forecasts", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["source"] == "external:vendor-pv" and created.json()["points"] == 4
    listed = client.get("/api/v1/assets/m-ext/forecasts").json()
    assert [f["source"] for f in listed] == ["external:vendor-pv"]

    skill = client.get("/api/v1/assets/m-ext/forecast-skill", params={"end": "2024-03-02T00:00:00Z"})
    assert skill.status_code == 200, skill.text
    rows = {(r["window"], r["lead"]): r for r in skill.json()["rows"]}
    row = rows[("7d", "all")]
    assert row["source"] == "external:vendor-pv" and row["n"] == 4
    assert row["mae"] == pytest.approx(2.0) and row["bias"] == pytest.approx(1.0)
    assert row["cv_rmse"] == pytest.approx(np.sqrt((4 + 4 + 9 + 1) / 4) / 15) and row["coverage"] == pytest.approx(0.25)  # only 20 in [19.5, 22.5]
    assert row["interval"] == [0.1, 0.9] and rows[("7d", "6-12h")]["n"] == 4  # 6 to 9 h ahead

    for bad, field in [
        ({**body, "points": []}, "points"),
        ({**body, "issued_at": "2024-02-29T18:00:00"}, "issued_at"),
        ({**body, "source": "has space"}, "source"),
        ({**body, "points": [{**points[0], "value": "NaN"}]}, "points.0.value"),
        ({**body, "points": [{**points[0], "quantiles": {"1.5": 3}}]}, "points.0.quantiles"),
        ({**body, "points": [{**points[0], "quantiles": {"0.1": 9, "0.9": 3}}]}, "points.0.quantiles"),
        ({**body, "points": [points[0], points[0]]}, "points"),
        ({**body, "step_seconds": 5}, "step_seconds"),
    ]:
        response = operator_client.post("/api/v1/assets/m-ext/forecasts", json=bad)
        assert response.status_code == 422 and response.json()["field"] == field, (field, response.text)
    assert client.post("/api/v1/assets/nope/forecasts", json=body).json()["field"] == "asset_id"
    assert client.get("/api/v1/assets/nope/forecast-skill").status_code == 404


def test_scheduled_issue_skill_and_drift_retraining(client: TestClient, repo: Repository) -> None:
    register(client, "m-drift")
    history = profile(24 * 28)
    index = store_hourly(repo, "m-drift", history)
    trained = train(client, "m-drift", algorithm="lightgbm")  # a job: queued, run, its result
    model_id = trained["model"]["model_id"]
    backtest_mae = trained["model"]["metrics"]["mae"]
    monitor = monitoring_of(client).forecast_monitor
    assert monitor is not None

    # the schedule: nothing before 06:00 local (05:00 UTC, CET), one issue after it, not two
    last = index[-1].to_pydatetime()
    before = datetime(2024, 3, 29, 4, 30, tzinfo=UTC)  # 05:30 in Berlin (CET)
    assert monitor.due(before) == []
    at = datetime(2024, 3, 29, 5, 10, tzinfo=UTC)  # 06:10 local
    assert monitor.due(at) == ["m-drift"]
    monitor.run_once(at)
    assert monitor.due(at + timedelta(hours=1)) == []
    [issued] = client.get("/api/v1/assets/m-drift/forecasts").json()
    assert issued["source"] == f"model:{model_id}" and issued["points"] == 24
    assert last < at  # issued after the last reading, as the schedule would

    # actuals arrive three times higher than the profile: 7-day MAE far above the backtest MAE
    future = pd.date_range(index[-1] + pd.Timedelta(hours=1), periods=24, freq="1h", tz="UTC")
    store_hourly(repo, "m-drift", 3 * profile(24 * 29)[-24:], start=future[0].to_pydatetime())
    end = future[-1].to_pydatetime() + timedelta(hours=1)
    rows = {(r["window"], r["lead"]): r for r in client.get("/api/v1/assets/m-drift/forecast-skill",
                                                             params={"end": end.isoformat()}).json()["rows"]}
    assert rows[("7d", "all")]["n"] == 24 and rows[("7d", "all")]["mae"] > 1.5 * backtest_mae
    assert rows[("7d", "all")]["bias"] < 0  # under-forecast

    models_before = len(client.get("/api/v1/models", params={"asset_id": "m-drift"}).json()["models"])
    monitor.run_once(end)
    [alarm] = client.get("/api/v1/alarms", params={"type": "forecast_drift"}).json()
    assert alarm["state"] == "active" and alarm["evidence"]["source"] == f"model:{model_id}"
    assert alarm["evidence"]["backtest_mae"] == pytest.approx(backtest_mae) and alarm["score"] > 1.5
    for thread in monitor.retrainings:
        thread.join(120)
    models = client.get("/api/v1/models", params={"asset_id": "m-drift"}).json()["models"]
    assert len(models) == models_before + 1  # retrained once, through ForecastService.train (the champion rule)
    monitor.run_once(end)  # still drifting: the same alarm, no second retraining
    assert len(client.get("/api/v1/alarms", params={"type": "forecast_drift"}).json()) == 1
    assert len(monitor.retrainings) == 1
