"""Hardening of the real ``digitaltwin serve`` process (embedded SQLite, real Redis): no
trailing-slash redirect built from the Host header, private database and log files, /docs and
/redoc without a CDN under a CSP, and live streams sharing one Redis pub/sub connection with a
cap per caller."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_SECRET_KEY
from tests.serve_support import serving

VIEWER_PASSWORD = "viewer password " + secrets.token_hex(4)
STREAM_CAP = 12


@dataclass(frozen=True)
class Served:
    base: str
    folder: Path
    redis_url: str
    prefix: str
    token: str


def _redis_url() -> str:
    import redis

    url = os.environ.get("DT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("DT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"Redis required: {exc}")
        pytest.skip(f"Redis unreachable at {url}: {exc}")
    return url


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``digitaltwin serve`` on a fresh DATA_DIR and LOG_DIR (created by the service), with Redis,
    a viewer account, and site s / asset m1."""
    folder = tmp_path_factory.mktemp("serve")
    redis_url, prefix = _redis_url(), f"test-{uuid.uuid4().hex[:10]}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "PROMETHEUS_", "REDIS_", "MQTT_", "STREAM_"))},
        "ENVIRONMENT": "test", "SECRET_KEY": TEST_SECRET_KEY, "DATA_DIR": str(folder / "data"),
        "MODELS_DIR": str(folder / "models"), "LOG_DIR": str(folder / "logs"), "REDIS_URL": redis_url,
        "LIVE_STATE_KEY_PREFIX": prefix, "STREAM_MAX_PER_PRINCIPAL": str(STREAM_CAP), "API_RATE_LIMIT": "10000",
    }
    cli = [sys.executable, "-m", "digitaltwin.cli"]
    for args, stdin in (
        (["users", "create", "viewer1", "--role", "viewer"], VIEWER_PASSWORD + "\n"),
        (["sites", "add", "s", "--timezone", "UTC"], None),
        (["assets", "add", "m1", "--site", "s"], None),
    ):
        done = subprocess.run([*cli, *args], env=env, input=stdin, capture_output=True, text=True, cwd=folder, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    with serving(env, folder / "server.out", cwd=folder) as (base, _):
        answer = httpx.post(f"{base}/api/v1/auth/token", data={"username": "viewer1", "password": VIEWER_PASSWORD})
        assert answer.status_code == 200, answer.text
        yield Served(base, folder, redis_url, prefix, answer.json()["access_token"])


def test_no_redirect_is_built_from_the_host_header(served: Served) -> None:
    headers = {"Host": "evil.example", "X-Forwarded-Proto": "https", "Authorization": f"Bearer {served.token}"}
    for path in ("/api/v1/sites/", "/docs/", "/healthz/"):
        response = httpx.get(served.base + path, headers=headers, follow_redirects=False)
        assert response.status_code == 404, (path, response.status_code, response.headers)
        assert "location" not in response.headers and "evil.example" not in response.text
    assert httpx.get(f"{served.base}/api/v1/sites", headers=headers).status_code == 200


def test_database_and_log_files_are_private(served: Served) -> None:
    httpx.get(f"{served.base}/api/v1/nope")  # something in the access log
    files = [*sorted((served.folder / "data").glob("digitaltwin.db*")), *sorted((served.folder / "logs").glob("*.log"))]
    assert any(p.name == "digitaltwin.db" for p in files) and any(p.name == "access.log" for p in files)
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))
    for folder in (served.folder / "data", served.folder / "logs"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, (folder, oct(folder.stat().st_mode))


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_same_origin_assets(served: Served, page: str) -> None:
    response = httpx.get(served.base + page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    urls = re.findall(r"""(?:src|href|spec-url)=["']([^"']+)["']""", html) + re.findall(r"""url: *["']([^"']+)["']""", html)
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    assert not re.search(r"https?://", html.replace("window.location.origin", "")), "a URL of another origin"
    csp = response.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp)
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "http" not in csp
    inline = re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", html)
    assert all(nonce and f'nonce="{nonce.group(1)}"' in attrs for attrs in inline), inline
    for url in urls:
        if url == "/openapi.json":
            continue
        asset = httpx.get(served.base + url)
        assert asset.status_code == 200 and len(asset.content) > 1000, url
    if page == "/docs":
        assert "swagger-ui-bundle.js" in html
    else:
        assert "redoc.standalone.js" in html


async def _open_streams(served: Served, count: int, *, publish: bool) -> tuple[list[int], int, list[str]]:
    """Open ``count`` streams of m1 at once; returns their statuses, the Redis subscribers of m1's
    channel while they are open, and the first event of each open stream after one publish."""
    import redis.asyncio

    channel = f"{served.prefix}:stream:m1"
    headers = {"Authorization": f"Bearer {served.token}"}
    limits = httpx.Limits(max_connections=count + 5)
    async with httpx.AsyncClient(base_url=served.base, headers=headers, timeout=30, limits=limits) as client:
        contexts = [client.stream("GET", "/api/v1/stream", params={"asset_id": "m1"}) for _ in range(count)]
        responses = await asyncio.gather(*(c.__aenter__() for c in contexts))
        try:
            opened = [(r, r.aiter_lines()) for r in responses if r.status_code == 200]

            async def next_event(lines) -> str:  # noqa: ANN001
                async for line in lines:
                    if line.startswith("event:"):
                        return line.split(":", 1)[1].strip()
                return ""

            assert all([e == "state" for e in await asyncio.gather(*(next_event(lines) for _, lines in opened))])
            r = redis.asyncio.Redis.from_url(served.redis_url)
            subscribers = dict(await r.pubsub_numsub(channel)).get(channel.encode(), 0)
            events: list[str] = []
            if publish:
                item = {"asset_id": "m1", "quantity": "power", "unit": "kW", "ts": "2024-01-01T00:00:00Z", "value": 1.0}
                await r.publish(channel, json.dumps([item]))
                events = await asyncio.gather(*(next_event(lines) for _, lines in opened))
            await r.aclose()
        finally:
            for c in contexts:
                await c.__aexit__(None, None, None)
    return [r.status_code for r in responses], subscribers, events


def test_streams_share_one_redis_connection_and_are_capped_per_caller(served: Served) -> None:
    import redis

    statuses, subscribers, events = asyncio.run(_open_streams(served, STREAM_CAP, publish=True))
    assert statuses == [200] * STREAM_CAP
    assert subscribers == 1  # one pub/sub connection for all streams of the process (was one per stream)
    assert events == ["reading"] * STREAM_CAP  # fanned out to every stream
    statuses, _, _ = asyncio.run(_open_streams(served, STREAM_CAP + 3, publish=False))
    assert sorted(statuses) == [200] * STREAM_CAP + [429] * 3
    # closed streams give their places back and the channel is unsubscribed
    channel = f"{served.prefix}:stream:m1"
    deadline = time.monotonic() + 10
    while dict(redis.Redis.from_url(served.redis_url).pubsub_numsub(channel)).get(channel.encode(), 0) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert dict(redis.Redis.from_url(served.redis_url).pubsub_numsub(channel)).get(channel.encode(), 0) == 0
    statuses, _, _ = asyncio.run(_open_streams(served, STREAM_CAP, publish=False))
    assert statuses == [200] * STREAM_CAP
