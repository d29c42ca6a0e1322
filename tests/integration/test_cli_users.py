"""``digitaltwin users create`` and the demo's admin account."""

from __future__ import annotations

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from digitaltwin.api.app import create_app
from digitaltwin.cli import app
from digitaltwin.config import Settings
from digitaltwin.services import demo
from digitaltwin.storage.repository import Repository

runner = CliRunner()


def _env(settings: Settings) -> dict[str, str]:
    return {
        "DATA_DIR": str(settings.data_dir), "MODELS_DIR": str(settings.models_dir), "LOG_DIR": str(settings.log_dir),
        "DATABASE_URL": settings.database_url or "",
    }


def test_users_create_reads_the_password_from_stdin(settings: Settings, repo: Repository) -> None:
    password = "a very long admin password"
    result = runner.invoke(app, ["users", "create", "root-admin", "--role", "admin"], input=password + "\n", env=_env(settings))
    assert result.exit_code == 0, result.output
    assert "user root-admin (admin) created" in result.output and password not in result.output
    weak = runner.invoke(app, ["users", "create", "weakling"], input="short\n", env=_env(settings))
    assert weak.exit_code == 2 and "(password)" in weak.output
    bad_role = runner.invoke(app, ["users", "create", "x", "--role", "root"], input=password + "\n", env=_env(settings))
    assert bad_role.exit_code == 2 and "(role)" in bad_role.output
    with TestClient(create_app(settings)) as client:
        token = client.post("/api/v1/auth/token", data={"username": "root-admin", "password": password})
        assert token.status_code == 200, token.text
        users = client.get("/api/v1/users", headers={"Authorization": f"Bearer {token.json()['access_token']}"})
        assert [u["username"] for u in users.json()] == ["root-admin"]


def test_demo_admin_gets_a_random_password_once(settings: Settings, repo: Repository) -> None:
    first = demo.ensure_demo_admin(repo)
    assert first is not None and len(first) >= 20
    assert demo.ensure_demo_admin(repo) is None  # printed once: a second run does not reset it
    with TestClient(create_app(settings)) as client:
        assert client.post("/api/v1/auth/token", data={"username": "admin", "password": first}).status_code == 200
        assert client.post("/api/v1/auth/token", data={"username": "admin", "password": "admin"}).status_code == 401
