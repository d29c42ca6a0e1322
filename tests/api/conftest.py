"""An app on the parametrised backend, served in-process by Starlette's TestClient.

Every route but health, metrics and the docs needs authentication, so:

* ``client`` speaks as an admin (an ``Authorization: Bearer`` default header);
* ``anonymous_client``, ``viewer_client`` and ``operator_client`` talk to the *same* app as
  nobody, a viewer and an operator;
* :func:`headers_for` makes the headers of a fresh user of any role.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from digitaltwin.api.app import create_app
from digitaltwin.config import Settings
from digitaltwin.security.roles import Role
from digitaltwin.security.service import SecurityService
from digitaltwin.storage.repository import Repository

_AUTH_HEADERS = ("authorization", "x-api-key")
FINAL_STATES = ("succeeded", "failed", "cancelled")


def wait_job(client: TestClient | ClientAs, response: httpx.Response, *, timeout_s: float = 600.0) -> dict[str, Any]:
    """The job a 202 answer submitted, once it ended (polls its ``Location``; the app's runner runs it)."""
    assert response.status_code == 202, response.text
    url = response.headers["Location"]
    assert url == response.json()["url"] == f"/api/v1/jobs/{response.json()['job_id']}"
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get(url).json()
        if job["state"] in FINAL_STATES:
            return job
        assert time.monotonic() < deadline, f"job still {job['state']}: {job}"
        time.sleep(0.05)


def train(client: TestClient | ClientAs, asset_id: str, **body: Any) -> dict[str, Any]:
    """Train through the job API; the answer the synchronous route gave: ``model`` (its detail),
    ``promoted``, ``reason``, ``previous_champion``, ``backtest_id``."""
    job = wait_job(client, client.post(f"/api/v1/assets/{asset_id}/train", json=body))
    assert job["state"] == "succeeded", job
    return {**job["result"], "model": client.get(job["result_url"]).json()}


def cache_lookups(client: TestClient, metric: str) -> dict[str, float]:
    """Hits and misses counted so far by a cache's ``metric`` (a counter labelled ``result``), from ``/metrics``."""
    counts = {"hit": 0.0, "miss": 0.0}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(metric + "{"):
            counts[line.split('result="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
    return counts


def security_of(client: TestClient) -> SecurityService:
    """The security service of the app behind ``client`` (its lifespan must be running)."""
    return client.app.state.dt.security  # type: ignore[attr-defined]


def headers_for(client: TestClient, role: Role | str, *, username: str | None = None, password: str | None = None) -> dict[str, str]:
    """Create a user of ``role`` (random name and password unless given) and return its bearer header."""
    security = security_of(client)
    user = security.accounts.create(
        username or f"{Role(role).value}-{secrets.token_hex(4)}", password or secrets.token_urlsafe(18), Role(role), actor="test"
    )
    pair = security.sessions.start(user, amr="pwd")
    return {"Authorization": f"Bearer {pair.access_token}"}


class ClientAs:
    """``client`` speaking with other credentials (or none): the app's auth headers are replaced per request.

    Headers passed to a call win over both.
    """

    def __init__(self, client: TestClient, headers: dict[str, str] | None) -> None:
        self.client = client
        self.auth_headers = headers or {}

    def request(self, method: str, url: str, *, headers: dict[str, str] | None = None, follow_redirects: bool = True, **kwargs: Any) -> httpx.Response:
        request = self.client.build_request(method, url, **kwargs)
        for name in _AUTH_HEADERS:
            request.headers.pop(name, None)
        request.headers.update(self.auth_headers)
        request.headers.update(headers or {})
        return self.client.send(request, follow_redirects=follow_redirects)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)


@pytest.fixture
def client(settings: Settings, repo: Repository) -> Iterator[TestClient]:
    """A client, authenticated as an admin, of an app on the same (migrated, emptied) database as ``repo``."""
    with TestClient(create_app(settings)) as test_client:
        test_client.headers.update(headers_for(test_client, Role.ADMIN, username="admin"))
        yield test_client


@pytest.fixture
def anonymous_client(client: TestClient) -> ClientAs:
    """The same app, without credentials."""
    return ClientAs(client, None)


@pytest.fixture
def viewer_client(client: TestClient) -> ClientAs:
    """The same app, as a viewer."""
    return ClientAs(client, headers_for(client, Role.VIEWER))


@pytest.fixture
def operator_client(client: TestClient) -> ClientAs:
    """The same app, as an operator."""
    return ClientAs(client, headers_for(client, Role.OPERATOR))
