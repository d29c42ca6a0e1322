"""Login, refresh rotation with reuse detection, logout, MFA flows, account and key management."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from fastapi.testclient import TestClient

from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.security.roles import Role
from digitaltwin.storage.repository import Repository
from tests.api.conftest import ClientAs, security_of

PASSWORD = "correct horse battery staple"


def _user(client: TestClient, name: str, role: Role = Role.OPERATOR) -> None:
    security_of(client).accounts.create(name, PASSWORD, role, actor="test")


def _login(anon: ClientAs, name: str, password: str = PASSWORD, **extra: str) -> dict:
    response = anon.post("/api/v1/auth/token", json={"username": name, "password": password, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _events(client: TestClient, event: str) -> list[dict]:
    return client.get("/api/v1/audit", params={"event": event}).json()


def test_password_form_and_json_login(client: TestClient, anonymous_client: ClientAs) -> None:
    _user(client, "olga")
    form = anonymous_client.post("/api/v1/auth/token", data={"grant_type": "password", "username": "olga", "password": PASSWORD})
    assert form.status_code == 200, form.text
    body = form.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 30 * 60 and body["refresh_token"].startswith("rt_")
    assert form.headers["cache-control"] == "no-store"
    me = anonymous_client.get("/api/v1/auth/me", headers=_bearer(body["access_token"]))
    assert me.json()["username"] == "olga" and me.json()["role"] == "operator"
    claims = security_of(client).codec.decode(body["access_token"], purpose="access")
    assert {"sub", "role", "iat", "exp", "jti", "sid"} <= set(claims) and claims["role"] == "operator"
    assert _login(anonymous_client, "olga")["token_type"] == "bearer"

    wrong = anonymous_client.post("/api/v1/auth/token", json={"username": "olga", "password": "wrong password!!"})
    unknown = anonymous_client.post("/api/v1/auth/token", json={"username": "nobody", "password": "wrong password!!"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "incorrect username or password", "field": "password"}
    assert wrong.headers["www-authenticate"].startswith("Bearer")
    missing = anonymous_client.post("/api/v1/auth/token", json={"username": "olga"})
    assert missing.status_code == 422 and missing.json()["field"] == "password"
    # an unknown account is not named: what was typed there is often a password
    assert {e["subject"] for e in _events(client, "login_failed")} == {"olga", "(unknown account)"}
    assert [e["subject"] for e in _events(client, "login")].count("olga") == 2


def test_refresh_rotates_and_reuse_revokes_the_family(client: TestClient, anonymous_client: ClientAs) -> None:
    _user(client, "rita")
    first = _login(anonymous_client, "rita")
    second = anonymous_client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200, second.text
    pair2 = second.json()
    assert pair2["refresh_token"] != first["refresh_token"] and pair2["access_token"] != first["access_token"]
    third = anonymous_client.post("/api/v1/auth/refresh", json={"refresh_token": pair2["refresh_token"]}).json()
    assert anonymous_client.get("/api/v1/sites", headers=_bearer(third["access_token"])).status_code == 200

    # An attacker replays the first (spent) refresh token: the whole session dies.
    replay = anonymous_client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401 and replay.json()["field"] == "refresh_token"
    assert "revoked" in replay.json()["detail"]
    assert anonymous_client.post("/api/v1/auth/refresh", json={"refresh_token": third["refresh_token"]}).status_code == 401
    for token in (first["access_token"], pair2["access_token"], third["access_token"]):
        assert anonymous_client.get("/api/v1/sites", headers=_bearer(token)).status_code == 401
    reuse = _events(client, "refresh_token_reuse")
    assert len(reuse) == 1 and reuse[0]["subject"] == "rita" and reuse[0]["success"] is False

    # Other sessions of the same user are untouched; garbage is 401 naming the field.
    other = _login(anonymous_client, "rita")
    assert anonymous_client.get("/api/v1/sites", headers=_bearer(other["access_token"])).status_code == 200
    assert anonymous_client.post("/api/v1/auth/refresh", json={"refresh_token": "rt_garbage"}).json()["field"] == "refresh_token"


def test_logout_revokes_access_and_refresh(client: TestClient, anonymous_client: ClientAs) -> None:
    _user(client, "lou", Role.VIEWER)
    pair = _login(anonymous_client, "lou")
    assert anonymous_client.post("/api/v1/auth/logout", headers=_bearer(pair["access_token"])).status_code == 204
    assert anonymous_client.get("/api/v1/sites", headers=_bearer(pair["access_token"])).status_code == 401
    assert anonymous_client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 401
    assert [e["subject"] for e in _events(client, "logout")] == ["lou"]


def test_mfa_enrol_confirm_login_and_recovery_codes(client: TestClient, anonymous_client: ClientAs) -> None:
    _user(client, "mia")
    token = _login(anonymous_client, "mia")["access_token"]
    enrol = anonymous_client.post("/api/v1/auth/mfa/enroll", headers=_bearer(token))
    assert enrol.status_code == 200
    secret = enrol.json()["secret"]
    assert enrol.json()["otpauth_uri"].startswith("otpauth://totp/Digital%20Twin%20Energy:mia?secret=" + secret)
    totp = pyotp.TOTP(secret)
    wrong = anonymous_client.post("/api/v1/auth/mfa/confirm", json={"code": "000000" if totp.now() != "000000" else "111111"}, headers=_bearer(token))
    assert wrong.status_code == 422 and wrong.json()["field"] == "code"
    confirm = anonymous_client.post("/api/v1/auth/mfa/confirm", json={"code": totp.now()}, headers=_bearer(token))
    assert confirm.status_code == 200, confirm.text
    codes = confirm.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10 and all(len(c) == 19 for c in codes)
    stored = security_of(client).store
    user = stored.get_user_by_name("mia")
    assert user is not None and user.mfa_enabled

    # Password alone now gives a challenge, not tokens.
    challenge = _login(anonymous_client, "mia")
    assert challenge["mfa_required"] is True and "access_token" not in challenge
    # The challenge token is not an access token.
    assert anonymous_client.get("/api/v1/sites", headers=_bearer(challenge["mfa_token"])).status_code == 401
    # A recovery code completes the login once; the same code again fails.
    done = anonymous_client.post("/api/v1/auth/mfa/verify", json={"mfa_token": challenge["mfa_token"], "code": codes[0].lower()})
    assert done.status_code == 200, done.text
    assert anonymous_client.get("/api/v1/auth/me", headers=_bearer(done.json()["access_token"])).json()["recovery_codes_left"] == 9
    again = anonymous_client.post("/api/v1/auth/mfa/verify", json={"mfa_token": challenge["mfa_token"], "code": codes[0]})
    assert again.status_code == 401 and again.json()["field"] == "mfa_token"  # a challenge works once
    spent = anonymous_client.post("/api/v1/auth/mfa/verify", json={"mfa_token": _login(anonymous_client, "mia")["mfa_token"], "code": codes[0]})
    assert spent.status_code == 401 and spent.json()["field"] == "code"  # so does a recovery code
    # A TOTP code of a step not used yet works in one step with the password; replaying that code fails.
    step = totp.timecode(datetime.now(UTC)) + 1
    future_code = totp.generate_otp(step)
    one_step = anonymous_client.post("/api/v1/auth/token", json={"username": "mia", "password": PASSWORD, "otp": future_code})
    assert one_step.status_code == 200 and one_step.json()["token_type"] == "bearer"
    replayed = anonymous_client.post("/api/v1/auth/token", json={"username": "mia", "password": PASSWORD, "otp": future_code})
    assert replayed.status_code == 401 and replayed.json()["field"] == "otp"
    # Recovery codes are stored hashed, never in clear.
    from sqlalchemy import select

    from digitaltwin.storage.tables import recovery_codes

    with stored.engine.connect() as conn:
        hashes = [r.code_hash for r in conn.execute(select(recovery_codes))]
    assert len(hashes) == 10 and not any(c.replace("-", "") in h for c in codes for h in hashes)
    events = {e["event"] for e in client.get("/api/v1/audit").json()}
    assert {"mfa_enabled", "recovery_code_used", "mfa_failed"} <= events


def test_admin_requires_mfa_for_a_role(client: TestClient, anonymous_client: ClientAs) -> None:
    _user(client, "otto", Role.OPERATOR)
    token = _login(anonymous_client, "otto")["access_token"]
    assert client.put("/api/v1/roles/operator", json={"mfa_required": True}).json()["mfa_required"] is True
    assert {r["role"]: r["mfa_required"] for r in client.get("/api/v1/roles").json()} == {
        "viewer": False, "operator": True, "admin": False,
    }
    blocked = anonymous_client.get("/api/v1/sites", headers=_bearer(token))
    assert blocked.status_code == 403 and blocked.json()["field"] == "mfa"
    assert anonymous_client.get("/api/v1/auth/me", headers=_bearer(token)).json()["mfa_required"] is True
    secret = anonymous_client.post("/api/v1/auth/mfa/enroll", headers=_bearer(token)).json()["secret"]
    confirmed = anonymous_client.post("/api/v1/auth/mfa/confirm", json={"code": pyotp.TOTP(secret).now()}, headers=_bearer(token))
    assert confirmed.status_code == 200
    assert anonymous_client.get("/api/v1/sites", headers=_bearer(token)).status_code == 200  # this session used MFA now
    # The role requires it, so it cannot be turned off.
    code = pyotp.TOTP(secret).generate_otp(pyotp.TOTP(secret).timecode(datetime.now(UTC)) + 1)
    off = anonymous_client.post("/api/v1/auth/mfa/disable", json={"code": code}, headers=_bearer(token))
    assert off.status_code == 409 and off.json()["field"] == "mfa"
    assert [e["subject"] for e in _events(client, "mfa_policy_changed")] == ["role:operator"]


def test_users_roles_and_last_admin(client: TestClient, viewer_client: ClientAs, anonymous_client: ClientAs) -> None:
    created = client.post("/api/v1/users", json={"username": "vic", "password": PASSWORD, "role": "viewer"})
    assert created.status_code == 201 and created.json()["role"] == "viewer"
    assert client.post("/api/v1/users", json={"username": "vic", "password": PASSWORD}).status_code == 409
    look_alike = client.post("/api/v1/users", json={"username": "Vic", "password": PASSWORD})  # a look-alike in the audit log
    assert look_alike.status_code == 409 and look_alike.json()["field"] == "username" and "'vic'" in look_alike.json()["detail"]
    weak = client.post("/api/v1/users", json={"username": "weak", "password": "short"})
    assert weak.status_code == 422 and weak.json()["field"] == "password"
    assert viewer_client.get("/api/v1/users").status_code == 403
    token = _login(anonymous_client, "vic")["access_token"]
    assert anonymous_client.post("/api/v1/sites", json={"id": "s1", "name": "S", "timezone": "UTC"}, headers=_bearer(token)).status_code == 403
    assert client.patch("/api/v1/users/vic", json={"role": "admin"}).json()["role"] == "admin"
    # The role is read per request: the same token is now an admin's.
    assert anonymous_client.get("/api/v1/users", headers=_bearer(token)).status_code == 200
    assert client.patch("/api/v1/users/vic", json={"active": False}).json()["active"] is False
    assert anonymous_client.get("/api/v1/sites", headers=_bearer(token)).status_code == 401
    last = client.patch("/api/v1/users/admin", json={"role": "viewer"})
    assert last.status_code == 409 and last.json()["field"] == "role"
    changes = _events(client, "role_changed")
    assert changes[0]["subject"] == "vic" and changes[0]["detail"] == {"old": "viewer", "new": "admin"}
    password_hash = security_of(client).store.get_user_by_name("vic").password_hash  # type: ignore[union-attr]
    assert password_hash.startswith("$argon2id$")


def test_api_keys_scopes_sites_and_revocation(client: TestClient, repo: Repository, anonymous_client: ClientAs) -> None:
    repo.create_site(Site("north", "North", "Europe/Berlin"))
    repo.create_site(Site("south", "South", "Europe/Berlin"))
    repo.create_asset(Asset("meter-n", "north", "N", AssetKind.METER))
    repo.create_asset(Asset("meter-s", "south", "S", AssetKind.METER))
    created = client.post("/api/v1/api-keys", json={"name": "gateway north", "scopes": ["ingest"], "site_id": "north"})
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert key.startswith("dtk_") and all("key" not in k for k in client.get("/api/v1/api-keys").json())
    headers = {"X-API-Key": key}
    item = {"ts": "2024-01-01T00:00:00Z", "quantity": "power", "value": 1.0, "unit": "kW"}
    batch = [{**item, "asset_id": "meter-n"}, {**item, "asset_id": "meter-s"}]
    answer = anonymous_client.post("/api/v1/readings", json={"readings": batch}, headers=headers)
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert items[0]["status"] == "accepted" and items[1]["status"] == "rejected" and items[1]["field"] == "asset_id"
    # Ingest scope only: no reads, no admin.
    assert anonymous_client.get("/api/v1/sites", headers=headers).status_code == 403
    assert anonymous_client.get("/api/v1/sites", headers=headers).json()["field"] == "X-API-Key"
    bad = client.post("/api/v1/api-keys", json={"name": "x", "scopes": ["read"], "site_id": "north"})
    assert bad.status_code == 422 and bad.json()["field"] == "site_id"
    assert client.post("/api/v1/api-keys", json={"name": "x", "scopes": ["root"]}).json()["field"] == "scopes"
    assert client.post("/api/v1/api-keys", json={"name": "x", "scopes": ["ingest"], "site_id": "nowhere"}).json()["field"] == "site_id"
    reader = client.post("/api/v1/api-keys", json={"name": "dashboard", "scopes": ["read"]}).json()["key"]
    assert anonymous_client.get("/api/v1/sites", headers={"X-API-Key": reader}).status_code == 200
    assert anonymous_client.post("/api/v1/readings", json=batch, headers={"X-API-Key": reader}).status_code == 403
    # Revoked keys stop at once; a tampered secret never works.
    key_id = created.json()["id"]
    assert client.delete(f"/api/v1/api-keys/{key_id}").status_code == 204
    assert anonymous_client.post("/api/v1/readings", json=batch, headers=headers).status_code == 401
    assert anonymous_client.get("/api/v1/sites", headers={"X-API-Key": reader[:-2] + "xx"}).status_code == 401
    assert {e["event"] for e in client.get("/api/v1/audit").json()} >= {"api_key_created", "api_key_revoked"}


def test_login_attempts_are_limited_per_account(client: TestClient, anonymous_client: ClientAs) -> None:
    _user(client, "gus")
    limit = client.app.state.dt.settings.login_rate_limit  # type: ignore[attr-defined]
    for _ in range(limit):
        assert anonymous_client.post("/api/v1/auth/token", json={"username": "gus", "password": "guess guess guess"}).status_code == 401
    blocked = anonymous_client.post("/api/v1/auth/token", json={"username": "gus", "password": PASSWORD})
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
    assert blocked.json()["field"] == "username"
    # Other accounts are not affected.
    _user(client, "hal")
    assert _login(anonymous_client, "hal")["token_type"] == "bearer"


def test_expired_access_token_is_401(client: TestClient, anonymous_client: ClientAs) -> None:
    security = security_of(client)
    user = security.store.get_user_by_name("admin")
    pair = security.sessions.start(user, amr="pwd")  # type: ignore[arg-type]
    codec = security.codec
    old_clock = codec.clock
    codec.clock = lambda: datetime.now(UTC) - timedelta(minutes=31) - timedelta(seconds=codec.leeway_s)
    try:
        stale = codec.issue_access(user_id=user.id, role="admin", session_id=pair.session_id, amr="pwd")  # type: ignore[union-attr]
    finally:
        codec.clock = old_clock
    response = anonymous_client.get("/api/v1/sites", headers=_bearer(stale.token))
    assert response.status_code == 401 and response.json() == {"detail": "token expired", "field": "Authorization"}
