"""TOTP secrets encrypted at rest (and the migration of clear ones), MFA enrolment ending other
sessions, secret-bearing answers not cached, the generic message for disabled accounts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pyotp
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select, update
from typer.testing import CliRunner

from digitaltwin.cli import app as cli_app
from digitaltwin.config import Settings
from digitaltwin.security.mfa_cipher import MfaCipher, cipher_for, is_encrypted
from digitaltwin.security.roles import Role
from digitaltwin.security.service import SecurityService
from digitaltwin.storage.db import make_engine, migrate
from digitaltwin.storage.tables import users
from tests.api.conftest import ClientAs, security_of
from tests.conftest import fresh_postgres_database

PASSWORD = "correct horse battery staple"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _token(anon: ClientAs, name: str) -> str:
    response = anon.post("/api/v1/auth/token", json={"username": name, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def _stored_secret(engine: Engine, name: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(users.c.mfa_secret).where(users.c.username == name)).scalar_one()


def test_totp_secret_is_encrypted_at_rest(client: TestClient, anonymous_client: ClientAs) -> None:
    security = security_of(client)
    security.accounts.create("enc", PASSWORD, Role.VIEWER, actor="test")
    token = _token(anonymous_client, "enc")
    enrol = anonymous_client.post("/api/v1/auth/mfa/enroll", headers=_bearer(token))
    secret = enrol.json()["secret"]
    stored = _stored_secret(security.store.engine, "enc")
    assert stored is not None and is_encrypted(stored) and secret not in stored
    assert cipher_for(client.app.state.dt.settings).decrypt(stored) == secret  # type: ignore[attr-defined]
    confirm = anonymous_client.post("/api/v1/auth/mfa/confirm", json={"code": pyotp.TOTP(secret).now()}, headers=_bearer(token))
    assert confirm.status_code == 200  # the server reads its own encrypted seed


def test_enabling_mfa_ends_the_other_sessions(client: TestClient, anonymous_client: ClientAs) -> None:
    security_of(client).accounts.create("two", PASSWORD, Role.VIEWER, actor="test")
    here, elsewhere = _token(anonymous_client, "two"), _token(anonymous_client, "two")
    secret = anonymous_client.post("/api/v1/auth/mfa/enroll", headers=_bearer(here)).json()["secret"]
    confirm = anonymous_client.post("/api/v1/auth/mfa/confirm", json={"code": pyotp.TOTP(secret).now()}, headers=_bearer(here))
    assert confirm.status_code == 200
    assert confirm.headers["cache-control"] == "no-store"  # recovery codes
    assert anonymous_client.get("/api/v1/auth/me", headers=_bearer(here)).status_code == 200
    gone = anonymous_client.get("/api/v1/auth/me", headers=_bearer(elsewhere))
    assert gone.status_code == 401 and "revoked" in gone.json()["detail"]
    code = pyotp.TOTP(secret).generate_otp(pyotp.TOTP(secret).timecode(datetime.now(UTC)) + 1)
    regenerated = anonymous_client.post("/api/v1/auth/mfa/recovery-codes", json={"code": code}, headers=_bearer(here))
    assert regenerated.status_code == 200 and regenerated.headers["cache-control"] == "no-store"


def test_a_new_api_key_is_not_cached(client: TestClient) -> None:
    created = client.post("/api/v1/api-keys", json={"name": "gateway", "scopes": ["ingest"]})
    assert created.status_code == 201 and created.headers["cache-control"] == "no-store"


def test_a_disabled_account_gets_the_generic_message(client: TestClient, anonymous_client: ClientAs) -> None:
    security_of(client).accounts.create("gone", PASSWORD, Role.VIEWER, actor="test")
    assert client.patch("/api/v1/users/gone", json={"active": False}).status_code == 200
    right = anonymous_client.post("/api/v1/auth/token", json={"username": "gone", "password": PASSWORD})
    wrong = anonymous_client.post("/api/v1/auth/token", json={"username": "gone", "password": "wrong horse battery"})
    assert right.status_code == wrong.status_code == 401
    assert right.json() == wrong.json() == {"detail": "incorrect username or password", "field": "password"}
    reasons = [e["detail"]["reason"] for e in client.get("/api/v1/audit", params={"event": "login_failed"}).json()]
    assert reasons == ["password", "disabled"]


@contextmanager
def _fresh_engine(settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, Engine]]:
    """An empty database on the parametrised backend (not the session's, which is at head already)."""
    if settings.database_url:
        with fresh_postgres_database("dt_mfa") as url:
            fresh = settings.model_copy(update={"database_url": url})
            engine = make_engine(fresh)
            yield fresh, engine
            engine.dispose()
    else:
        fresh = settings.model_copy(update={"data_dir": tmp_path / "fresh"})
        engine = make_engine(fresh)
        yield fresh, engine
        engine.dispose()


def test_migration_encrypts_existing_secrets(settings: Settings, tmp_path: Path) -> None:
    with _fresh_engine(settings, tmp_path) as (fresh, engine):
        migrate(engine, "0004")
        seed = pyotp.random_base32()
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(insert(users).values(
                id="u1", username="old", password_hash="$argon2id$x", role="viewer", active=True, mfa_secret=seed,
                mfa_enabled=True, mfa_last_step=None, created_at=now, password_changed_at=now,
            ))
        with pytest.raises(RuntimeError, match="must be encrypted"):
            migrate(engine)  # no key: nothing is changed
        assert _stored_secret(engine, "old") == seed
        migrate(engine, settings=fresh)
        stored = _stored_secret(engine, "old")
        assert stored is not None and is_encrypted(stored) and seed not in stored
        security = SecurityService(fresh, engine)
        user = security.store.get_user_by_name("old")
        assert user is not None and security.mfa.verify(user, pyotp.TOTP(seed).now()) == "totp"
        from digitaltwin.storage.db import alembic_config
        from alembic import command

        command.downgrade(alembic_config(engine, fresh), "0004")
        assert _stored_secret(engine, "old") == seed


def test_rotating_the_mfa_key(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with _fresh_engine(settings, tmp_path) as (fresh, engine):
        first = fresh.model_copy(update={"mfa_encryption_key": old})
        migrate(engine, settings=first)
        security = SecurityService(first, engine)
        user = security.accounts.create("rot", PASSWORD, Role.VIEWER, actor="test")
        seed = security.mfa.enrol(user).secret
        monkeypatch.chdir(tmp_path)
        for name, value in {
            "ENVIRONMENT": "test", "SECRET_KEY": fresh.secret_key, "DATA_DIR": str(fresh.data_dir),
            "LOG_DIR": str(tmp_path / "logs"), "DATABASE_URL": fresh.database_url or "", "MFA_ENCRYPTION_KEY": f"{new},{old}",
        }.items():
            monkeypatch.setenv(name, value)
        if not fresh.database_url:
            monkeypatch.delenv("DATABASE_URL")
        result = CliRunner().invoke(cli_app, ["users", "rotate-mfa-key"])
        assert result.exit_code == 0, result.output
        assert MfaCipher([new]).decrypt(_stored_secret(engine, "rot") or "") == seed  # the old key is no longer needed
        with engine.begin() as conn:
            foreign = Fernet(Fernet.generate_key()).encrypt(b"x").decode()  # under a key nobody configured
            conn.execute(update(users).where(users.c.username == "rot").values(mfa_secret=foreign))
        failed = CliRunner().invoke(cli_app, ["users", "rotate-mfa-key"])
        assert failed.exit_code == 2 and "MFA_ENCRYPTION_KEY" in failed.output
