"""Newcomer findings on training, backtests and readiness, on both real databases.

* a shorter-horizon model never replaces the champion on its own (the day-ahead default keeps working);
* "retrained on newer data" only when the training window really ends later;
* backtests name ``algorithms`` for an empty list; trainings of a site with a bad stored country name it;
* ``/readyz`` is not ready for a failing champion only, and leaks no host or port;
* a training retried while one runs gets 409; activations are audited.
"""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from digitaltwin.storage.repository import Repository
from digitaltwin.storage.tables import sites
from tests.api.conftest import train, wait_job
from tests.api.test_forecast_api import load_profile, register, store_hourly


@pytest.fixture
def meter(client: TestClient, repo: Repository) -> str:
    register(client, "meter-c")
    store_hourly(repo, "meter-c", load_profile(35))
    return "meter-c"


def test_shorter_horizon_model_does_not_break_day_ahead_forecasts(client: TestClient, repo: Repository, meter: str) -> None:
    first = train(client, meter, algorithm="lightgbm")
    champion = first["model"]["model_id"]
    assert first["promoted"] is True

    short = train(client, meter, algorithm="lightgbm", horizon="PT1H")
    assert short["promoted"] is False and "shorter than champion" in short["reason"]
    assert client.get(f"/api/v1/models/{champion}").json()["active"] is True

    day_ahead = client.get(f"/api/v1/assets/{meter}/forecast", params={"horizon": "PT24H", "algorithm": "best"})
    assert day_ahead.status_code == 200, day_ahead.text
    assert day_ahead.json()["model_id"] == champion and len(day_ahead.json()["points"]) == 24
    predicted = client.post("/api/v1/predict", json={"machine_id": meter})
    assert predicted.status_code == 200, predicted.text

    same_data = train(client, meter, algorithm="lightgbm")
    assert same_data["promoted"] is False and "without newer data" in same_data["reason"]

    store_hourly(repo, meter, load_profile(36)[-24:], start="2024-04-05")  # one more day of readings
    newer = train(client, meter, algorithm="lightgbm")
    assert newer["promoted"] is True and "newer data" in newer["reason"]
    assert newer["model"]["training_window"]["end"] > first["model"]["training_window"]["end"]

    # an admin may still choose the short model explicitly (and it is audited)
    short_id = short["model"]["model_id"]
    assert client.post(f"/api/v1/models/{short_id}/activate").status_code == 200
    entries = client.get("/api/v1/audit", params={"event": "model_activated"}).json()
    assert entries[0]["subject"] == short_id and entries[0]["actor"] == "user:admin"
    assert entries[0]["detail"] == {"asset_id": meter, "previous": newer["model"]["model_id"]}


def test_backtest_without_algorithms_is_422_naming_algorithms(client: TestClient, meter: str) -> None:
    url = f"/api/v1/assets/{meter}/backtests"
    for algorithms in ([], ["prophet"]):
        response = client.post(url, json={"start": "2024-03-30", "end": "2024-04-01", "algorithms": algorithms})
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "algorithms"


def test_training_on_a_stored_unknown_country_names_the_country(client: TestClient, repo: Repository, meter: str) -> None:
    with repo.engine.begin() as conn:  # stored before countries were checked against `holidays`
        conn.execute(update(sites).where(sites.c.id == "site-f").values(country="XX"))
    response = client.post(f"/api/v1/assets/{meter}/train", json={"algorithm": "lightgbm"})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "country" and "'XX'" in response.json()["detail"] and "site-f" in response.json()["detail"]


def test_a_retry_while_the_training_runs_is_409(client: TestClient, meter: str) -> None:
    registry = client.app.state.dt.forecasts.registry
    with registry.training(meter):  # as if the first (timed out) request were still training
        retry = client.post(f"/api/v1/assets/{meter}/train", json={"algorithm": "seasonal_naive_daily"})
    assert retry.status_code == 409 and retry.json()["field"] == "asset_id"
    assert "already running" in retry.json()["detail"]
    assert client.get("/api/v1/jobs", params={"asset_id": meter}).json()["jobs"] == []  # nothing was queued
    done = wait_job(client, client.post(f"/api/v1/assets/{meter}/train", json={"algorithm": "seasonal_naive_daily"}))
    assert done["state"] == "succeeded", done


def _corrupt_copy(settings, model_id: str, version: str) -> str:  # noqa: ANN001
    """A copy of ``model_id`` as ``version`` whose artifact does not match its manifest; returns its id."""
    asset_id, algorithm, source_version = model_id.split("--")
    folder = settings.models_dir / asset_id / algorithm
    bad = f"{asset_id}--{algorithm}--{version}"
    manifest = json.loads((folder / source_version / "manifest.json").read_text())
    manifest.update(model_id=bad, version=version)
    (folder / version).mkdir()
    (folder / version / "manifest.json").write_text(json.dumps(manifest))
    for name in manifest["files"]:
        (folder / version / name).write_text('{"tampered": true}')
    return bad


def test_readyz_fails_for_a_failing_champion_only(client: TestClient, meter: str, settings) -> None:  # noqa: ANN001
    champion = train(client, meter, algorithm="seasonal_naive_weekly")["model"]["model_id"]
    other = train(client, meter, algorithm="seasonal_naive_daily", horizon="PT1H")
    assert other["promoted"] is False, other["reason"]  # shorter horizon: never promoted on its own
    bad = _corrupt_copy(settings, other["model"]["model_id"], "20990101T000000000000Z")  # never activated
    server = client.app.state.dt.forecasts.server
    server.reload()
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    models = ready.json()["checks"]["models"]
    assert models["ok"] is True and bad in models["detail"] and "ModelIntegrityError" in models["detail"]
    assert str(settings.models_dir) not in models["detail"]
    assert "model_load_failures_total 1.0" in client.get("/metrics").text
    assert client.get(f"/api/v1/assets/{meter}/forecast", params={"algorithm": "best"}).status_code == 200

    # the champion itself fails: not ready
    folder = settings.models_dir / meter / "seasonal_naive_weekly" / champion.rsplit("--", 1)[1]
    for artifact in folder.iterdir():
        if artifact.name != "manifest.json":
            artifact.write_text('{"tampered": true}')
    server.reload()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["failing"] == ["models"] and champion in ready.json()["checks"]["models"]["detail"]


def test_readyz_does_not_leak_the_database_address(settings, repo: Repository, caplog: pytest.LogCaptureFixture) -> None:  # noqa: ANN001
    from digitaltwin.api.app import create_app

    with TestClient(create_app(settings)) as client:
        client.app.state.dt.repo.ping = _refuse  # the database goes away after start-up
        with caplog.at_level(logging.ERROR, logger="digitaltwin.readiness"):
            response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["failing"] == ["database"]
    detail = response.json()["checks"]["database"]["detail"]
    assert "10.1.2.3" not in detail and "5432" not in detail and "see the service log" in detail
    assert any("10.1.2.3" in r.getMessage() for r in caplog.records)  # the detail goes to the log


def _refuse() -> None:
    raise ConnectionRefusedError('connection to server at "10.1.2.3", port 5432 failed: Connection refused')


def test_a_write_past_api_timeout_says_it_may_still_complete(settings, repo: Repository) -> None:  # noqa: ANN001
    import anyio

    from digitaltwin.api.app import create_app
    from digitaltwin.security.roles import Role
    from tests.api.conftest import headers_for

    app = create_app(settings.model_copy(update={"api_timeout": 0.5}))
    never = anyio.Event()

    @app.post("/api/v1/test-hangs")
    async def hangs() -> dict[str, str]:
        await never.wait()  # only the timeout ends this request
        return {"status": "unreachable"}

    with TestClient(app) as client:
        client.headers.update(headers_for(client, Role.OPERATOR))
        response = client.post("/api/v1/test-hangs")
    assert response.status_code == 504
    detail = response.json()["detail"]
    assert detail.startswith("request took longer than 0.5 s; the server may still complete it")
    assert "check the outcome before retrying" in detail
