"""PATCH of sites and assets: partial changes, named errors, no parent cycles, admin only, audited;
countries and ``forecast_exog`` checked on POST and PATCH."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.conftest import ClientAs


def _site(client: TestClient, site_id: str = "plant", timezone: str = "Europe/Berlin") -> None:
    assert client.post("/api/v1/sites", json={"id": site_id, "name": site_id, "timezone": timezone}).status_code == 201


def _asset(client: TestClient, asset_id: str, parent_id: str | None = None, site_id: str = "plant") -> None:
    body = {"id": asset_id, "site_id": site_id, "name": asset_id, "kind": "meter", "parent_id": parent_id}
    assert client.post("/api/v1/assets", json=body).status_code == 201, asset_id


def test_site_patch_changes_only_what_is_sent(client: TestClient) -> None:
    _site(client)
    response = client.patch("/api/v1/sites/plant", json={"timezone": "Europe/London", "country": "gb"})
    assert response.status_code == 200, response.text
    assert response.json() == {"id": "plant", "name": "plant", "timezone": "Europe/London", "country": "GB", "attributes": {}}
    assert client.get("/api/v1/sites/plant").json()["timezone"] == "Europe/London"
    cleared = client.patch("/api/v1/sites/plant", json={"country": None}).json()
    assert cleared["country"] is None and cleared["timezone"] == "Europe/London"


def test_site_patch_errors_name_the_field(client: TestClient) -> None:
    _site(client)
    for body, field in (
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": None}, "timezone"),
        ({"country": "Germany"}, "country"),
        ({"name": ""}, "name"),
        ({"id": "other"}, "id"),
    ):
        response = client.patch("/api/v1/sites/plant", json=body)
        assert response.status_code == 422, (body, response.text)
        assert field in response.text, (body, response.text)
    assert client.patch("/api/v1/sites/nowhere", json={"name": "x"}).status_code == 404
    assert client.get("/api/v1/sites/plant").json()["timezone"] == "Europe/Berlin"


def test_asset_patch_attributes_parent_and_clearing(client: TestClient) -> None:
    _site(client)
    _asset(client, "main")
    _asset(client, "line-1")
    _asset(client, "weather")
    exog = {"forecast_exog": [{"asset_id": "weather", "quantity": "temperature"}]}
    response = client.patch("/api/v1/assets/line-1", json={"parent_id": "main", "attributes": exog, "rated_power_kw": 250})
    assert response.status_code == 200, response.text
    body = client.get("/api/v1/assets/line-1").json()
    assert (body["parent_id"], body["attributes"], body["rated_power_kw"]) == ("main", exog, 250)
    body = client.patch("/api/v1/assets/line-1", json={"parent_id": None, "name": "Line 1"}).json()
    assert (body["parent_id"], body["name"], body["rated_power_kw"], body["attributes"]) == (None, "Line 1", 250, exog)


def test_asset_patch_refuses_cycles_other_sites_and_moves(client: TestClient) -> None:
    _site(client)
    _site(client, "other")
    _asset(client, "a")
    _asset(client, "b", parent_id="a")
    _asset(client, "c", parent_id="b")
    _asset(client, "elsewhere", site_id="other")
    for asset_id, body, status, field in (
        ("a", {"parent_id": "c"}, 422, "parent_id"),  # a -> c -> b -> a
        ("a", {"parent_id": "b"}, 422, "parent_id"),
        ("b", {"parent_id": "b"}, 422, "parent_id"),
        ("a", {"parent_id": "elsewhere"}, 422, "parent_id"),
        ("a", {"parent_id": "ghost"}, 404, "parent_id"),
        ("a", {"site_id": "other"}, 422, "site_id"),
        ("a", {"kind": "spaceship"}, 422, "kind"),
        ("a", {"kind": None}, 422, "kind"),
        ("a", {"rated_power_kw": -1}, 422, "rated_power_kw"),
    ):
        response = client.patch(f"/api/v1/assets/{asset_id}", json=body)
        assert response.status_code == status, (asset_id, body, response.text)
        assert field in response.text, (asset_id, body, response.text)
    assert client.get("/api/v1/assets/a").json()["parent_id"] is None
    assert client.get("/api/v1/assets/c").json()["parent_id"] == "b"
    assert client.patch("/api/v1/assets/ghost", json={"name": "x"}).status_code == 404


def test_patches_are_admin_only(client: TestClient, operator_client: ClientAs, viewer_client: ClientAs) -> None:
    _site(client)
    _asset(client, "a")
    assert operator_client.patch("/api/v1/sites/plant", json={"name": "x"}).status_code == 403
    assert viewer_client.patch("/api/v1/assets/a", json={"name": "x"}).status_code == 403
    assert client.get("/api/v1/assets/a").json()["name"] == "a"


def test_unknown_country_is_refused_on_post_and_patch(client: TestClient) -> None:
    for country in ("XX", "QQ"):
        body = {"id": "s1", "name": "s1", "timezone": "Europe/Berlin", "country": country}
        response = client.post("/api/v1/sites", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "country" and "holidays" in response.json()["detail"]
    _site(client)
    response = client.patch("/api/v1/sites/plant", json={"country": "XX"})
    assert response.status_code == 422 and response.json()["field"] == "country"
    assert client.get("/api/v1/sites/plant").json()["country"] is None
    assert client.patch("/api/v1/sites/plant", json={"country": "kr"}).json()["country"] == "KR"


def test_forecast_exog_is_checked_on_post_and_patch(client: TestClient) -> None:
    _site(client)
    _site(client, "other")
    _asset(client, "weather")
    _asset(client, "far-weather", site_id="other")
    _asset(client, "line-1")
    bad_lists = (
        [{"asset_id": "nope", "quantity": "temperature"}],  # no such asset
        [{"asset_id": "weather", "quantity": "warmth"}],  # unknown quantity
        [{"asset_id": "weather"}],
        [{"asset_id": "weather", "quantity": "temperature", "extra": 1}],
        [{"asset_id": "weather", "quantity": "temperature"}, {"asset_id": "line-1", "quantity": "temperature"}],
        ["weather"],
        {"asset_id": "weather", "quantity": "temperature"},
        "weather",
    )
    for exog in bad_lists:
        body = {"id": "line-2", "site_id": "plant", "name": "x", "kind": "meter", "attributes": {"forecast_exog": exog}}
        created = client.post("/api/v1/assets", json=body)
        assert created.status_code == 422 and created.json()["field"] == "forecast_exog", (exog, created.text)
        patched = client.patch("/api/v1/assets/line-1", json={"attributes": {"forecast_exog": exog}})
        assert patched.status_code == 422 and patched.json()["field"] == "forecast_exog", (exog, patched.text)
    assert client.get("/api/v1/assets/line-2").status_code == 404
    for own in ("energy", "energy_total", "power"):  # its own target as an input: training would read the answer
        leak = client.patch("/api/v1/assets/line-1", json={"attributes": {"forecast_exog": [{"asset_id": "line-1", "quantity": own}]}})
        assert leak.status_code == 422 and leak.json()["field"] == "forecast_exog", leak.text
    assert client.get("/api/v1/assets/line-1").json()["attributes"] == {}
    good = {"forecast_exog": [{"asset_id": "weather", "quantity": "temperature"}, {"asset_id": "line-1", "quantity": "irradiance"}]}
    assert client.patch("/api/v1/assets/line-1", json={"attributes": good}).status_code == 200
    body = {"id": "line-2", "site_id": "plant", "name": "x", "kind": "meter", "attributes": good}
    assert client.post("/api/v1/assets", json=body).status_code == 201
    # a regional weather station registered on another site may serve several sites
    shared = {"forecast_exog": [{"asset_id": "far-weather", "quantity": "temperature"}]}
    assert client.patch("/api/v1/assets/line-2", json={"attributes": shared}).status_code == 200


def test_patches_and_reading_deletions_are_audited(client: TestClient) -> None:
    _site(client)
    _asset(client, "a")
    assert client.patch("/api/v1/sites/plant", json={"name": "Plant", "country": "DE"}).status_code == 200
    assert client.patch("/api/v1/sites/plant", json={"name": "Plant"}).status_code == 200  # no change, no entry
    assert client.patch("/api/v1/assets/a", json={"rated_power_kw": 90, "attributes": {"line": 1}}).status_code == 200
    deleted = client.delete(
        "/api/v1/assets/a/readings", params={"start": "2024-01-01T00:00:00Z", "end": "2024-01-02T00:00:00Z", "quantity": "energy"}
    )
    assert deleted.status_code == 200, deleted.text
    site = client.get("/api/v1/audit", params={"event": "site_updated"}).json()
    assert len(site) == 1 and site[0]["subject"] == "plant" and site[0]["actor"] == "user:admin"
    assert site[0]["detail"] == {"changes": {"name": {"from": "plant", "to": "Plant"}, "country": {"from": None, "to": "DE"}}}
    asset = client.get("/api/v1/audit", params={"event": "asset_updated"}).json()
    assert len(asset) == 1 and asset[0]["subject"] == "a"
    assert asset[0]["detail"]["changes"] == {
        "rated_power_kw": {"from": None, "to": 90.0}, "attributes": {"from": "{}", "to": '{"line": 1}'},
    }
    readings = client.get("/api/v1/audit", params={"event": "readings_deleted"}).json()
    assert len(readings) == 1 and readings[0]["subject"] == "a" and readings[0]["client_ip"]
    assert readings[0]["detail"] == {
        "start": "2024-01-01T00:00:00+00:00", "end": "2024-01-02T00:00:00+00:00", "quantity": "energy", "deleted": 0,
    }


def test_unknown_fields_on_registration_are_named_like_on_patch(client: TestClient) -> None:
    typo = client.post("/api/v1/sites", json={"id": "s1", "name": "S", "timezone": "Europe/Berlin", "countyr": "DE"})
    assert typo.status_code == 422 and typo.json()["field"] == "countyr"
    assert client.get("/api/v1/sites/s1").status_code == 404
    _site(client)
    body = {"id": "m1", "site_id": "plant", "name": "M", "kind": "meter", "rated_power": 50}
    wrong = client.post("/api/v1/assets", json=body)
    assert wrong.status_code == 422 and wrong.json()["field"] == "rated_power"


def test_malformed_or_missing_json_names_the_body(client: TestClient) -> None:
    broken = client.post("/api/v1/sites", content=b'{"id": "s1",', headers={"Content-Type": "application/json"})
    assert broken.status_code == 422 and broken.json()["field"] == "body"
    empty = client.post("/api/v1/sites", headers={"Content-Type": "application/json"})
    assert empty.status_code == 422 and empty.json()["field"] == "body"


def test_deeply_nested_attributes_are_refused_before_anything_is_stored(client: TestClient) -> None:
    deep: object = {}
    for _ in range(40):
        deep = {"x": [deep]}
    site = client.post("/api/v1/sites", json={"id": "deep", "name": "d", "timezone": "UTC", "attributes": deep})
    assert site.status_code == 422 and site.json()["field"] == "attributes"
    assert client.get("/api/v1/sites/deep").status_code == 404
    client.post("/api/v1/sites", json={"id": "shallow", "name": "s", "timezone": "UTC"})
    client.post("/api/v1/assets", json={"id": "a-deep", "site_id": "shallow", "name": "a", "kind": "meter"})
    patched = client.patch("/api/v1/assets/a-deep", json={"attributes": deep})
    assert patched.status_code == 422 and patched.json()["field"] == "attributes"
    assert client.get("/api/v1/assets").status_code == 200 and client.get("/api/v1/sites").status_code == 200
