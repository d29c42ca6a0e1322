"""Role x route matrix over every operation of the app's own OpenAPI document.

The operations come from ``/openapi.json`` at test time, so a route added by anyone is
covered without editing this file: each must refuse anonymous callers (401), refuse roles
and API key scopes below its stated requirement (403), and let the others through.
"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from digitaltwin.security.roles import Role
from tests.api.conftest import ClientAs, security_of

METHODS = ("get", "post", "put", "patch", "delete")
PRINCIPALS = ("anonymous", "viewer", "operator", "admin", "key:read", "key:ingest")
#: The operations that take no credentials: health and the credential exchanges themselves.
PUBLIC = {
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("post", "/api/v1/auth/token"),
    ("post", "/api/v1/auth/refresh"),
    ("post", "/api/v1/auth/mfa/verify"),
}
#: Spot checks of the policy for routes whose rule the issue names.
KNOWN = {
    ("get", "/api/v1/sites"): ("viewer", "read"),
    ("post", "/api/v1/sites"): ("admin", None),
    ("post", "/api/v1/assets"): ("admin", None),
    ("get", "/api/v1/assets/{asset_id}/energy"): ("viewer", "read"),
    ("post", "/api/v1/readings"): ("operator", "ingest"),
    ("get", "/api/v1/users"): ("admin", None),
    ("post", "/api/v1/users"): ("admin", None),
    ("post", "/api/v1/api-keys"): ("admin", None),
    ("get", "/api/v1/audit"): ("admin", None),
    ("put", "/api/v1/roles/{role}"): ("admin", None),
    ("post", "/api/v1/auth/logout"): ("viewer", None),
}


def _operations(schema: dict) -> list[tuple[str, str, dict]]:
    return [(m, path, op) for path, item in schema["paths"].items() for m, op in item.items() if m in METHODS]


def _headers(client: TestClient, principal: str, users: dict[str, object], keys: dict[str, str]) -> dict[str, str]:
    if principal == "anonymous":
        return {}
    if principal.startswith("key:"):
        return {"X-API-Key": keys[principal]}
    pair = security_of(client).sessions.start(users[principal], amr="pwd")  # type: ignore[arg-type]  # fresh session per call
    return {"Authorization": f"Bearer {pair.access_token}"}


def _allowed(principal: str, role: str, scope: str | None) -> bool:
    if principal.startswith("key:"):
        return scope == principal.removeprefix("key:")
    return principal != "anonymous" and Role(principal).allows(Role(role))


def test_openapi_states_every_operations_access(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    operations = _operations(schema)
    assert len(operations) >= 20
    public = {(m, p) for m, p, op in operations if op["x-required-role"] == "public"}
    assert public == PUBLIC
    for method, path, op in operations:
        assert op["x-required-role"] in ("public", "viewer", "operator", "admin"), (method, path)
        if (method, path) not in PUBLIC:
            assert {"401", "403"} <= set(op["responses"]), (method, path)
            assert op.get("security"), (method, path)
        if path.endswith("/activate"):
            assert op["x-required-role"] == "admin", (method, path)
    for (method, path), (role, scope) in KNOWN.items():
        op = schema["paths"][path][method]
        assert (op["x-required-role"], op["x-api-key-scope"]) == (role, scope), (method, path)
    assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKey"}


def test_role_by_route_matrix(client: TestClient) -> None:
    security = security_of(client)
    users = {r.value: security.accounts.create(f"matrix-{r.value}", "matrix password 123", r, actor="test") for r in Role}
    keys = {
        f"key:{scope}": security.api_keys.create(f"matrix {scope}", [scope], site_id=None, expires_at=None, actor="test")[1]
        for scope in ("read", "ingest")
    }
    schema = client.get("/openapi.json").json()
    failures = []
    checked = 0
    for method, path, op in _operations(schema):
        if (method, path) in PUBLIC:
            continue
        url = re.sub(r"\{[^}]+\}", "matrix-x", path)
        body = {"json": {}} if "requestBody" in op else {}
        for principal in PRINCIPALS:
            response = ClientAs(client, _headers(client, principal, users, keys)).request(method.upper(), url, **body)
            allowed = _allowed(principal, op["x-required-role"], op["x-api-key-scope"])
            expected = "through" if allowed else (401 if principal == "anonymous" else 403)
            got = response.status_code
            ok = got not in (401, 403) and got < 500 if allowed else got == expected
            checked += 1
            if not ok:
                failures.append(f"{method.upper()} {path} as {principal}: expected {expected}, got {got} {response.text[:120]}")
    assert not failures, "\n".join(failures)
    assert checked >= 100


def test_docs_metrics_and_health_are_public(anonymous_client: ClientAs) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json"):
        assert anonymous_client.get(path).status_code == 200, path


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Basic YWRtaW46YWRtaW4=", "Bearer a.b.c", "Bearer " + "x" * 5000])
def test_malformed_credentials_are_401(anonymous_client: ClientAs, header: str) -> None:
    response = anonymous_client.get("/api/v1/sites", headers={"Authorization": header})
    assert response.status_code == 401 and response.json()["field"] == "Authorization"
