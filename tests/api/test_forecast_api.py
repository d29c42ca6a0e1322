"""Forecast, model, training, backtest and legacy /predict routes on both backends, with real data in the database."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from digitaltwin.domain.readings import Reading
from digitaltwin.storage.repository import Repository
from tests.api.conftest import ClientAs, train, wait_job

SITE = {"id": "site-f", "name": "site-f", "timezone": "Europe/Berlin", "country": "DE"}


def register(client: TestClient, asset_id: str) -> None:
    if client.get(f"/api/v1/sites/{SITE['id']}").status_code == 404:
        assert client.post("/api/v1/sites", json=SITE).status_code == 201
    body = {"id": asset_id, "site_id": SITE["id"], "name": asset_id, "kind": "meter"}
    assert client.post("/api/v1/assets", json=body).status_code == 201


def store_hourly(repo: Repository, asset_id: str, values: np.ndarray, start: str = "2024-03-01") -> pd.DatetimeIndex:
    index = pd.date_range(start, periods=len(values), freq="1h", tz="UTC")
    readings = [Reading(asset_id, "energy", ts.to_pydatetime(), float(v)) for ts, v in zip(index, values, strict=True)]
    repo.write_readings(readings, interval_seconds=3600)
    return index


def load_profile(days: int, seed: int = 0) -> np.ndarray:
    index = pd.date_range("2024-03-01", periods=24 * days, freq="1h", tz="UTC").tz_convert("Europe/Berlin")
    rng = np.random.default_rng(seed)
    return 30 + 12 * np.sin(2 * np.pi * index.hour / 24) - 8 * (index.day_of_week >= 5) + rng.normal(0, 1, len(index))


@pytest.fixture
def meter(client: TestClient, repo: Repository) -> str:
    register(client, "meter-f")
    store_hourly(repo, "meter-f", load_profile(35))
    return "meter-f"


def test_train_forecast_quantiles_models_backtest_and_metrics(client: TestClient, meter: str) -> None:
    body = train(client, meter, algorithm="lightgbm")
    model_id = body["model"]["model_id"]
    assert body["promoted"] is True and body["reason"] == "first model of the asset" and body["model"]["active"]
    assert set(body["model"]["files"]) == {"model.txt"} and body["model"]["metrics"]["mae"] > 0

    response = client.get(f"/api/v1/assets/{meter}/forecast", params={"horizon": "PT24H", "algorithm": "best", "quantiles": "0.1,0.5,0.9"})
    assert response.status_code == 200, response.text
    forecast = response.json()
    assert forecast["algorithm"] == "lightgbm" and forecast["model_id"] == model_id and forecast["flatliner"] is False
    assert forecast["unit"] == "kWh" and forecast["interval_seconds"] == 3600 and len(forecast["points"]) == 24
    first = forecast["points"][0]
    assert first["ts"].startswith("2024-04-05T00:00:00") and set(first) == {"ts", "value", "quantiles"}
    for point in forecast["points"]:
        q = point["quantiles"]
        assert list(q) == ["0.1", "0.5", "0.9"] and q["0.1"] <= q["0.5"] <= q["0.9"]

    listing = client.get("/api/v1/models", params={"asset_id": meter}).json()
    assert [m["model_id"] for m in listing["models"]] == [model_id] and listing["load_failures"] == {}
    detail = client.get(f"/api/v1/models/{model_id}").json()
    assert detail["params"]["algorithm"] == "lightgbm" and len(detail["data_fingerprint"]) == 64
    assert "lag_24" in detail["features"] and detail["library_versions"]["lightgbm"]
    assert client.get("/api/v1/models/nope--lightgbm--20240101T000000000000Z").json()["field"] == "model_id"

    backtest = client.get(f"/api/v1/backtests/{body['backtest_id']}").json()
    assert backtest["purpose"] == "champion/challenger" and backtest["algorithms"] == ["lightgbm"]
    assert {"mae", "rmse", "cv_rmse", "nmbe", "mape", "mase", "pinball", "coverage_80", "peak_error", "n"} <= set(backtest["metrics"]["lightgbm"])
    png = client.get(backtest["plot_url"])
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")
    assert client.get(backtest["forecasts_url"]).text.startswith("origin,ts,algorithm,actual,predicted,q0.1,q0.5,q0.9")
    assert client.get("/api/v1/backtests/bt-20240101T000000Z-00000000").status_code == 404

    metrics = client.get("/metrics").text
    assert 'predictions_total{algorithm="lightgbm",status="ok"} 1.0' in metrics
    assert "models_loaded 1.0" in metrics


def test_champion_challenger_and_admin_activation(client: TestClient, meter: str, operator_client: ClientAs) -> None:
    first = train(client, meter, algorithm="lightgbm")
    challenger = train(client, meter, algorithm="persistence")
    assert challenger["promoted"] is False and "does not beat champion lightgbm" in challenger["reason"]
    assert challenger["previous_champion"] == first["model"]["model_id"]
    compared = client.get(f"/api/v1/backtests/{challenger['backtest_id']}").json()
    assert compared["algorithms"] == ["persistence", "lightgbm"]  # the same origins for both
    challenger_id = challenger["model"]["model_id"]
    denied = operator_client.post(f"/api/v1/models/{challenger_id}/activate")
    assert denied.status_code == 403
    activated = client.post(f"/api/v1/models/{challenger_id}/activate")
    assert activated.status_code == 200, activated.text
    assert activated.json()["model_id"] == challenger_id and activated.json()["reason"] == "activated by an admin"
    best = client.get(f"/api/v1/assets/{meter}/forecast", params={"algorithm": "best"}).json()
    assert best["algorithm"] == "persistence" and best["model_id"] == challenger_id
    default = client.get(f"/api/v1/assets/{meter}/forecast").json()  # no algorithm: the champion
    assert default["model_id"] == challenger_id
    assert client.post("/api/v1/models/meter-f--lightgbm--20200101T000000000000Z/activate").status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    assert paths["/api/v1/models/{model_id}/activate"]["post"]["x-required-role"] == "admin"


def test_legacy_predict_shape_and_aliases(client: TestClient, meter: str) -> None:
    assert train(client, meter, algorithm="rf")["model"]["algorithm"] == "random_forest"
    response = client.post("/api/v1/predict", json={"machine_id": meter, "horizon_min": 180, "algo": "rf", "want_quantiles": True})
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["machine_id"] == meter and result["algo"] == "random_forest" and result["unit"] == "kWh"
    assert [p["horizon_min"] for p in result["points"]] == [60, 120, 180]
    assert set(result["points"][0]) == {"t", "horizon_min", "yhat", "quantiles"} and set(result["points"][0]["quantiles"]) == {"0.1", "0.5", "0.9"}
    plain = client.post("/api/v1/predict", json={"machine_id": meter, "horizon_min": 60, "algo": "seasonal_naive_daily"}).json()
    assert plain["result"]["points"][0]["quantiles"] is None
    bad = client.post("/api/v1/predict", json={"machine_id": meter, "horizon_min": 90, "algo": "rf"})
    assert bad.status_code == 422 and bad.json()["field"] == "horizon_min"
    # The schema documents the server's cap (31 days), not a larger number the server then refuses.
    schema = client.get("/openapi.json").json()["components"]["schemas"]["PredictIn"]["properties"]["horizon_min"]
    assert schema["maximum"] == 31 * 24 * 60 and "31 days" in schema["description"]
    beyond = client.post("/api/v1/predict", json={"machine_id": meter, "horizon_min": 31 * 24 * 60 + 60, "algo": "rf"})
    assert beyond.status_code == 422 and beyond.json()["field"] == "horizon_min"
    missing = client.post("/api/v1/predict", json={"machine_id": meter, "horizon_min": 60, "algo": "xgboost"})
    assert missing.status_code == 404 and missing.json()["field"] == "algo"
    assert 'predictions_total{algorithm="xgboost",status="error"} 1.0' in client.get("/metrics").text


def test_input_errors_name_their_field(client: TestClient, meter: str, repo: Repository) -> None:
    url = f"/api/v1/assets/{meter}/forecast"
    cases = {
        ("prophet", "PT24H", None): (422, "algorithm"),
        ("seasonal_naive_daily", "PT24H", "0.1,1.5"): (422, "quantiles"),
        ("seasonal_naive_daily", "PT24H", "x"): (422, "quantiles"),
        ("seasonal_naive_daily", "PT90M", None): (422, "horizon"),
        ("seasonal_naive_daily", "P1DT", None): (422, "horizon"),  # a T without a time part
        ("persistence", "P3650D", None): (422, "horizon"),  # over MAX_HORIZON (a 25 MB answer before)
        ("lightgbm", "PT24H", None): (404, "algorithm"),
    }
    for (algorithm, horizon, quantiles), (status, field) in cases.items():
        params = {"algorithm": algorithm, "horizon": horizon} | ({"quantiles": quantiles} if quantiles else {})
        response = client.get(url, params=params)
        assert (response.status_code, response.json()["field"]) == (status, field), (algorithm, response.text)
    register(client, "short-f")
    store_hourly(repo, "short-f", load_profile(3))
    short = client.get("/api/v1/assets/short-f/forecast", params={"algorithm": "seasonal_naive_weekly"})
    assert short.status_code == 422 and short.json()["field"] == "history"
    assert short.json()["available"] < short.json()["required"] == 168
    trained = wait_job(client, client.post("/api/v1/assets/short-f/train", json={"algorithm": "lightgbm"}))
    assert trained["state"] == "failed" and trained["error"]["field"] == "history", trained  # known once it reads the data


@pytest.mark.parametrize(
    ("tail", "expected"),
    [(np.zeros(30), 0.0), (np.full(30, 5.0), 5.0)],
    ids=["a-zero", "b-five"],
)
def test_flat_series_case_through_the_api(client: TestClient, repo: Repository, tail: np.ndarray, expected: float) -> None:
    """cases/forecasting/flat-series.md (a) and (b): 72 h of hourly load, the last 30 h flat -> 24 x the flat level."""
    register(client, "flat-f")
    varying = 3.0 + 5.0 * (np.sin(np.arange(42) * 0.7) + 1) / 2
    store_hourly(repo, "flat-f", np.concatenate([varying, tail]))
    body = client.get("/api/v1/assets/flat-f/forecast", params={"algorithm": "seasonal_naive_daily", "quantiles": "0.1,0.9"}).json()
    assert body["flatliner"] is True
    assert [p["value"] for p in body["points"]] == [expected] * 24
    assert all(p["quantiles"] == {"0.1": expected, "0.9": expected} for p in body["points"])


def test_flat_series_case_c_pv_nights_are_not_flagged(client: TestClient, repo: Repository) -> None:
    register(client, "pv-f")
    hours = np.arange(72) % 24
    store_hourly(repo, "pv-f", np.where((hours >= 6) & (hours < 18), 40 * np.sin(np.pi * (hours - 6) / 12), 0.0))
    body = client.get("/api/v1/assets/pv-f/forecast", params={"algorithm": "seasonal_naive_daily"}).json()
    assert body["flatliner"] is False and len(body["points"]) == 24
    assert all(p["value"] >= 0 for p in body["points"])


def test_readyz_and_metric_show_a_model_that_fails_to_load(client: TestClient, meter: str, settings) -> None:  # noqa: ANN001
    good = train(client, meter, algorithm="seasonal_naive_weekly")["model"]["model_id"]
    # a newer version copied into MODELS_DIR whose artifact does not match its manifest's SHA-256
    folder = settings.models_dir / meter / "seasonal_naive_weekly"
    source = folder / good.rsplit("--", 1)[1]
    version = "20990101T000000000000Z"
    bad = f"{meter}--seasonal_naive_weekly--{version}"
    manifest = json.loads((source / "manifest.json").read_text())
    manifest.update(model_id=bad, version=version)
    (folder / version).mkdir()
    (folder / version / "manifest.json").write_text(json.dumps(manifest))
    (folder / version / "model.json").write_text('{"tampered": true}')
    client.app.state.dt.forecasts.server.reload()  # what the MODELS_DIR watcher does on the change
    ready = client.get("/readyz")
    assert ready.status_code == 200  # not the champion: reported, still ready (a failing champion is 503)
    assert ready.json()["checks"]["models"]["ok"] is True and bad in ready.json()["checks"]["models"]["detail"]
    assert "model_load_failures_total 1.0" in client.get("/metrics").text
    assert client.get("/api/v1/models").json()["load_failures"][bad].startswith("ModelIntegrityError")
    served = client.get(f"/api/v1/assets/{meter}/forecast", params={"algorithm": "seasonal_naive_weekly"}).json()
    assert served["model_id"] == good  # the previous model keeps serving
