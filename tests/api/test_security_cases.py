"""Field cases ../shared/cases/security/ with their exact outcomes."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Iterator

import jwt
import pytest
import redis
from fastapi.testclient import TestClient

import digitaltwin.security.tokens as tokens_module
from digitaltwin.api.app import create_app
from digitaltwin.config import Settings
from digitaltwin.security.errors import InsecureConfigurationError
from digitaltwin.security.roles import Role
from digitaltwin.storage.repository import Repository
from tests.api.conftest import ClientAs, headers_for, security_of


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# --- jwt-algorithm-pinning.md ---------------------------------------------------------------------


def test_jwt_algorithm_is_pinned(client: TestClient, anonymous_client: ClientAs, monkeypatch: pytest.MonkeyPatch) -> None:
    security = security_of(client)
    secret = security.codec.keys.current
    admin = security.store.get_user_by_name("admin")
    pair = security.sessions.start(admin, amr="pwd")  # type: ignore[arg-type]
    valid = pair.access_token
    claims = jwt.decode(valid, secret, algorithms=["HS256"])
    claims["exp"] = int(time.time()) + 600
    t1 = _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(claims) + "."
    t2 = jwt.encode(claims, secret, algorithm="HS512")
    t3 = jwt.encode(claims, "a-different-secret-of-sufficient-length-0123", algorithm="HS256")
    t4 = jwt.encode(claims, secret, algorithm="HS256")

    seen: list[object] = []
    real_decode = jwt.decode

    def spy(*args: object, **kwargs: object) -> object:  # records the arguments, then runs the real PyJWT
        seen.append(kwargs.get("algorithms"))
        return real_decode(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tokens_module.jwt, "decode", spy)
    for token in (t1, t2, t3):
        response = anonymous_client.get("/api/v1/sites", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token
        assert response.json() == {"detail": "invalid token", "field": "Authorization"}
    assert anonymous_client.get("/api/v1/sites", headers={"Authorization": f"Bearer {t4}"}).status_code == 200
    assert anonymous_client.get("/api/v1/sites", headers={"Authorization": f"Bearer {valid}"}).status_code == 200
    assert seen and all(algorithms == ["HS256"] for algorithms in seen)


def test_t5_asymmetric_algorithms_are_refused_at_start(settings: Settings) -> None:
    """T5 applies only to RS256 deployments; the product refuses RS*/ES*/none outright, so there is no public key to confuse."""
    for algorithm in ("RS256", "ES256", "none"):
        with pytest.raises(InsecureConfigurationError, match="JWT_ALGORITHM"):
            create_app(settings.model_copy(update={"jwt_algorithm": algorithm}))


# --- rate-limit-behind-proxy.md -------------------------------------------------------------------


@pytest.fixture(params=["redis", "memory"])
def limited(request: pytest.FixtureRequest, settings: Settings, repo: Repository) -> Iterator[tuple[Settings, redis.Redis | None]]:
    """Settings with the case's limit (5/min, trusted proxy 10.0.0.2), on real Redis or in memory."""
    prefix = f"dt-test-{uuid.uuid4().hex[:8]}"
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    case = settings.model_copy(
        update={"api_rate_limit": 5, "trusted_proxies": ["10.0.0.2"], "redis_url": url, "rate_limit_key_prefix": prefix}
    )
    client = redis.Redis.from_url(url) if url else None
    yield case, client
    if client is not None:
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        client.close()


def _run(settings: Settings, peer: str, forwarded: list[str]) -> tuple[list[int], int | None]:
    """Send one GET per X-Forwarded-For value from ``peer``; statuses and distinct limiter keys (Redis only)."""
    with TestClient(create_app(settings), client=(peer, 40000)) as test_client:
        headers = headers_for(test_client, Role.VIEWER)
        statuses = [
            test_client.get("/api/v1/sites", headers={**headers, "X-Forwarded-For": xff}).status_code for xff in forwarded
        ]
    return statuses, None


def _keys(client: redis.Redis | None, settings: Settings) -> int | None:
    if client is None:
        return None
    return sum(1 for _ in client.scan_iter(f"{settings.rate_limit_key_prefix}:*LIMITER/api/*"))


def test_case_a_direct_client_cannot_choose_its_key(limited: tuple[Settings, redis.Redis | None]) -> None:
    settings, store = limited
    statuses, _ = _run(settings, "203.0.113.7", [f"{n}.{n}.{n}.{n}" for n in range(1, 7)])
    assert statuses == [200, 200, 200, 200, 200, 429]
    if store is not None:
        assert _keys(store, settings) == 1
        assert any(b"203.0.113.7" in k for k in store.scan_iter(f"{settings.rate_limit_key_prefix}:*"))


def test_case_b_clients_behind_the_proxy_have_their_own_buckets(limited: tuple[Settings, redis.Redis | None]) -> None:
    settings, store = limited
    statuses, _ = _run(settings, "10.0.0.2", ["198.51.100.1"] * 5 + ["198.51.100.2"] * 5 + ["198.51.100.1"])
    assert statuses == [200] * 10 + [429]
    if store is not None:
        assert _keys(store, settings) == 2


def test_case_c_prepended_fake_hops_are_ignored(limited: tuple[Settings, redis.Redis | None]) -> None:
    settings, store = limited
    statuses, _ = _run(settings, "10.0.0.2", [f"9.9.9.{n}, 198.51.100.3" for n in range(1, 7)])
    assert statuses == [200, 200, 200, 200, 200, 429]
    if store is not None:
        assert _keys(store, settings) == 1
        assert any(b"198.51.100.3" in k for k in store.scan_iter(f"{settings.rate_limit_key_prefix}:*"))


def test_429_carries_retry_after_and_ratelimit_headers(limited: tuple[Settings, redis.Redis | None]) -> None:
    settings, _ = limited
    with TestClient(create_app(settings), client=("203.0.113.9", 40000)) as test_client:
        headers = headers_for(test_client, Role.VIEWER)
        first = test_client.get("/api/v1/sites", headers=headers)
        assert first.headers["ratelimit-limit"] == "5" and first.headers["ratelimit-remaining"] == "4"
        assert first.headers["ratelimit-policy"] == "5;w=60"
        for _ in range(4):
            test_client.get("/api/v1/sites", headers=headers)
        refused = test_client.get("/api/v1/sites", headers=headers)
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60 and refused.headers["ratelimit-remaining"] == "0"
        assert refused.json()["field"] is None and "rate limit" in refused.json()["detail"]
        # Probes and scrapes are never limited.
        assert test_client.get("/healthz").status_code == 200 and test_client.get("/metrics").status_code == 200
        assert 'rate_limited_total{limit="api"} 1.0' in test_client.get("/metrics").text


def test_redis_down_keeps_serving_in_memory_and_counts(settings: Settings, repo: Repository) -> None:
    down = settings.model_copy(update={"api_rate_limit": 3, "redis_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(down), client=("203.0.113.10", 40000)) as test_client:
        headers = headers_for(test_client, Role.VIEWER)
        statuses = [test_client.get("/api/v1/sites", headers=headers).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]  # still limited, per process
        metrics = test_client.get("/metrics").text
        errors = re.search(r"^rate_limit_backend_errors_total ([0-9.]+)$", metrics, re.MULTILINE)
        assert errors is not None and float(errors.group(1)) >= 1
