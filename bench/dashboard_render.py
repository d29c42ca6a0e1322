"""Time to first render of the dashboard in Debian's Chromium, and the size of what the page transfers.

One run: a temporary SQLite database with the steel plant's year (35,040 quarter hours), a real
``digitaltwin serve`` on a free port, headless Chromium driven by Playwright. Measured, each the
median of 5:

* the page itself: navigation start to the login form (HTML, scripts, styles, ECharts);
* the overview after login: the route change to the site card with its month figures drawn;
* an asset page with a year of 15-minute data: its first render (the default view, the last 7 days
  by hour, with KPIs), then a range of the whole year at 15 minutes, from the change of bucket to
  the chart holding all 35,040 bars (the API answer, its JSON, and ECharts' first draw).

Targets: overview under 1 s, the asset page's year under 1.5 s. Sizes are the bytes of every
response the page received (uncompressed, as the embedded server sends them; nginx gzips in production,
and the gzip size is printed too).

Run: ``python bench/dashboard_render.py`` (needs ``/usr/bin/chromium``).
"""

from __future__ import annotations

import gzip
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from digitaltwin.demo_data import STEEL_CSV
from digitaltwin.config import Settings
from digitaltwin.security.roles import Role
from digitaltwin.security.secret_key import resolve_signing_keys
from digitaltwin.security.service import SecurityService
from digitaltwin.services.demo import setup_and_import
from digitaltwin.storage.db import make_engine, migrate
from digitaltwin.storage.repository import Repository

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
RUNS = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(folder: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    key = secrets.token_hex(32)
    settings = Settings(_env_file=None, ENVIRONMENT="test", DATA_DIR=folder / "data", MODELS_DIR=folder / "models",
                        LOG_DIR=folder / "logs", SECRET_KEY=key)
    engine = make_engine(settings)
    migrate(engine)
    setup_and_import(Repository(engine), STEEL_CSV)
    password = secrets.token_urlsafe(16)
    SecurityService(settings, engine, keys=resolve_signing_keys(settings)).accounts.create("bench", password, Role.ADMIN, actor="bench")
    engine.dispose()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "MQTT_", "REDIS_"))}
    env.update(ENVIRONMENT="test", SECRET_KEY=key, DATA_DIR=str(settings.data_dir), MODELS_DIR=str(settings.models_dir),
               LOG_DIR=str(settings.log_dir), API_RATE_LIMIT="100000", AUTH_RATE_LIMIT="100000")
    process = subprocess.Popen([sys.executable, "-m", "digitaltwin.cli", "serve", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    return process, url, password


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        process, url, password = start_server(Path(tmp))
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                sizes: dict[str, int] = {}
                load, overview, asset, year = [], [], [], []
                for run in range(RUNS):
                    context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 900})
                    page = context.new_page()
                    if run == 0:
                        page.on("response", lambda r: sizes.__setitem__(r.url, len(r.body())) if r.url.startswith(f"{url}/ui") or r.url == f"{url}/" else None)
                    began = time.perf_counter()
                    page.goto("/")
                    page.get_by_label("Username", exact=True).wait_for()
                    load.append(time.perf_counter() - began)
                    page.get_by_label("Username", exact=True).fill("bench")
                    page.get_by_label("Password", exact=True).fill(password)
                    page.get_by_role("button", name="Log in").click()
                    page.locator(".month").wait_for()
                    page.goto("/#/models")
                    page.get_by_role("heading", name="Models").wait_for()
                    began = time.perf_counter()
                    page.goto("/#/")
                    page.locator(".month dl").wait_for()
                    overview.append(time.perf_counter() - began)
                    began = time.perf_counter()
                    page.goto("/#/assets/steel-plant")
                    page.locator("#energy-total").filter(has_text="kWh").wait_for()
                    page.wait_for_function("() => echarts.getInstanceByDom(document.querySelector('.chart')) !== undefined")
                    asset.append(time.perf_counter() - began)
                    page.get_by_label("From (site date)", exact=True).fill("2018-01-01")
                    page.get_by_label("To (exclusive)", exact=True).fill("2019-01-01")
                    page.get_by_label("Bucket", exact=True).select_option("15min")
                    began = time.perf_counter()
                    page.wait_for_function("() => echarts.getInstanceByDom(document.querySelector('.chart')).getOption().series[0].data.length === 35040",
                                           timeout=30000)
                    year.append(time.perf_counter() - began)
                    context.close()
                browser.close()
            assets = {u.removeprefix(url): n for u, n in sizes.items()}
            total = sum(assets.values())
            gz = sum(len(gzip.compress((ROOT / "src/digitaltwin/web/static" / p.removeprefix("/ui/")).read_bytes()))
                     for p in assets if p.startswith("/ui/"))
            print(f"page load to login form   median {1000 * statistics.median(load):7.1f} ms")
            print(f"overview after login      median {1000 * statistics.median(overview):7.1f} ms (target < 1000 ms)")
            print(f"asset page (last 7 days)  median {1000 * statistics.median(asset):7.1f} ms (its first render)")
            print(f"asset page, year of 15-min median {1000 * statistics.median(year):7.1f} ms (target < 1500 ms; 35,040 bars)")
            print(f"transferred page assets   {total / 1024:7.1f} KiB uncompressed in {len(assets)} files, "
                  f"{gz / 1024:.1f} KiB gzipped (static files); ECharts {assets.get('/ui/vendor/echarts.min.js', 0) / 1024:.1f} KiB of it")
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)


if __name__ == "__main__":
    main()
