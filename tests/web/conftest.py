"""A real ``digitaltwin serve`` with the steel plant imported, and Debian's Chromium driven by Playwright.

The browser is ``/usr/bin/chromium`` (``apt-get install chromium``; ``.ci/run`` installs it). Without it
the browser tests are skipped, unless ``DT_REQUIRE_BROWSER=1`` (set by ``.ci/run``) makes that a failure.
Screenshots go to ``DT_SCREENSHOTS_DIR`` when set (``docs/screenshots`` to refresh the README's).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from digitaltwin.config import Settings
from digitaltwin.security.roles import Role
from digitaltwin.security.secret_key import resolve_signing_keys
from digitaltwin.security.service import SecurityService
from digitaltwin.services.demo import assign_demo_tariff, setup_and_import
from digitaltwin.storage.db import make_engine, migrate
from digitaltwin.storage.repository import Repository

from ..conftest import STEEL_CSV, TEST_SECRET_KEY
from ..integration.mqtt_support import DEFAULT_BROKER, _reachable, broker_address
from ..serve_support import serving

CHROMIUM = Path("/usr/bin/chromium")
#: Flags for a headless Chromium as root on a machine without a network (see docs/dashboard.md).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@dataclass
class Server:
    url: str
    settings: Settings
    users: dict[str, tuple[str, str]]  # role -> (username, password)

    def token(self, role: str) -> str:
        username, password = self.users[role]
        answer = httpx.post(f"{self.url}/api/v1/auth/token", json={"username": username, "password": password})
        answer.raise_for_status()
        return str(answer.json()["access_token"])


def _browser_path() -> Path:
    if not CHROMIUM.exists():
        if os.environ.get("DT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is required (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``digitaltwin serve`` on SQLite with the steel year imported, an admin, an operator and a viewer,
    and the local Mosquitto (a unique topic prefix) when it is reachable."""
    root = tmp_path_factory.mktemp("dashboard")
    broker = os.environ.get("DT_TEST_MQTT_BROKER", DEFAULT_BROKER)
    mqtt = _reachable(*broker_address(broker)[:2])
    prefix = f"web-{secrets.token_hex(4)}/"
    settings = Settings(_env_file=None, ENVIRONMENT="test", DATA_DIR=root / "data", MODELS_DIR=root / "models",
                        LOG_DIR=root / "logs", SECRET_KEY=TEST_SECRET_KEY, API_RATE_LIMIT=100_000,
                        MQTT_BROKER=broker if mqtt else None, MQTT_TOPIC_PREFIX=prefix)
    engine = make_engine(settings)
    migrate(engine)
    repo = Repository(engine)
    setup_and_import(repo, STEEL_CSV)
    assign_demo_tariff(repo)  # the plant's industrial time-of-use tariff, so bills and costs show
    accounts = SecurityService(settings, engine, keys=resolve_signing_keys(settings)).accounts
    users = {}
    for role in (Role.ADMIN, Role.OPERATOR, Role.VIEWER):
        password = secrets.token_urlsafe(16)
        accounts.create(f"{role.value}-user", password, role, actor="test")
        users[role.value] = (f"{role.value}-user", password)
    engine.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "MQTT_", "REDIS_", "PROMETHEUS_"))}
    env.update(ENVIRONMENT="test", SECRET_KEY=TEST_SECRET_KEY, DATA_DIR=str(settings.data_dir), LOG_DIR=str(settings.log_dir),
               MODELS_DIR=str(settings.models_dir), API_RATE_LIMIT="100000", AUTH_RATE_LIMIT="100000", MQTT_TOPIC_PREFIX=prefix,
               STALE_CHECK_SECONDS="2",  # the steel plant's last reading is of 2018: a stale-device alarm to act on
               MQTT_CLIENT_ID=f"web-{secrets.token_hex(4)}", MQTT_AUTO_REGISTER_ASSETS="false")
    if mqtt:
        env["MQTT_BROKER"] = broker
    with serving(env, root / "server.out") as (url, _):
        yield Server(url, settings, users)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    executable = _browser_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS, headless=True)
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"Chromium at {executable} did not start: {exc}")
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: object, server: Server) -> Iterator[object]:
    """A fresh browser context (no tokens) at the dashboard, offline except for the server itself."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server.url)  # type: ignore[attr-defined]
    # The dashboard must work with no network: any request off the server's origin is refused.
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server.url) else route.abort())
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Script errors fail a test; a 404 the page expects (no model yet: no forecast) is only logged by the browser.
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load resource") else None)
    page.errors = errors  # type: ignore[attr-defined]
    yield page
    context.close()


def screenshot(page: object, name: str, tmp_path: Path) -> Path:
    """Save a full-page screenshot under DT_SCREENSHOTS_DIR (or the test's temporary folder)."""
    folder = Path(os.environ.get("DT_SCREENSHOTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    assert path.stat().st_size > 10_000
    return path


def login(page: object, server: Server, role: str) -> None:
    username, password = server.users[role]
    page.goto("/")  # type: ignore[attr-defined]
    page.get_by_label("Username", exact=True).fill(username)  # type: ignore[attr-defined]
    page.get_by_label("Password", exact=True).fill(password)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Log in").click()  # type: ignore[attr-defined]
    page.get_by_role("heading", name="Overview").wait_for()  # type: ignore[attr-defined]
