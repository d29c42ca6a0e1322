"""Log files: JSON lines with a request id, daily rotation with retention, no secrets in any file."""

from __future__ import annotations

import json
import logging
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.routing import Route

from digitaltwin.api.app import create_app
from digitaltwin.config import Settings
from digitaltwin.observability.logs import ACCESS_LOGGER, RETENTION_DAYS, configure_logging, redact, secret_values

SECRET_KEY = secrets.token_urlsafe(48)
DB_PASSWORD = "pg-" + secrets.token_hex(8)
MQTT_PASSWORD = "mq-" + secrets.token_hex(8)
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl"


def _ours(logger: logging.Logger) -> list[logging.Handler]:
    return [h for h in logger.handlers if getattr(h, "_digitaltwin", False)]


@pytest.fixture
def log_settings(tmp_path: Path) -> Iterator[Settings]:
    settings = Settings(
        _env_file=None, ENVIRONMENT="development", DATA_DIR=tmp_path / "data", MODELS_DIR=tmp_path / "models",
        LOG_DIR=tmp_path / "logs", SECRET_KEY=SECRET_KEY, DATABASE_URL=None, POSTGRES_PASSWORD=DB_PASSWORD,
        MQTT_PASSWORD=MQTT_PASSWORD, REDIS_URL=None, MQTT_BROKER=None,
    )
    configure_logging(settings.log_dir, level="DEBUG", secrets=secret_values(settings))
    yield settings
    for name in ("digitaltwin", ACCESS_LOGGER):
        logger = logging.getLogger(name)
        for handler in _ours(logger):
            logger.removeHandler(handler)
            handler.close()


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_requests_are_logged_as_json_lines_with_their_request_id(log_settings: Settings) -> None:
    with TestClient(create_app(log_settings)) as client:
        given = client.get("/api/v1/sites/nowhere", headers={"X-Request-ID": "trace-42"})
        fresh = client.get("/healthz", headers={"X-Request-ID": "bad id\nforged line"})
        logging.getLogger("digitaltwin.test").warning("outside any request")
    assert given.headers["X-Request-ID"] == "trace-42"
    assert len(fresh.headers["X-Request-ID"]) == 32 and "\n" not in fresh.headers["X-Request-ID"]
    access = _lines(log_settings.log_dir / "access.log")
    assert [(a["request_id"], a["route"], a["path"], a["status"]) for a in access] == [
        ("trace-42", "/api/v1/sites/{site_id}", "/api/v1/sites/nowhere", given.status_code),
        (fresh.headers["X-Request-ID"], "/healthz", "/healthz", 200),
    ]
    assert all(a["level"] == "INFO" and a["duration_ms"] >= 0 and "time" in a for a in access)
    app_lines = _lines(log_settings.log_dir / "digital_twin.log")
    assert app_lines[-1]["message"] == "outside any request" and app_lines[-1]["request_id"] is None
    assert not any(line["logger"] == ACCESS_LOGGER for line in app_lines), "request lines belong in access.log"


def test_unhandled_errors_reach_error_log_with_the_request_id(log_settings: Settings) -> None:
    app = create_app(log_settings)

    async def boom(request: object) -> None:
        raise RuntimeError(f"cannot reach postgresql://dt:{DB_PASSWORD}@db/dt")

    app.router.routes.insert(0, Route("/boom", boom))  # a bare Starlette route: no auth dependency

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/boom", headers={"X-Request-ID": "boom-1"}).status_code == 500
    errors = _lines(log_settings.log_dir / "error.log")
    assert errors[-1]["request_id"] == "boom-1"
    assert errors[-1]["level"] == "ERROR"
    assert "RuntimeError" in errors[-1]["exc_info"]
    assert DB_PASSWORD not in (log_settings.log_dir / "error.log").read_text()
    assert _lines(log_settings.log_dir / "access.log")[-1]["status"] == 500


def test_no_secret_or_token_reaches_any_log_file(log_settings: Settings) -> None:
    with TestClient(create_app(log_settings)) as client:
        client.get(f"/api/v1/sites?token={JWT}&api_key=k-{SECRET_KEY[:12]}", headers={"Authorization": f"Bearer {JWT}"})
    log = logging.getLogger("digitaltwin.test")
    log.info("connecting to postgresql://digitaltwin:%s@db:5432/digitaltwin", DB_PASSWORD)
    log.info("mqtt login", extra={"password": MQTT_PASSWORD, "token": JWT})
    log.warning("settings dump: secret_key=%s authorization='Bearer %s'", SECRET_KEY, JWT)
    try:
        raise ValueError(f"broker refused password {MQTT_PASSWORD}")
    except ValueError:
        log.exception("failed")
    text = "".join(p.read_text(encoding="utf-8") for p in log_settings.log_dir.glob("*.log"))
    assert "settings dump" in text and "mqtt login" in text and "broker refused" in text
    for secret in (SECRET_KEY, DB_PASSWORD, MQTT_PASSWORD, JWT, SECRET_KEY[:12]):
        assert secret not in text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Authorization: Bearer abcdefghijklmnop", "Authorization: Bearer [REDACTED]"),
        ("redis://:hunter2secret@redis:6379/0", "redis://:[REDACTED]@redis:6379/0"),
        ('{"password": "p@ss word", "user": "x"}', '{"password": "[REDACTED]", "user": "x"}'),
        ('message: "login with password=\\"two words\\" failed"', 'message: "login with password=\\"[REDACTED]\\" failed"'),
        ("secret: 'a b' other", "secret: '[REDACTED]' other"),
        ("otp_code=123456 next", "otp_code=[REDACTED] next"),
        ("energy_kwh=12.5 token_count", "energy_kwh=12.5 token_count"),
    ],
)
def test_redaction_patterns(raw: str, expected: str) -> None:
    assert redact(raw) == expected


def test_files_rotate_at_midnight_and_keep_the_retention(log_settings: Settings) -> None:
    handlers = _ours(logging.getLogger("digitaltwin")) + _ours(logging.getLogger(ACCESS_LOGGER))
    assert sorted(Path(h.baseFilename).name for h in handlers) == ["access.log", "digital_twin.log", "error.log"]
    for handler in handlers:
        assert handler.when == "MIDNIGHT" and handler.utc and handler.backupCount == RETENTION_DAYS == 14
    log_dir = log_settings.log_dir
    for day in range(1, 21):  # 20 old days on disk
        (log_dir / f"digital_twin.log.2020-01-{day:02d}").write_text("{}\n")
    logging.getLogger("digitaltwin.test").info("before midnight")
    main = next(h for h in handlers if h.baseFilename.endswith("digital_twin.log"))
    main.doRollover()
    logging.getLogger("digitaltwin.test").info("after midnight")
    rotated = sorted(p.name for p in log_dir.glob("digital_twin.log.*"))
    assert len(rotated) == RETENTION_DAYS
    assert "2020-01-01" not in " ".join(rotated)
    assert [line["message"] for line in _lines(log_dir / "digital_twin.log")] == ["after midnight"]


WRITER = """
import logging, sys
from pathlib import Path
from digitaltwin.observability.logs import configure_logging
configure_logging(Path(sys.argv[1]))
log = logging.getLogger("digitaltwin.writer")
for i in range(300):
    log.info("line %d from %s", i, sys.argv[2], extra={"padding": "x" * 500})
"""


def test_several_processes_share_the_files_without_mangling_lines(tmp_path: Path) -> None:
    processes = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), name]) for name in ("a", "b", "c")]
    assert [p.wait(timeout=120) for p in processes] == [0, 0, 0]
    lines = _lines(tmp_path / "digital_twin.log")  # every line parses as one JSON object
    assert len(lines) == 900
    assert {line["message"].rsplit(" ", 1)[-1] for line in lines} == {"a", "b", "c"}
