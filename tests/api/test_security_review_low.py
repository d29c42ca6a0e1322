"""Low findings of the outside security review that need no running server: model 404s without
server paths, anchored ids checked with fullmatch (a trailing newline is not an id), and one
rejection text for unknown and other sites' assets of a site-limited ingest key."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from digitaltwin.config import Settings
from digitaltwin.domain.assets import Asset, AssetKind, Site, check_slug
from digitaltwin.domain.errors import ValidationError
from digitaltwin.registry.backtests import PLOT_FILE, BacktestNotFoundError, BacktestStore
from digitaltwin.registry.errors import ModelNotFoundError
from digitaltwin.registry.store import parse_model_id
from digitaltwin.storage.repository import Repository
from tests.api.conftest import ClientAs

MODEL_ID = "meter-x--lightgbm--20240101T000000000000Z"
BACKTEST_ID = "bt-20240101T000000Z-0000abcd"


def test_a_missing_model_is_a_generic_404(client: TestClient, settings: Settings) -> None:
    for url in (f"/api/v1/models/{MODEL_ID}", f"/api/v1/models/{MODEL_ID}/activate"):
        response = client.request("POST" if url.endswith("activate") else "GET", url)
        assert response.status_code == 404, response.text
        assert response.json()["detail"] == f"model {MODEL_ID!r} not found"
        assert str(settings.models_dir) not in response.text and "looked in" not in response.text


def test_ids_with_a_trailing_newline_are_refused(tmp_path: Path) -> None:
    """``re.match`` with ``$`` accepts a trailing newline; ids are checked with fullmatch."""
    assert parse_model_id(MODEL_ID)[0] == "meter-x"
    with pytest.raises(ModelNotFoundError):
        parse_model_id(MODEL_ID + "\n")
    store = BacktestStore(tmp_path)
    (tmp_path / (BACKTEST_ID + "\n")).mkdir()
    (tmp_path / (BACKTEST_ID + "\n") / PLOT_FILE).write_bytes(b"not ours")
    with pytest.raises(BacktestNotFoundError):
        store.plot(BACKTEST_ID + "\n")
    with pytest.raises(ValidationError):
        check_slug("meter-1\n", field="id")


def test_backtest_route_refuses_a_trailing_newline(client: TestClient) -> None:
    assert client.get(f"/api/v1/backtests/{BACKTEST_ID}%0A").status_code == 404


def test_site_limited_key_gets_one_answer_for_unknown_and_foreign_assets(
    client: TestClient, repo: Repository, anonymous_client: ClientAs
) -> None:
    repo.create_site(Site("north", "North", "Europe/Berlin"))
    repo.create_site(Site("south", "South", "Europe/Berlin"))
    repo.create_asset(Asset("meter-n", "north", "N", AssetKind.METER))
    repo.create_asset(Asset("meter-s", "south", "S", AssetKind.METER))
    key = client.post("/api/v1/api-keys", json={"name": "gw", "scopes": ["ingest"], "site_id": "north"}).json()["key"]
    item = {"ts": "2024-01-01T00:00:00Z", "quantity": "power", "value": 1.0, "unit": "kW"}
    batch = [{**item, "asset_id": "meter-n"}, {**item, "asset_id": "meter-s"}, {**item, "asset_id": "meter-q"}]
    answer = anonymous_client.post("/api/v1/readings", json={"readings": batch}, headers={"X-API-Key": key})
    assert answer.status_code == 200, answer.text
    accepted, foreign, unknown = answer.json()["items"]
    assert accepted["status"] == "accepted"
    assert foreign["field"] == unknown["field"] == "asset_id"
    assert foreign["reason"].replace("meter-s", "ID") == unknown["reason"].replace("meter-q", "ID")
    assert "south" not in answer.text
