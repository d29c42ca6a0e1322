"""The command line end to end on real data: sites, assets, import, train, backtest, then the forecast API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from digitaltwin.api.app import create_app
from digitaltwin.cli import app
from digitaltwin.config import Settings
from digitaltwin.storage.repository import Repository
from digitaltwin.security.roles import Role
from tests.api.conftest import headers_for
from tests.conftest import STEEL_CSV

runner = CliRunner()


def _env(settings: Settings) -> dict[str, str]:
    env = {"DATA_DIR": str(settings.data_dir), "MODELS_DIR": str(settings.models_dir), "LOG_DIR": str(settings.log_dir)}
    env["DATABASE_URL"] = settings.database_url or ""
    return env


def _run(settings: Settings, *args: str, exit_code: int = 0) -> str:
    result = runner.invoke(app, list(args), env=_env(settings))
    assert result.exit_code == exit_code, result.output
    return result.output


@pytest.mark.slow
def test_import_train_backtest_forecast(settings: Settings, repo: Repository) -> None:
    _run(settings, "sites", "add", "daewoo-steel", "--timezone", "Asia/Seoul", "--country", "KR")
    _run(settings, "assets", "add", "steel-plant", "--site", "daewoo-steel", "--kind", "meter")
    out = _run(settings, "import", str(STEEL_CSV), "--preset", "steel")
    assert "readings stored 35040" in out
    out = " ".join(_run(settings, "import", str(STEEL_CSV), "--preset", "steel").split())
    assert "readings stored 0, rejected rows 0" in out
    assert "duplicates (same value already stored) 35040, conflicts (another value already stored, kept the stored value) 0" in out

    out = _run(settings, "train", "--asset", "steel-plant", "--algorithm", "lightgbm")
    assert "saved model steel-plant--lightgbm--" in out
    manifests = list(Path(settings.models_dir).rglob("manifest.json"))
    assert len(manifests) == 1
    manifest = json.loads(manifests[0].read_text())
    assert manifest["algorithm"] == "lightgbm" and manifest["asset_id"] == "steel-plant"
    assert list(manifest["files"]) == ["model.txt"] and len(manifest["files"]["model.txt"]) == 64
    assert (manifests[0].parent / "model.txt").read_text().startswith("tree")  # LightGBM's own text format
    assert "champion: first model of the asset" in out

    out = _run(settings, "backtest", "--start", "2018-12-17", "--end", "2018-12-23", "--algorithms", "seasonal_naive_weekly,lightgbm")
    assert "seasonal_naive_weekly" in out and "lightgbm" in out and "CV(RMSE)" in out
    for header in ("MAPE", "MASE", "pinball", "80% cover", "peak err"):
        assert header in out

    with TestClient(create_app(settings)) as client:
        client.headers.update(headers_for(client, Role.VIEWER))  # every API route needs a login
        response = client.get("/api/v1/assets/steel-plant/forecast", params={"horizon": "PT24H", "algorithm": "lightgbm"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["unit"] == "kWh" and body["interval_seconds"] == 900 and body["model_id"].startswith("steel-plant--lightgbm--")
        assert len(body["points"]) == 96
        assert body["points"][0]["ts"] == "2018-12-31T15:00:00Z"  # 2019-01-01 00:00 in Seoul, right after the data
        assert all(p["value"] is not None and p["value"] >= 0 for p in body["points"])
        too_long = client.get("/api/v1/assets/steel-plant/forecast", params={"horizon": "PT48H", "algorithm": "lightgbm"})
        assert too_long.status_code == 422 and too_long.json()["field"] == "horizon"
        naive = client.get("/api/v1/assets/steel-plant/forecast", params={"horizon": "PT1H", "algorithm": "seasonal_naive_daily"})
        assert [p["value"] for p in naive.json()["points"]] == pytest.approx([3.64, 3.31, 3.49, 3.71])  # file rows 31/12/2018 00:15..01:00 (interval ends)
        unknown = client.get("/api/v1/assets/steel-plant/forecast", params={"algorithm": "magic"})
        assert unknown.status_code == 422 and unknown.json()["field"] == "algorithm"
        metrics = client.get("/metrics").text
        assert 'predictions_total{algorithm="lightgbm",status="ok"} 1.0' in metrics


def test_import_reports_bad_rows_and_keeps_the_rest(settings: Settings, repo: Repository, tmp_path: Path) -> None:
    _run(settings, "sites", "add", "s1", "--timezone", "Europe/Berlin")
    _run(settings, "assets", "add", "m1", "--site", "s1")
    csv = tmp_path / "m1.csv"
    csv.write_text("ts,kwh\n2024-01-01T00:00:00Z,1.5\nnot-a-time,2\n2024-01-01T00:15:00Z,abc\n2024-01-01T00:30:00Z,2.5\n")
    out = _run(settings, "import", str(csv), "--asset", "m1", "--value-column", "kwh", "--unit", "kWh", "--interval-seconds", "900", exit_code=1)
    assert "readings stored 2" in out and "rejected rows 2" in out
    assert "line 3: ts:" in out and "line 4: kwh:" in out
    result = runner.invoke(app, ["import", str(csv), "--asset", "m1", "--value-column", "kwh", "--unit", "kwhh"], env=_env(settings))
    assert result.exit_code == 1 and "rejected rows 4" in result.output and "unknown unit 'kwhh'" in result.output
    assert "created" in _run(settings, "assets", "add", "m2", "--site", "s1")
    assert "updated" in _run(settings, "assets", "add", "m2", "--site", "s1", "--name", "Meter 2")
    bad = runner.invoke(app, ["import", str(csv), "--asset", "m1", "--value-column", "kwh", "--unit", "kWh", "--label", "end", "--interval-seconds", "-5"], env=_env(settings))
    assert bad.exit_code == 2 and "interval_seconds must be positive" in bad.output
