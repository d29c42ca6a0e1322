"""``POST /api/v1/readings`` answers per item with conflicts (a reading already stored with another
value: both values, the stored one kept) apart from duplicates (same value), on SQLite and PostgreSQL."""

from __future__ import annotations

from fastapi.testclient import TestClient

from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.storage.repository import Repository


def item(ts: str, kw: float) -> dict[str, object]:
    return {"asset_id": "m", "ts": ts, "quantity": "power", "value": kw, "unit": "kW"}


def test_conflicts_are_answered_per_item_with_both_values(client: TestClient, repo: Repository) -> None:
    repo.create_site(Site("s", "s", "UTC"))
    repo.create_asset(Asset("m", "s", "m", AssetKind.METER))
    first = client.post("/api/v1/readings", json=[item("2026-11-28T10:00:00Z", 1.0), item("2026-11-28T10:01:00Z", 2.0)])
    assert first.status_code == 200 and first.json()["stored"] == 2

    again = client.post("/api/v1/readings", json=[
        item("2026-11-28T10:00:00Z", 1.0),  # a redelivery: duplicate
        item("2026-11-28T10:01:00Z", 5.0),  # another value: conflict
        item("2026-11-28T10:02:00Z", 3.0),  # new
        {"asset_id": "m", "ts": "2026-11-28T10:03:00Z", "power_kw": "n/a"},  # rejected
    ])
    body = again.json()
    assert again.status_code == 200
    assert (body["accepted"], body["rejected"], body["stored"], body["duplicates"], body["conflicts"]) == (3, 1, 1, 1, 1)
    assert [i["conflicts"] for i in body["items"][:3]] == [
        [], [{"quantity": "power", "ts": "2026-11-28T10:01:00Z", "stored_value": 2.0, "value": 5.0}], [],
    ]
    assert body["items"][1]["status"] == "accepted" and body["items"][3]["field"] == "power_kw"
    values = {r.ts.isoformat(): r.value for r in repo.read_page("m").rows}
    assert values["2026-11-28T10:01:00+00:00"] == 2.0  # first write wins
