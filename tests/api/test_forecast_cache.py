"""The forecast cache (FORECAST_CACHE_SIZE) never serves a forecast for data or a model it was not computed from.

Each check compares the API's answer with the same forecast computed without any cache, and with
the answer before the change. Writes go straight to the database or through a second app on the
same database, as an ingest worker or another API process would make them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from digitaltwin.api.app import create_app
from digitaltwin.api.routers.forecast import forecast_limiter
from digitaltwin.config import Settings
from digitaltwin.domain.readings import Reading
from digitaltwin.security.roles import Role
from digitaltwin.services.forecasting import ForecastService
from digitaltwin.storage.repository import Repository
from tests.api.conftest import cache_lookups, headers_for, train
from tests.api.test_forecast_api import load_profile, register, store_hourly

URL = "/api/v1/assets/meter-c/forecast"


@pytest.fixture
def meter(client: TestClient, repo: Repository) -> pd.DatetimeIndex:
    register(client, "meter-c")
    return store_hourly(repo, "meter-c", load_profile(35, seed=3))


def lookups(client: TestClient) -> dict[str, float]:
    return cache_lookups(client, "forecast_cache_lookups_total")


def served(client: TestClient, **params: str) -> dict:
    response = client.get(URL, params={"horizon": "PT24H", **params})
    assert response.status_code == 200, response.text
    return response.json()


def uncached(client: TestClient, algorithm: str, quantiles: tuple[float, ...] = ()) -> list[dict]:
    """The same forecast from a service without a cache, on the app's database and loaded models."""
    state = client.app.state.dt  # type: ignore[attr-defined]
    service = ForecastService(state.repo, state.forecasts.registry, max_hold=state.settings.power_max_hold, server=state.forecasts.server)
    assert service.cache is None
    result = service.forecast("meter-c", algorithm, quantiles=quantiles)
    return [{"ts": ts.isoformat().replace("+00:00", "Z"), "value": float(v)} for ts, v in result.values.items()]


def points(body: dict) -> list[dict]:
    return [{"ts": p["ts"], "value": p["value"]} for p in body["points"]]


def trained(client: TestClient, algorithm: str) -> str:
    return train(client, "meter-c", algorithm=algorithm)["model"]["model_id"]


@pytest.fixture
def other_process(settings: Settings, client: TestClient) -> Iterator[TestClient]:
    """A second app on the same database and MODELS_DIR: another API worker with its own cache."""
    with TestClient(create_app(settings)) as second:
        second.headers.update(headers_for(second, Role.ADMIN))
        yield second


def test_a_repeated_forecast_is_a_hit_with_the_same_answer(client: TestClient, meter: pd.DatetimeIndex) -> None:
    trained(client, "lightgbm")
    first = served(client, algorithm="lightgbm", quantiles="0.1,0.9")
    before = lookups(client)
    again = served(client, algorithm="lightgbm", quantiles="0.1,0.9")
    assert lookups(client) == {"hit": before["hit"] + 1, "miss": before["miss"]}
    assert {k: v for k, v in again.items() if k != "issued_at"} == {k: v for k, v in first.items() if k != "issued_at"}
    assert points(again) == uncached(client, "lightgbm", (0.1, 0.9))
    other = served(client, algorithm="lightgbm")  # other quantiles: another entry
    assert lookups(client)["miss"] == before["miss"] + 1 and other["points"][0]["quantiles"] is None


def test_a_kept_forecast_does_not_wait_for_a_computation(client: TestClient, meter: pd.DatetimeIndex) -> None:
    """Only computations take the process's forecast limit: with every slot held (a long
    forecast computing), a kept forecast is still answered, and a new one waits."""
    first = served(client, algorithm="seasonal_naive_daily")
    limiter = forecast_limiter(client.app.state.dt)  # type: ignore[attr-defined]
    holder = object()
    client.portal.call(limiter.acquire_on_behalf_of, holder)
    with ThreadPoolExecutor(2) as pool:
        try:
            kept = pool.submit(served, client, algorithm="seasonal_naive_daily")
            assert kept.result(timeout=60)["points"] == first["points"]
            waiting = pool.submit(served, client, algorithm="seasonal_naive_weekly")
            time.sleep(1.0)
            assert not waiting.done()
        finally:
            client.portal.call(limiter.release_on_behalf_of, holder)
        assert waiting.result(timeout=60)["algorithm"] == "seasonal_naive_weekly"


def test_on_postgresql_a_kept_body_is_found_without_reading_the_history(
    client: TestClient, repo: Repository, meter: pd.DatetimeIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """services/forecast_answers.py: the second request is answered from the fingerprint alone (the
    forecast service is not asked), with a fresh ``issued_at``; a new reading makes it miss."""
    state = client.app.state.dt  # type: ignore[attr-defined]
    if state.forecast_bodies is None:
        pytest.skip("PostgreSQL only")
    first = served(client, algorithm="seasonal_naive_daily", quantiles="0.1,0.9")
    asked = []
    monkeypatch.setattr(state.forecasts, "prepare", lambda *a, **k: asked.append(a) or pytest.fail("history read"))
    again = served(client, algorithm="seasonal_naive_daily", quantiles="0.1,0.9")
    assert not asked and again["points"] == first["points"] and again["issued_at"] >= first["issued_at"]
    assert again.keys() == first.keys()
    monkeypatch.undo()
    repo.write_readings([Reading("meter-c", "energy", meter[-1] + timedelta(hours=1), 5.0)])
    fresh = served(client, algorithm="seasonal_naive_daily", quantiles="0.1,0.9")
    assert fresh["points"][0]["ts"] != first["points"][0]["ts"]


def test_a_new_reading_gives_a_fresh_forecast(client: TestClient, repo: Repository, meter: pd.DatetimeIndex) -> None:
    trained(client, "lightgbm")
    before = served(client, algorithm="lightgbm")
    served(client, algorithm="lightgbm")
    hits = lookups(client)["hit"]
    last = meter[-1].to_pydatetime()
    repo.write_readings([Reading("meter-c", "energy", last + timedelta(hours=1), 55.0)], interval_seconds=3600)
    after = served(client, algorithm="lightgbm")
    assert lookups(client)["hit"] == hits
    assert after["points"][0]["ts"] == before["points"][1]["ts"]  # the forecast starts one hour later
    assert points(after) == uncached(client, "lightgbm")


def test_a_corrected_reading_gives_a_fresh_forecast(client: TestClient, meter: pd.DatetimeIndex) -> None:
    """The documented correction: delete the range, send the corrected readings. Count and extent stay the same."""
    before = served(client, algorithm="seasonal_naive_daily")
    corrected = meter[-24]  # the value the daily seasonal naive repeats for the first step
    start, end = corrected.isoformat(), (corrected + pd.Timedelta(hours=1)).isoformat()
    deleted = client.delete("/api/v1/assets/meter-c/readings", params={"start": start, "end": end})
    assert deleted.status_code == 200 and deleted.json()["deleted"] == 1
    item = {"asset_id": "meter-c", "ts": start, "quantity": "energy", "value": 99.5, "unit": "kWh", "interval": "PT1H"}
    assert client.post("/api/v1/readings", json={"readings": [item]}).status_code == 200
    after = served(client, algorithm="seasonal_naive_daily")
    assert after["points"][0]["ts"] == before["points"][0]["ts"]
    assert after["points"][0]["value"] == 99.5 != before["points"][0]["value"]
    assert points(after) == uncached(client, "seasonal_naive_daily")


def test_deleted_readings_give_a_fresh_forecast(client: TestClient, meter: pd.DatetimeIndex, other_process: TestClient) -> None:
    trained(client, "lightgbm")
    before = served(client, algorithm="lightgbm")
    window = {"start": meter[-30].isoformat(), "end": meter[-27].isoformat()}  # inside the model's history, not its end
    deleted = other_process.delete("/api/v1/assets/meter-c/readings", params=window)
    assert deleted.status_code == 200 and deleted.json()["deleted"] == 3
    after = served(client, algorithm="lightgbm")
    assert [p["ts"] for p in after["points"]] == [p["ts"] for p in before["points"]]
    assert points(after) != points(before)
    assert points(after) == uncached(client, "lightgbm")


def test_activating_another_model_gives_a_fresh_forecast(client: TestClient, meter: pd.DatetimeIndex, other_process: TestClient) -> None:
    champion = trained(client, "lightgbm")
    challenger = trained(client, "persistence")  # stored, not promoted: it does not beat the champion
    before = served(client, algorithm="best")
    served(client, algorithm="best")
    assert before["model_id"] == champion
    # another process activates the challenger; this one reloads as its MODELS_DIR watcher does on the change
    assert other_process.post(f"/api/v1/models/{challenger}/activate").status_code == 200
    client.app.state.dt.forecasts.server.reload()  # type: ignore[attr-defined]
    after = served(client, algorithm="best")
    assert after["model_id"] == challenger and after["algorithm"] == "persistence"
    assert points(after) != points(before)
    assert points(after) == uncached(client, "best")
    # and back: the first model's entry is still right for it
    assert other_process.post(f"/api/v1/models/{champion}/activate").status_code == 200
    client.app.state.dt.forecasts.server.reload()  # type: ignore[attr-defined]
    again = served(client, algorithm="best")
    assert again["model_id"] == champion and points(again) == points(before)


def test_activating_an_older_version_of_the_algorithm_gives_a_fresh_forecast(client: TestClient, repo: Repository) -> None:
    """Same data, same algorithm, another model: only the model id tells the forecasts apart."""
    register(client, "meter-c")
    profile = load_profile(36, seed=5)
    store_hourly(repo, "meter-c", profile[: 24 * 35])
    older = trained(client, "lightgbm")
    store_hourly(repo, "meter-c", profile[24 * 35 :], start=str(pd.Timestamp("2024-03-01") + pd.Timedelta(days=35)))
    newer = trained(client, "lightgbm")  # retrained on a day more: the new champion
    before = served(client, algorithm="lightgbm")
    served(client, algorithm="lightgbm")
    assert before["model_id"] == newer
    assert client.post(f"/api/v1/models/{older}/activate").status_code == 200
    after = served(client, algorithm="lightgbm")
    assert after["model_id"] == older and [p["ts"] for p in after["points"]] == [p["ts"] for p in before["points"]]
    assert points(after) != points(before)
    assert points(after) == uncached(client, "lightgbm")


def test_cache_size_zero_computes_every_forecast(settings: Settings, repo: Repository) -> None:
    with TestClient(create_app(settings.model_copy(update={"forecast_cache_size": 0}))) as client:
        client.headers.update(headers_for(client, Role.ADMIN))
        assert client.app.state.dt.forecasts.cache is None  # type: ignore[attr-defined]
        register(client, "meter-c")
        store_hourly(repo, "meter-c", load_profile(10))
        assert served(client, algorithm="seasonal_naive_daily") and served(client, algorithm="seasonal_naive_daily")
        assert "forecast_cache_lookups_total{" not in client.get("/metrics").text
