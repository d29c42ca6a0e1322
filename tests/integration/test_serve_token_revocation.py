"""Access tokens stop working at once in every worker of ``digitaltwin serve --workers 2`` after
logout, a password change (through the API and through the CLI, another process) and deactivation,
although each worker answers the session check of a warm token from its per-process cache
(:mod:`digitaltwin.security.principal_cache`).

PostgreSQL with Redis (the counter in Redis) and SQLite (the counter in a file of DATA_DIR).
Each check sends 16 requests on fresh connections, so both workers take part.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from digitaltwin.config import Settings
from digitaltwin.storage.repository import Repository
from tests.integration.mqtt_support import child_env
from tests.serve_support import serving

PASSWORD = "correct horse battery staple 1"
ROUNDS = 16


@pytest.fixture
def backend_settings(settings: Settings) -> Settings:
    if settings.database_url:
        redis_url = os.environ.get("DT_TEST_REDIS_URL")
        if not redis_url:
            pytest.skip("the PostgreSQL variant needs Redis (DT_TEST_REDIS_URL)")
        return settings.model_copy(update={"redis_url": redis_url, "rate_limit_key_prefix": f"dt-test-{os.getpid()}-{time.time_ns()}"})
    return settings


def _env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    env = child_env(settings, tmp_path / "logs")
    env.update(API_RATE_LIMIT="100000", MQTT_BROKER="", RATE_LIMIT_KEY_PREFIX=settings.rate_limit_key_prefix)
    return env


def _cli(env: dict[str, str], *args: str, password: str | None = None) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "digitaltwin.cli", *args], env=env, input=password, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def server(backend_settings: Settings, repo: Repository, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    env = _env(backend_settings, tmp_path)
    _cli(env, "users", "create", "alice", "--role", "admin", password=PASSWORD + "\n")
    _cli(env, "users", "create", "bob", "--role", "admin", password=PASSWORD + "\n")
    with serving(env, tmp_path / "server.out", "--workers", "2") as (base, _):
        yield base, env


def login(base: str, username: str, password: str = PASSWORD) -> dict[str, str]:
    response = httpx.post(base + "/api/v1/auth/token", json={"username": username, "password": password}, timeout=10)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def statuses(base: str, headers: dict[str, str]) -> set[int]:
    """Status codes of ROUNDS requests, each on a new connection (spread over the workers)."""
    return {httpx.get(base + "/api/v1/sites", headers=headers, timeout=10).status_code for _ in range(ROUNDS)}


def test_tokens_stop_at_once_in_every_worker(server: tuple[str, dict[str, str]]) -> None:
    base, env = server
    admin = login(base, "bob")

    token = login(base, "alice")
    assert statuses(base, token) == {200}  # warm in both workers
    assert httpx.post(base + "/api/v1/auth/logout", headers=token, timeout=10).status_code == 204
    assert statuses(base, token) == {401}

    other, current = login(base, "alice"), login(base, "alice")
    assert statuses(base, other) == {200} and statuses(base, current) == {200}
    new_password = PASSWORD + " changed"
    body = {"current_password": PASSWORD, "new_password": new_password}
    assert httpx.post(base + "/api/v1/auth/password", headers=current, json=body, timeout=10).status_code == 204
    assert statuses(base, other) == {401}  # the other sessions end

    token = login(base, "alice", new_password)
    assert statuses(base, token) == {200}
    _cli(env, "users", "set-password", "alice", password=PASSWORD + "\n")  # another process
    assert statuses(base, token) == {401}

    token = login(base, "alice")
    assert statuses(base, token) == {200}
    assert httpx.patch(base + "/api/v1/users/alice", headers=admin, json={"active": False}, timeout=10).status_code == 200
    assert statuses(base, token) == {401}
    assert statuses(base, admin) == {200}
