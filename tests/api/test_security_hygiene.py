"""Request hygiene: body size (413), API_TIMEOUT (504), security headers, CORS, start-up refusal."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anyio
import pytest
from fastapi.testclient import TestClient

from digitaltwin.api.app import create_app
from digitaltwin.config import PLACEHOLDER_SECRET, Settings
from digitaltwin.security.errors import InsecureConfigurationError
from digitaltwin.security.roles import Role
from digitaltwin.storage.repository import Repository
from tests.api.conftest import headers_for


def test_body_over_the_limit_is_413_without_reading_it(client: TestClient) -> None:
    limit = client.app.state.dt.settings.max_request_body_bytes  # type: ignore[attr-defined]
    assert limit == 10 * 1024 * 1024
    chunk = 1024 * 1024
    delivered = 0
    sent: list[dict] = []

    async def receive() -> dict:  # a 64 MiB chunked upload (no Content-Length), 1 MiB per ASGI message
        nonlocal delivered
        delivered += 1
        return {"type": "http.request", "body": b"[" + b" " * (chunk - 1), "more_body": delivered < 64}

    async def send(message: dict) -> None:
        sent.append(message)

    headers = [(b"content-type", b"application/json"), (b"authorization", client.headers["authorization"].encode())]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/api/v1/readings", "raw_path": b"/api/v1/readings", "root_path": "", "query_string": b"",
        "headers": headers, "client": ("198.51.100.20", 40000), "server": ("testserver", 80),
        "state": {}, "extensions": {},
    }
    client.portal.call(client.app, scope, receive, send)  # type: ignore[union-attr]
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413
    assert (b"content-type", b"application/json") in sent[0]["headers"]
    assert json.loads(sent[1]["body"]) == {"detail": f"request body larger than {limit} bytes", "field": "body"}
    assert delivered == limit // chunk + 1  # reading stopped at the first chunk past the limit
    declared = client.post(
        "/api/v1/readings", content=b"[]", headers={"Content-Type": "application/json", "Content-Length": str(limit + 1)}
    )
    assert declared.status_code == 413  # refused from the header alone
    assert declared.json() == {"detail": f"request body larger than {limit} bytes", "field": "body"}
    assert client.post("/api/v1/readings", json=[]).status_code != 413  # under the limit: read as usual


@pytest.mark.parametrize("path", ["/api/v1/sites", "/api/v1/predict", "/api/v1/assets/x/train"])
def test_chunked_body_over_the_limit_on_a_typed_route_is_a_json_413(client: TestClient, path: str) -> None:
    """FastAPI parses these bodies itself and turned any error while reading into a 400."""
    limit = client.app.state.dt.settings.max_request_body_bytes  # type: ignore[attr-defined]
    chunk = 1024 * 1024
    delivered = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal delivered
        delivered += 1
        return {"type": "http.request", "body": b" " * chunk, "more_body": delivered < 64}

    async def send(message: dict) -> None:
        sent.append(message)

    headers = [(b"content-type", b"application/json"), (b"authorization", client.headers["authorization"].encode())]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": headers, "client": ("198.51.100.21", 40000), "server": ("testserver", 80),
        "state": {}, "extensions": {},
    }
    client.portal.call(client.app, scope, receive, send)  # type: ignore[union-attr]
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"]) == {"detail": f"request body larger than {limit} bytes", "field": "body"}
    assert delivered == limit // chunk + 1


@pytest.fixture
def slow_app(settings: Settings, repo: Repository) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"api_timeout": 0.5}))
    never = anyio.Event()

    @app.get("/api/v1/test-hangs")
    async def hangs() -> dict[str, str]:
        await never.wait()  # never set: only the timeout ends this request
        return {"status": "unreachable"}

    @app.get("/api/v1/test-quick")
    async def quick() -> dict[str, str]:
        return {"status": "ok"}

    with TestClient(app) as test_client:
        test_client.headers.update(headers_for(test_client, Role.VIEWER))
        yield test_client


def test_handler_past_api_timeout_is_504(slow_app: TestClient) -> None:
    response = slow_app.get("/api/v1/test-hangs")
    assert response.status_code == 504
    assert response.json() == {"detail": "request took longer than 0.5 s", "field": None}
    assert slow_app.get("/api/v1/test-quick").json() == {"status": "ok"}
    # Routes added like this one are protected too.
    assert slow_app.get("/api/v1/test-quick", headers={"Authorization": ""}).status_code == 401


def test_a_bug_is_a_json_500_without_the_traceback(settings: Settings, repo: Repository) -> None:
    app = create_app(settings)

    @app.get("/api/v1/test-bug")
    async def bug() -> dict[str, str]:
        raise RuntimeError("secret internals /etc/passwd")

    with TestClient(app, raise_server_exceptions=False) as test_client:
        test_client.headers.update(headers_for(test_client, Role.VIEWER))
        response = test_client.get("/api/v1/test-bug")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": "internal server error", "field": None}


def test_security_headers(client: TestClient) -> None:
    response = client.get("/api/v1/sites")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    docs_csp = client.get("/docs").headers["content-security-policy"]  # Swagger UI: same-origin scripts with a nonce
    assert "script-src 'self' 'nonce-" in docs_csp and "http" not in docs_csp
    assert "strict-transport-security" not in response.headers  # plain HTTP
    https = TestClient(client.app, base_url="https://testserver")
    https.headers.update(client.headers)
    assert https.get("/healthz").headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"


def test_cors_origins_from_settings(settings: Settings, repo: Repository) -> None:
    allowed = "https://dashboard.example.com"
    with TestClient(create_app(settings.model_copy(update={"cors_origins": [allowed]}))) as test_client:
        preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "Authorization"}
        ok = test_client.options("/api/v1/sites", headers={"Origin": allowed, **preflight})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == allowed
        evil = test_client.options("/api/v1/sites", headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in evil.headers
    with TestClient(create_app(settings)) as test_client:  # no CORS_ORIGINS: no CORS at all
        answer = test_client.get("/healthz", headers={"Origin": allowed})
        assert "access-control-allow-origin" not in answer.headers


@pytest.mark.parametrize("key", [None, "", "short", PLACEHOLDER_SECRET])
@pytest.mark.parametrize("environment", ["production", "test"])
def test_refuses_to_start_outside_development_with_weak_key(settings: Settings, key: str | None, environment: str) -> None:
    bad = settings.model_copy(update={"secret_key": key, "environment": environment})
    with pytest.raises(InsecureConfigurationError, match="SECRET_KEY"):
        create_app(bad)


def test_development_never_signs_with_the_placeholder(settings: Settings, repo: Repository) -> None:
    dev = settings.model_copy(update={"secret_key": PLACEHOLDER_SECRET, "environment": "development"})
    with TestClient(create_app(dev)) as test_client:
        key = test_client.app.state.dt.security.codec.keys.current  # type: ignore[attr-defined]
        assert key != PLACEHOLDER_SECRET and len(key) >= 32
        key_file = dev.data_dir / ".secret_key"
        assert key_file.read_text() == key and key_file.stat().st_mode & 0o777 == 0o600


def test_nul_characters_in_path_or_query_are_422(client: TestClient) -> None:
    query = client.get("/api/v1/assets/x/readings", params={"quantity": "po\x00wer"})
    assert query.status_code == 422 and query.json() == {"detail": "NUL characters are not allowed", "field": "quantity"}
    path = client.get("/api/v1/sites/a%00b")
    assert path.status_code == 422 and path.json()["field"] == "path"


def test_nul_characters_in_any_request_body_text_are_422_naming_the_field_on_both_backends(client: TestClient) -> None:
    """Stored on SQLite, refused by PostgreSQL: refused before storage on both, naming the body's field."""
    assert client.post("/api/v1/sites", json={"id": "nul-s", "name": "N", "timezone": "UTC"}).status_code == 201
    site = client.post("/api/v1/sites", json={"id": "nul-t", "name": "N", "timezone": "UTC", "attributes": {"tags": ["a", "b\x00"]}})
    assert site.status_code == 422 and site.json()["field"] == "attributes.tags.1"
    patch = client.patch("/api/v1/sites/nul-s", json={"name": "bad\x00name"})
    assert patch.status_code == 422 and patch.json()["field"] == "name"
    login = client.post("/api/v1/auth/token", json={"username": "ad\x00min", "password": "x"})
    assert login.status_code == 422 and login.json()["field"] == "username"
    assert client.get("/api/v1/sites/nul-s").json()["name"] == "N"
