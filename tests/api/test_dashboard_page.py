"""The dashboard's page: public, under its content security policy, and answering HEAD for uptime probes."""

from __future__ import annotations

from fastapi.testclient import TestClient

from .conftest import ClientAs


def test_the_page_answers_get_and_head_without_a_login(anonymous_client: ClientAs) -> None:
    page = anonymous_client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self';" in page.headers["content-security-policy"]
    head = anonymous_client.request("HEAD", "/")
    assert head.status_code == 200 and head.content == b""
    assert anonymous_client.request("HEAD", "/api/v1/sites").status_code in (401, 405)  # the API still needs a login


def test_a_site_state_holds_every_asset_state_in_one_answer(client: TestClient, viewer_client: ClientAs) -> None:
    """The overview's live tiles come from one request per site, equal to the per-asset answers."""
    assert client.post("/api/v1/sites", json={"id": "st", "name": "St", "timezone": "UTC"}).status_code == 201
    for asset_id in ("m-b", "m-a", "m-quiet"):
        assert client.post("/api/v1/assets", json={"id": asset_id, "site_id": "st", "name": asset_id, "kind": "meter"}).status_code == 201
    items = [{"asset_id": a, "ts": "2025-05-01T10:00:00Z", "quantity": "power", "value": v, "unit": "kW"} for a, v in (("m-a", 1.5), ("m-b", 2.5))]
    assert client.post("/api/v1/readings", json={"readings": items}).status_code == 200
    site = viewer_client.get("/api/v1/sites/st/state")
    assert site.status_code == 200
    assert [s["asset_id"] for s in site.json()] == ["m-a", "m-b", "m-quiet"]
    assert site.json() == [viewer_client.get(f"/api/v1/assets/{a}/state").json() for a in ("m-a", "m-b", "m-quiet")]
    assert site.json()[2]["readings"] == []
    missing = viewer_client.get("/api/v1/sites/nope/state")
    assert missing.status_code == 404 and missing.json()["field"] == "site_id"
