"""Health, readiness (real Redis and Mosquitto), metrics, docs, and the query routes on real data."""

from __future__ import annotations

import json
import os
import socket
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from digitaltwin.api.app import create_app
from digitaltwin.config import Settings
from digitaltwin.services import demo
from digitaltwin.storage.repository import Repository
from tests.conftest import STEEL_CSV


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1):
            return True
    except OSError:
        return False


def _service_url(variable: str, default: str, port: int, name: str) -> str:
    url = os.environ.get(variable, default)
    if not _reachable(url, port):
        if os.environ.get("DT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{name} required but unreachable at {url}")
        pytest.skip(f"{name} unreachable at {url}")
    return url


@pytest.fixture
def redis_url() -> str:
    return _service_url("DT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0", 6379, "Redis")


@pytest.fixture
def mqtt_broker() -> str:
    return _service_url("DT_TEST_MQTT_BROKER", "mqtt://127.0.0.1:1883", 1883, "Mosquitto")


def _strict(body: bytes) -> object:
    def reject(token: str) -> None:
        raise AssertionError(f"non-strict JSON token {token}")

    return json.loads(body, parse_constant=reject)


def test_health_docs_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/docs").status_code == 200
    assert client.get("/redoc").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/v1/sites", "/api/v1/assets/{asset_id}/energy", "/api/v1/readings", "/api/v1/assets/{asset_id}/forecast"):
        assert path in paths


def test_readyz_checks_database_and_models(client: TestClient) -> None:
    body = client.get("/readyz").json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] and body["checks"]["models"]["ok"]


def test_readyz_with_real_redis_and_mosquitto(settings: Settings, repo: Repository, redis_url: str, mqtt_broker: str) -> None:
    good = settings.model_copy(update={"redis_url": redis_url, "mqtt_broker": mqtt_broker})
    with TestClient(create_app(good)) as client:
        response = client.get("/readyz")
        assert response.status_code == 200, response.text
        assert set(response.json()["checks"]) == {"database", "redis", "mqtt", "models"}


def test_readyz_names_failing_dependencies(settings: Settings, repo: Repository) -> None:
    bad = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0", "mqtt_broker": "mqtt://127.0.0.1:1"})
    with TestClient(create_app(bad)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["redis", "mqtt"]
    assert response.json()["checks"]["database"]["ok"] is True


def test_metrics_use_route_templates(client: TestClient) -> None:
    client.get("/api/v1/assets/nope")
    text = client.get("/metrics").text
    assert 'http_requests_total{method="GET",route="/api/v1/assets/{asset_id}",status="404"} 1.0' in text
    for name in ("http_request_duration_seconds_bucket", "system_cpu_usage_percent", "system_memory_usage_bytes"):
        assert name in text
    assert "/api/v1/assets/nope" not in text


def test_unknown_asset_is_404_naming_field(client: TestClient) -> None:
    response = client.get("/api/v1/assets/nope/energy", params={"start": "2018-01-01T00:00:00Z", "end": "2018-01-02T00:00:00Z"})
    assert response.status_code == 404
    assert response.json()["field"] == "asset_id"


def test_steel_queries_paging_and_energy(client: TestClient, repo: Repository) -> None:
    demo.setup_and_import(repo, STEEL_CSV)
    assert [s["id"] for s in client.get("/api/v1/sites").json()] == ["daewoo-steel"]
    assert {a["id"] for a in client.get("/api/v1/assets").json()} == {"steel-plant", "steel-plant-live"}
    detail = client.get("/api/v1/assets/steel-plant").json()
    assert detail["series"][0]["quantity"] == "energy" and detail["series"][0]["interval_seconds"] == 900
    assert detail["latest"][0]["ts"] == "2018-12-31T14:45:00Z"

    first = client.get("/api/v1/assets/steel-plant/readings", params={"limit": 10000})
    assert first.status_code == 200
    page = first.json()
    assert len(page["readings"]) == 10000 and page["next_cursor"]
    seen = [r["ts"] for r in page["readings"]]
    cursor = page["next_cursor"]
    while cursor:
        page = client.get("/api/v1/assets/steel-plant/readings", params={"limit": 10000, "cursor": cursor}).json()
        seen += [r["ts"] for r in page["readings"]]
        cursor = page["next_cursor"]
    assert len(seen) == 35040 and len(set(seen)) == 35040 and seen == sorted(seen)
    assert client.get("/api/v1/assets/steel-plant/readings").json()["readings"].__len__() == 1000
    assert client.get("/api/v1/assets/steel-plant/readings", params={"cursor": "garbage"}).json()["field"] == "cursor"

    response = client.get(
        "/api/v1/assets/steel-plant/energy",
        params={"start": "2018-01-01T00:00:00+09:00", "end": "2019-01-01T00:00:00+09:00", "bucket": "month"},
    )
    body = _strict(response.content)
    assert body["total_energy_kwh"] == pytest.approx(959_636.71, abs=1e-6)
    assert body["buckets"][0]["start_local"] == "2018-01-01T00:00:00+09:00"
    assert body["buckets"][0]["energy_kwh"] == pytest.approx(126_238.29, abs=1e-6)
    assert max(b["peak_power_kw"] for b in body["buckets"]) == pytest.approx(628.72)

    empty = client.get(
        "/api/v1/assets/steel-plant/energy",
        params={"start": "2020-01-01T00:00:00+09:00", "end": "2020-01-03T00:00:00+09:00", "bucket": "day"},
    )
    rows = _strict(empty.content)["buckets"]
    assert [r["energy_kwh"] for r in rows] == [None, None]
    bad = client.get("/api/v1/assets/steel-plant/energy", params={"start": "2018-01-02", "end": "2018-01-03"})
    assert bad.status_code == 422 and bad.json()["field"] == "start"
