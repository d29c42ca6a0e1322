"""Findings of the security review of authentication, on the real ``digitaltwin serve`` process.

* Client addresses: uvicorn's proxy-header rewriting let any client choose its rate-limit key
  and audited address with ``X-Forwarded-For``; now only ``TRUSTED_PROXIES`` may set it.
* Login throttling: 10 failures per account locked everyone out of it; now failures count per
  (account, address) with growing delays, a second factor gets through, admins unlock.
* Login flood: a stricter per-client limit on the login routes and a bounded argon2 queue.
* An audit write that fails (a long forwarded address on PostgreSQL) no longer skips the failure
  count nor turns a 401 into a 500.
* Low items: single-use MFA challenges, ``no-store`` on secrets, deeply nested login bodies, a
  password typed as the user name kept out of the audit and the logs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyotp
import pytest
import redis
from sqlalchemy import text

from digitaltwin.config import Settings
from digitaltwin.security.roles import Role
from digitaltwin.security.service import SecurityService
from digitaltwin.security.store import AuditRecord
from digitaltwin.storage.repository import Repository
from tests.api.serve_process import serve
from tests.integration.mqtt_support import child_env

pytestmark = pytest.mark.slow  # each test starts a real serve process

PASSWORD = "correct horse battery staple"
WRONG = "wrong horse battery staple"
TOKEN = "/api/v1/auth/token"


@pytest.fixture
def security(settings: Settings, repo: Repository) -> SecurityService:
    return SecurityService(settings, repo.engine)


def _audit(security: SecurityService, event: str) -> list[AuditRecord]:
    return security.store.list_audit(limit=100, event=event)


def _login(base: str, username: str, password: str, xff: str | None = None, **extra: str) -> httpx.Response:
    headers = {"X-Forwarded-For": xff} if xff else {}
    return httpx.post(f"{base}{TOKEN}", json={"username": username, "password": password, **extra}, headers=headers, timeout=30)


def _redis_or_none() -> str | None:
    import os

    url = os.environ.get("DT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return None
    return url


# --- client addresses ------------------------------------------------------------------------------


def test_a_direct_client_cannot_choose_its_address(settings: Settings, security: SecurityService, tmp_path: Path) -> None:
    """The reproduction: default serve, no TRUSTED_PROXIES, the Dockerfile's FORWARDED_ALLOW_IPS=*."""
    with serve(settings, tmp_path / "direct", API_RATE_LIMIT="10", TRUSTED_PROXIES="", FORWARDED_ALLOW_IPS="*") as served:
        failed = _login(served.base, "nobody", WRONG, xff="198.51.100.66")
        assert failed.status_code == 401
        statuses = [
            httpx.get(f"{served.base}/api/v1/sites", headers={"X-Forwarded-For": f"10.0.{n}.1"}).status_code for n in range(12)
        ]
        assert statuses == [401] * 9 + [429] * 3  # one bucket: 127.0.0.1's
    entries = _audit(security, "login_failed")
    assert [e.client_ip for e in entries] == ["127.0.0.1"]


def test_a_trusted_proxy_s_header_is_walked_from_the_right(settings: Settings, security: SecurityService, tmp_path: Path) -> None:
    url = _redis_or_none()
    prefix = f"dt-test-{uuid.uuid4().hex[:8]}"
    env = {"API_RATE_LIMIT": "3", "TRUSTED_PROXIES": "127.0.0.1/32", "RATE_LIMIT_KEY_PREFIX": prefix}
    if url:
        env["REDIS_URL"] = url
    with serve(settings, tmp_path / "proxied", **env) as served:
        assert _login(served.base, "nobody", WRONG, xff="203.0.113.9, 198.51.100.66").status_code == 401
        assert _login(served.base, "nobody", WRONG, xff="x" * 80).status_code == 401  # garbage: the proxy is the client
        forged = [
            httpx.get(f"{served.base}/api/v1/sites", headers={"X-Forwarded-For": f"9.9.9.{n}, 198.51.100.3"}).status_code
            for n in range(4)
        ]
        assert forged == [401, 401, 401, 429]  # hops the client prepended are never reached
        other = httpx.get(f"{served.base}/api/v1/sites", headers={"X-Forwarded-For": "198.51.100.4"})
        assert other.status_code == 401  # another client behind the proxy: its own bucket
    assert [e.client_ip for e in _audit(security, "login_failed")] == ["127.0.0.1", "198.51.100.66"]
    if url:
        store = redis.Redis.from_url(url)
        keys = [k.decode() for k in store.scan_iter(f"{prefix}:*")]
        for key in keys:
            store.delete(key)
        assert any("198.51.100.3" in k for k in keys) and not any("9.9.9." in k for k in keys), keys


# --- login throttling ----------------------------------------------------------------------------------


def _mfa_user(security: SecurityService, name: str) -> tuple[pyotp.TOTP, list[str]]:
    """A user with MFA: their TOTP and recovery codes."""
    user = security.accounts.create(name, PASSWORD, Role.OPERATOR, actor="test")
    secret = security.mfa.enrol(user).secret
    totp = pyotp.TOTP(secret)
    codes = security.mfa.confirm(security.accounts.get(name), totp.now(), session_id=None)
    return totp, codes


def _next_code(totp: pyotp.TOTP) -> str:
    return totp.generate_otp(totp.timecode(datetime.now(UTC)) + 1)


def test_failures_slow_down_one_address_and_lock_nobody_out(
    settings: Settings, security: SecurityService, tmp_path: Path
) -> None:
    totp, recovery = _mfa_user(security, "ada")
    admin = security.accounts.create("root", PASSWORD, Role.ADMIN, actor="test")
    admin_headers = {"Authorization": f"Bearer {security.sessions.start(admin, amr='pwd').access_token}"}
    attacker, victim = "203.0.113.66", "198.51.100.7"
    env = {"TRUSTED_PROXIES": "127.0.0.1/32", "LOGIN_RATE_LIMIT": "3", "LOGIN_MAX_DELAY_SECONDS": "60", "AUTH_RATE_LIMIT": "1000"}
    with serve(settings, tmp_path / "throttle", **env) as served:
        base = served.base
        assert [_login(base, "ada", WRONG, attacker).status_code for _ in range(3)] == [401, 401, 401]
        delayed = _login(base, "ada", PASSWORD, attacker)  # the right password, too early
        assert delayed.status_code == 429 and delayed.headers["retry-after"] == "1"
        assert delayed.json()["field"] == "username"
        # The owner, elsewhere, is not locked out.
        challenge = _login(base, "ada", PASSWORD, victim).json()
        assert challenge["mfa_required"] is True
        verify = f"{base}/api/v1/auth/mfa/verify"
        done = httpx.post(verify, json={"mfa_token": challenge["mfa_token"], "code": recovery[0]}, headers={"X-Forwarded-For": victim})
        assert done.status_code == 200 and done.headers["cache-control"] == "no-store"
        twice = httpx.post(verify, json={"mfa_token": challenge["mfa_token"], "code": recovery[1]}, headers={"X-Forwarded-For": victim})
        assert twice.status_code == 401 and twice.json()["field"] == "mfa_token"  # a challenge works once
        # The delay grows with each failure.
        time.sleep(1.2)
        assert _login(base, "ada", WRONG, attacker).status_code == 401
        longer = _login(base, "ada", PASSWORD, attacker)
        assert longer.status_code == 429 and longer.headers["retry-after"] == "2"
        # A correct password with a valid second factor gets through the delay; a wrong code does not.
        assert _login(base, "ada", PASSWORD, attacker, otp="000000" if _next_code(totp) != "000000" else "111111").status_code == 429
        through = _login(base, "ada", PASSWORD, attacker, otp=_next_code(totp))
        assert through.status_code == 200 and through.json()["token_type"] == "bearer"
        # An admin ends a delay at once (API), and so does the CLI.
        for _ in range(3):
            _login(base, "ada", WRONG, attacker)
        assert _login(base, "ada", PASSWORD, attacker).status_code == 429
        unlocked = httpx.post(f"{base}/api/v1/users/ada/unlock", headers={**admin_headers, "X-Forwarded-For": victim})
        assert unlocked.status_code == 200 and unlocked.json()["cleared"] >= 1
        assert _login(base, "ada", PASSWORD, attacker).json()["mfa_required"] is True
        for _ in range(4):
            _login(base, "ada", WRONG, attacker)
        cli = subprocess.run(
            [sys.executable, "-m", "digitaltwin.cli", "users", "unlock", "ada"],
            env=child_env(settings, tmp_path / "cli-logs"), capture_output=True, text=True, timeout=120,
        )
        assert cli.returncode == 0, cli.stderr
        assert _login(base, "ada", PASSWORD, attacker).status_code == 200
        assert httpx.post(f"{base}/api/v1/users/nobody/unlock", headers=admin_headers).json()["field"] == "username"
        key = httpx.post(f"{base}/api/v1/api-keys", json={"name": "gw", "scopes": ["ingest"]}, headers=admin_headers)
        assert key.status_code == 201 and key.headers["cache-control"] == "no-store"  # the key is shown this once
    unlocks = _audit(security, "user_unlocked")
    assert [(e.actor, e.subject, e.client_ip) for e in unlocks] == [("cli", "ada", None), ("user:root", "ada", victim)]


# --- login flood -----------------------------------------------------------------------------------------


def test_login_routes_have_a_stricter_limit_and_a_bounded_hash_queue(
    settings: Settings, security: SecurityService, tmp_path: Path
) -> None:
    env = {
        "TRUSTED_PROXIES": "127.0.0.1/32", "AUTH_RATE_LIMIT": "3", "API_RATE_LIMIT": "1000",
        "LOGIN_HASH_CONCURRENCY": "1", "LOGIN_HASH_QUEUE": "1",
    }
    with serve(settings, tmp_path / "flood", **env) as served:
        base = served.base
        one_client = [_login(base, "nobody", WRONG, "198.51.100.20").status_code for _ in range(4)]
        assert one_client == [401, 401, 401, 429]
        assert httpx.get(f"{base}/api/v1/sites", headers={"X-Forwarded-For": "198.51.100.20"}).status_code == 401  # not 429
        mfa = httpx.post(
            f"{base}/api/v1/auth/mfa/verify", json={"mfa_token": "x", "code": "1"}, headers={"X-Forwarded-For": "198.51.100.20"}
        )
        assert mfa.status_code == 429
        # Many clients at once (random names, each its own address): one check runs, one waits, the rest 429 at once.
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda n: _login(base, f"user-{n}", WRONG, f"10.9.{n}.1"), range(16)))
        statuses = sorted(a.status_code for a in answers)
        assert set(statuses) == {401, 429} and statuses.count(401) >= 2, statuses
        busy = [a for a in answers if a.status_code == 429]
        assert all("busy" in a.json()["detail"] and a.headers["retry-after"] == "1" for a in busy)


# --- an audit write that fails ---------------------------------------------------------------------------


def test_an_audit_failure_changes_neither_the_answer_nor_the_count(
    settings: Settings, security: SecurityService, repo: Repository, tmp_path: Path
) -> None:
    env = {"TRUSTED_PROXIES": "127.0.0.1/32", "LOGIN_RATE_LIMIT": "2"}
    with serve(settings, tmp_path / "audit", **env) as served:
        long_hop = "2001:db8:" + "0" * 71  # 80 characters: was stored as the address and overflowed VARCHAR(64)
        assert _login(served.base, "nobody", WRONG, long_hop).status_code == 401
        with repo.engine.begin() as conn:
            conn.execute(text("ALTER TABLE audit_log RENAME TO audit_log_away"))
        try:
            statuses = [_login(served.base, "nobody", WRONG, "198.51.100.30").status_code for _ in range(3)]
        finally:
            with repo.engine.begin() as conn:
                conn.execute(text("ALTER TABLE audit_log_away RENAME TO audit_log"))
        assert statuses == [401, 401, 429]  # counted although not audited
        assert "audit entry not stored" in served.log_text()
    assert [e.client_ip for e in _audit(security, "login_failed")] == ["127.0.0.1"]


# --- low items on the real process ---------------------------------------------------------------------


def test_login_body_depth_and_typed_passwords(settings: Settings, security: SecurityService, tmp_path: Path) -> None:
    with serve(settings, tmp_path / "hygiene") as served:
        deep = httpx.post(f"{served.base}{TOKEN}", content=b"[" * 100_000 + b"]" * 100_000, headers={"Content-Type": "application/json"})
        assert deep.status_code == 422 and deep.json() == {"detail": "body is nested too deeply", "field": "body"}
        typed = "MySecretPassw0rd-typed-as-name"
        assert _login(served.base, typed, WRONG).status_code == 401
        time.sleep(0.5)  # the log handler writes from the request's thread; give the file a moment
        assert typed not in served.log_text() and "RecursionError" not in served.log_text()
    assert [e.subject for e in _audit(security, "login_failed")] == ["(unknown account)"]
    assert all(typed not in json.dumps(e.detail) for e in _audit(security, "login_failed"))
