"""HTTP ingestion and the live state, from a newcomer test of the product:

* a NUL character (U+0000) in any string of an item rejects that item naming the field; the
  good items of the batch are stored (PostgreSQL text cannot hold NUL: it used to be a 500);
* an ``interval`` that conflicts with the series' interval is rejected naming ``interval``;
* ``GET .../state`` never shows a value that storage does not hold, nor an older one: after
  ``DELETE .../readings``, after a corrected resend, and with readings that reached storage
  through another process;
* with Redis down, ``GET .../state`` falls back to storage (``"live_cache": "unavailable"``) and
  ``GET /stream`` answers 503 with a JSON error instead of opening and closing;
* stream events write timestamps with ``Z``, as the rest of the API.

SQLite with the in-process live state; PostgreSQL with Redis (``DT_TEST_REDIS_URL``) where a
test says so, else in-process.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from digitaltwin.api.app import create_app
from digitaltwin.config import Settings
from digitaltwin.domain.readings import Reading
from digitaltwin.security.roles import Role
from digitaltwin.storage.repository import Repository
from tests.api.conftest import headers_for

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
#: A port where nothing listens: Redis "down".
DOWN_REDIS = "redis://127.0.0.1:6390/0"


def with_redis(settings: Settings) -> Settings:
    """``settings`` with the test Redis on the PostgreSQL variant (unique key prefix); SQLite unchanged."""
    if settings.embedded:
        return settings
    url = os.environ.get("DT_TEST_REDIS_URL", DEFAULT_REDIS)
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"Redis unreachable at {url}: {exc}")
    return settings.model_copy(update={"redis_url": url, "live_state_key_prefix": f"test-{uuid.uuid4().hex[:10]}"})


@pytest.fixture
def live_client(settings: Settings, repo: Repository) -> Iterator[TestClient]:
    """An admin client of an app with Redis on PostgreSQL (see :func:`with_redis`)."""
    with TestClient(create_app(with_redis(settings))) as test_client:
        test_client.headers.update(headers_for(test_client, Role.ADMIN, username="admin"))
        yield test_client


def make_assets(client: TestClient, *asset_ids: str) -> None:
    assert client.post("/api/v1/sites", json={"id": "site-c", "name": "C", "timezone": "UTC"}).status_code == 201
    for asset_id in asset_ids:
        body = {"id": asset_id, "site_id": "site-c", "name": asset_id, "kind": "meter"}
        assert client.post("/api/v1/assets", json=body).status_code == 201


def power(asset_id: str, ts: str, value: float) -> dict[str, Any]:
    return {"asset_id": asset_id, "ts": ts, "quantity": "power", "value": value, "unit": "kW"}


def state_readings(client: TestClient, asset_id: str) -> list[tuple[str, str, float]]:
    response = client.get(f"/api/v1/assets/{asset_id}/state")
    assert response.status_code == 200, response.text
    return [(r["quantity"], r["ts"], r["value"]) for r in response.json()["readings"]]


def stored_latest(client: TestClient, asset_id: str) -> list[tuple[str, str, float]]:
    response = client.get(f"/api/v1/assets/{asset_id}")
    assert response.status_code == 200, response.text
    return sorted((r["quantity"], r["ts"], r["value"]) for r in response.json()["latest"])


# -- NUL characters ------------------------------------------------------------------------------


def test_nul_in_an_item_rejects_that_item_naming_the_field(client: TestClient) -> None:
    make_assets(client, "m-nul")
    items = [
        power("m-nul", "2026-11-28T10:00:00Z", 1.0),
        power("m-\u0000nul", "2026-11-28T10:01:00Z", 2.0),
        {**power("m-nul", "2026-11-28T10:02:00Z", 3.0), "unit": "k\u0000W"},
        {"asset_id": "m-nul", "ts": "2026-11-28T10:03:00Z", "values": {"power_kw": 4.0, "note\u0000": 1}},
        {**power("m-nul", "2026-11-28T10:04:00Z", 5.0), "comment": "x\u0000y"},
        power("m-nul", "2026-11-28T10:05:00Z", 6.0),
    ]
    response = client.post("/api/v1/readings", json={"readings": items})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"], body["stored"]) == (2, 4, 2)
    rejected = {i["index"]: i["field"] for i in body["items"] if i["status"] == "rejected"}
    assert rejected == {1: "asset_id", 2: "unit", 3: "values.note\\u0000", 4: "comment"}
    assert all("NUL" in i["reason"] for i in body["items"] if i["status"] == "rejected")
    values = [r["value"] for r in client.get("/api/v1/assets/m-nul/readings").json()["readings"]]
    assert values == [1.0, 6.0]

    # a single item (no "readings" envelope) holding only a NUL asset id: 422 naming the field, no 500
    one = client.post("/api/v1/readings", json=power("\u0000", "2026-11-28T10:06:00Z", 1.0))
    assert one.status_code == 422 and one.json()["items"][0]["field"] == "asset_id"


# -- declared intervals --------------------------------------------------------------------------


def energy(asset_id: str, ts: str, value: float, interval: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {"asset_id": asset_id, "ts": ts, "quantity": "energy", "value": value, "unit": "kWh"}
    if interval is not None:
        item["interval"] = interval
    return item


def test_an_interval_conflicting_with_the_series_is_rejected(client: TestClient, repo: Repository) -> None:
    make_assets(client, "m-int")
    first = client.post("/api/v1/readings", json=[energy("m-int", "2026-11-28T00:00:00Z", 1, "PT15M")])
    assert first.status_code == 200 and first.json()["accepted"] == 1
    series = repo.find_series("m-int", "energy")
    assert series is not None and series.interval_seconds == 900

    response = client.post("/api/v1/readings", json=[
        energy("m-int", "2026-11-28T01:00:00Z", 4, "PT1H"),
        energy("m-int", "2026-11-28T00:15:00Z", 2, "PT15M"),  # the same interval: fine
        energy("m-int", "2026-11-28T00:30:00Z", 3, None),  # no declaration: fine
    ])
    assert response.status_code == 200
    items = response.json()["items"]
    assert [i["status"] for i in items] == ["rejected", "accepted", "accepted"]
    assert items[0]["field"] == "interval"
    assert "PT1H" in items[0]["reason"] and "PT15M" in items[0]["reason"]
    values = [r["value"] for r in client.get("/api/v1/assets/m-int/readings").json()["readings"]]
    assert values == [1, 2, 3]  # the 01:00 reading was not stored as a 15-minute interval

    # two items of one batch declaring different intervals for a new series: the first one sets it
    make_assets_more = {"id": "m-int2", "site_id": "site-c", "name": "m-int2", "kind": "meter"}
    assert client.post("/api/v1/assets", json=make_assets_more).status_code == 201
    both = client.post("/api/v1/readings", json=[
        energy("m-int2", "2026-11-28T00:00:00Z", 1, "PT30M"),
        energy("m-int2", "2026-11-28T01:00:00Z", 1, "PT1H"),
    ]).json()["items"]
    assert [(i["status"], i["field"]) for i in both] == [("accepted", None), ("rejected", "interval")]
    series = repo.find_series("m-int2", "energy")
    assert series is not None and series.interval_seconds == 1800


def hourly(asset_id: str, hours: int, interval: str | None = None) -> list[dict[str, Any]]:
    """``hours`` hourly energy items of 54.2 kWh from 2026-11-01 00:00 UTC."""
    return [energy(asset_id, f"2026-11-{1 + h // 24:02d}T{h % 24:02d}:00:00Z", 54.2, interval) for h in range(hours)]


def test_a_declared_interval_must_agree_with_the_spacing_of_stored_readings(client: TestClient, repo: Repository) -> None:
    """One item declaring PT15M on an hourly series without a recorded interval is rejected, so the
    history keeps its meaning; the correct declaration is accepted and recorded."""
    make_assets(client, "m-hourly")
    assert client.post("/api/v1/readings", json=hourly("m-hourly", 72)).json()["accepted"] == 72
    day = {"start": "2026-11-02T00:00:00Z", "end": "2026-11-03T00:00:00Z", "bucket": "day"}
    before = client.get("/api/v1/assets/m-hourly/energy", params=day).json()
    assert before["buckets"][0]["mean_power_kw"] == pytest.approx(54.2), before
    assert before["buckets"][0]["missing_count"] in (0, None), before

    wrong = client.post("/api/v1/readings", json=[energy("m-hourly", "2026-11-04T00:00:00Z", 54.2, "PT15M")])
    assert wrong.status_code == 422 or wrong.json()["rejected"] == 1, wrong.text
    item = wrong.json()["items"][0]
    assert item["field"] == "interval"
    assert "PT15M" in item["reason"] and "PT1H" in item["reason"]  # names the observed spacing
    series = repo.find_series("m-hourly", "energy", fresh=True)
    assert series is not None and series.interval_seconds is None
    assert client.get("/api/v1/assets/m-hourly/energy", params=day).json() == before

    right = client.post("/api/v1/readings", json=[energy("m-hourly", "2026-11-04T00:00:00Z", 54.2, "PT1H")])
    assert right.json()["accepted"] == 1, right.text
    series = repo.find_series("m-hourly", "energy", fresh=True)
    assert series is not None and series.interval_seconds == 3600


def test_interval_on_power_only_items_is_rejected(client: TestClient) -> None:
    make_assets(client, "m-pow")
    response = client.post("/api/v1/readings", json=[
        {**power("m-pow", "2026-11-28T00:00:00Z", 5.0), "interval": "PT15M"},
        {"asset_id": "m-pow", "ts": "2026-11-28T00:15:00Z", "values": {"power_kw": 5.0, "energy_kwh": 1.25}, "interval": "PT15M"},
    ])
    items = response.json()["items"]
    assert [(i["status"], i["field"]) for i in items] == [("rejected", "interval"), ("accepted", None)]
    assert "power" in items[0]["reason"]


def test_deleting_all_readings_of_a_series_clears_its_recorded_interval(client: TestClient, repo: Repository) -> None:
    make_assets(client, "m-fix")
    assert client.post("/api/v1/readings", json=[energy("m-fix", "2026-11-28T00:00:00Z", 1, "PT15M")]).json()["accepted"] == 1
    assert client.post("/api/v1/readings", json=[energy("m-fix", "2026-11-28T01:00:00Z", 4, "PT1H")]).json()["rejected"] == 1
    span = {"start": "2026-11-27T00:00:00Z", "end": "2026-11-29T00:00:00Z"}
    partial = client.delete("/api/v1/assets/m-fix/readings", params={**span, "end": "2026-11-27T12:00:00Z"})
    assert partial.status_code == 200 and partial.json()["deleted"] == 0
    assert repo.find_series("m-fix", "energy", fresh=True).interval_seconds == 900  # type: ignore[union-attr]
    assert client.delete("/api/v1/assets/m-fix/readings", params=span).json()["deleted"] == 1
    series = repo.find_series("m-fix", "energy", fresh=True)
    assert series is not None and series.interval_seconds is None
    resent = client.post("/api/v1/readings", json=hourly("m-fix", 3, "PT1H"))
    assert resent.json()["accepted"] == 3, resent.text
    assert repo.find_series("m-fix", "energy", fresh=True).interval_seconds == 3600  # type: ignore[union-attr]


# -- the live state agrees with storage ------------------------------------------------------------


def test_state_after_delete_and_corrected_resend_matches_storage(live_client: TestClient) -> None:
    client = live_client
    make_assets(client, "m-del")
    assert client.post("/api/v1/readings", json=[power("m-del", "2026-11-28T10:00:00Z", 5.0)]).status_code == 200
    assert client.post("/api/v1/readings", json=[power("m-del", "2026-11-28T10:05:00Z", 999.0)]).status_code == 200
    assert state_readings(client, "m-del") == [("power", "2026-11-28T10:05:00Z", 999.0)]

    deleted = client.delete(
        "/api/v1/assets/m-del/readings", params={"start": "2026-11-28T10:05:00Z", "end": "2026-11-28T10:06:00Z"}
    )
    assert deleted.status_code == 200 and deleted.json()["deleted"] == 1
    # the deleted reading is gone from the state too: the latest stored one is shown
    assert state_readings(client, "m-del") == [("power", "2026-11-28T10:00:00Z", 5.0)]

    assert client.post("/api/v1/readings", json=[power("m-del", "2026-11-28T10:05:00Z", 2.0)]).json()["stored"] == 1
    assert state_readings(client, "m-del") == [("power", "2026-11-28T10:05:00Z", 2.0)]
    assert stored_latest(client, "m-del") == [("power", "2026-11-28T10:05:00Z", 2.0)]

    # the live cache itself (Redis on PostgreSQL) was repaired: a new process sees the same
    live = client.app.state.dt.live  # type: ignore[attr-defined]
    cached = [(r.ts, r.value) for r in live.state("m-del").readings]
    assert cached in ([], [(datetime(2026, 11, 28, 10, 5, tzinfo=UTC), 2.0)])

    # deleting everything: the state has no reading left
    client.delete("/api/v1/assets/m-del/readings", params={"start": "2026-11-28T00:00:00Z", "end": "2026-11-29T00:00:00Z"})
    assert state_readings(client, "m-del") == []


def test_state_shows_newer_readings_stored_by_another_process(client: TestClient, repo: Repository) -> None:
    make_assets(client, "m-other")
    assert client.post("/api/v1/readings", json=[power("m-other", "2026-11-28T10:00:00Z", 1.0)]).status_code == 200
    # the MQTT ingest worker is another process: its readings reach storage, not this process's live state
    repo.write_readings([Reading("m-other", "power", datetime(2026, 11, 28, 10, 30, tzinfo=UTC), 7.0)])
    assert state_readings(client, "m-other") == [("power", "2026-11-28T10:30:00Z", 7.0)]


# -- Redis down ----------------------------------------------------------------------------------


def test_redis_down_state_falls_back_to_storage_and_stream_is_503(settings: Settings, repo: Repository) -> None:
    down = settings.model_copy(update={"redis_url": DOWN_REDIS})
    with TestClient(create_app(down)) as client:
        client.headers.update(headers_for(client, Role.ADMIN))
        make_assets(client, "m-down")
        posted = client.post("/api/v1/readings", json=[power("m-down", "2026-11-28T10:00:00Z", 3.0)])
        assert posted.status_code == 200 and posted.json()["stored"] == 1  # stored although the live update failed

        response = client.get("/api/v1/assets/m-down/state")
        assert response.status_code == 200, response.text
        assert response.json() == {
            "asset_id": "m-down",
            "readings": [{"quantity": "power", "unit": "kW", "ts": "2026-11-28T10:00:00Z", "value": 3.0}],
            "status": None,
            "live_cache": "unavailable",
        }

        stream = client.get("/api/v1/stream", params={"asset_id": "m-down"})
        assert stream.status_code == 503
        assert stream.headers["content-type"].startswith("application/json")
        assert "Redis" in stream.json()["detail"] and stream.headers.get("retry-after") == "5"


# -- stream timestamps -------------------------------------------------------------------------------


def test_stream_events_write_utc_with_z() -> None:
    from digitaltwin.services.live_state import reading_event, status_event

    event = reading_event(Reading("m", "power", datetime(2026, 11, 28, 10, 0, 0, 250000, tzinfo=UTC), 1.0))
    assert event["ts"] == "2026-11-28T10:00:00.250000Z"
    assert status_event("m", "RUN", datetime(2026, 11, 28, 10, tzinfo=UTC))["ts"] == "2026-11-28T10:00:00Z"
    assert json.dumps(event)  # still plain JSON


# -- NUL in other request bodies -----------------------------------------------------------------------


def test_nul_in_other_bodies_is_never_a_500(client: TestClient, settings: Settings) -> None:
    """Sites, assets and API keys: a NUL in any text field is answered 422 naming the field, on
    SQLite (whose text could hold it) as on PostgreSQL (which refuses it), as readings are."""
    assert client.post("/api/v1/sites", json={"id": "site-z", "name": "Z", "timezone": "UTC"}).status_code == 201
    asset = {"id": "a-0", "site_id": "site-z", "name": "A", "kind": "meter"}
    assert client.post("/api/v1/assets", json=asset).status_code == 201
    cases = [
        ("POST", "/api/v1/sites", {"id": "site-y", "name": "Y\u0000", "timezone": "UTC"}, "name"),
        ("POST", "/api/v1/assets", {"id": "a-1", "site_id": "site-z", "name": "A\u0000", "kind": "meter"}, "name"),
        ("POST", "/api/v1/assets", {"id": "a-2", "site_id": "site-\u0000z", "name": "A", "kind": "meter"}, "site_id"),
        ("POST", "/api/v1/assets", {**asset, "id": "a-3", "attributes": {"label": "x\u0000"}}, "attributes.label"),
        ("POST", "/api/v1/assets", {**asset, "id": "a-4", "attributes": {"tags": ["ok", "\u0000"]}}, "attributes.tags.1"),
        ("PATCH", "/api/v1/sites/site-z", {"name": "Z\u0000"}, "name"),
        ("PATCH", "/api/v1/assets/a-0", {"name": "A\u0000"}, "name"),
        ("PATCH", "/api/v1/assets/a-0", {"attributes": {"k\u0000": 1}}, "attributes.k\\u0000"),
    ]
    for method, url, body, field in cases:
        response = client.request(method, url, json=body)
        assert response.status_code == 422, (url, body, response.text)
        assert response.json()["field"] == field and "NUL" in response.json()["detail"], (url, body, response.text)
    assert [s["name"] for s in client.get("/api/v1/sites").json()] == ["Z"]
    assert [(a["id"], a["name"], a.get("attributes") or {}) for a in client.get("/api/v1/assets").json()] == [("a-0", "A", {})]
    # API key names: PostgreSQL refuses the NUL (422 naming the field); SQLite stores it
    response = client.post("/api/v1/api-keys", json={"name": "key\u0000", "scopes": ["read"]})
    assert response.status_code != 500, response.text
    if not settings.embedded:
        assert response.status_code == 422 and response.json()["field"] == "name", response.text
