"""The dashboard in a real Chromium on the real ``serve`` process with the steel plant's year."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyotp
import pytest

from ..integration.mqtt_support import publish
from .conftest import Server, login, screenshot

STEEL_JANUARY_2018_KWH = "126,238.29 kWh"  # the dataset's January, summed in the site's local calendar


def show_energy(page: object, bucket: str, start: str, end: str) -> None:
    page.get_by_label("From (site date)", exact=True).fill(start)  # type: ignore[attr-defined]
    page.get_by_label("To (exclusive)", exact=True).fill(end)  # type: ignore[attr-defined]
    page.get_by_label("Bucket", exact=True).select_option(bucket)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Show", exact=True).click()  # type: ignore[attr-defined]


def chart_points(page: object, selector: str = ".chart") -> list[list[object]]:
    """The data of the first series drawn in the first chart matching ``selector`` (ECharts' own option)."""
    return page.evaluate(  # type: ignore[attr-defined]
        f"() => echarts.getInstanceByDom(document.querySelector('{selector}')).getOption().series[0].data")


def test_login_and_the_steel_plant_on_the_overview(page: object, server: Server, tmp_path: Path) -> None:
    login(page, server, "admin")
    page.get_by_role("link", name="Steel plant main meter").wait_for()  # type: ignore[attr-defined]
    assert page.get_by_role("heading", name="DAEWOO Steel, Gwangyang").is_visible()  # type: ignore[attr-defined]
    screenshot(page, "overview", tmp_path)
    assert page.errors == []  # type: ignore[attr-defined]


def test_january_energy_and_redraws_match_the_api(page: object, server: Server, tmp_path: Path) -> None:
    login(page, server, "admin")
    page.goto("/#/assets/steel-plant")  # type: ignore[attr-defined]
    page.get_by_role("heading", name="Energy").wait_for()  # type: ignore[attr-defined]
    show_energy(page, "month", "2018-01-01", "2018-02-01")
    total = page.locator("#energy-total")  # type: ignore[attr-defined]
    total.filter(has_text=STEEL_JANUARY_2018_KWH).wait_for()
    headers = {"Authorization": f"Bearer {server.token('viewer')}"}
    for bucket, count in (("day", 31), ("hour", 31 * 24), ("15min", 31 * 96)):
        show_energy(page, bucket, "2018-01-01", "2018-02-01")
        page.wait_for_function(f"() => echarts.getInstanceByDom(document.querySelector('.chart')).getOption().series[0].data.length === {count}", timeout=60_000)  # type: ignore[attr-defined]
        api = httpx.get(f"{server.url}/api/v1/assets/steel-plant/energy", headers=headers, params={
            "start": "2018-01-01T00:00:00+09:00", "end": "2018-02-01T00:00:00+09:00", "bucket": bucket}).json()
        drawn = chart_points(page)
        assert drawn == [b["energy_kwh"] for b in api["buckets"]]
        assert total.text_content() == STEEL_JANUARY_2018_KWH
    # Another range redraws with that range's numbers.
    show_energy(page, "day", "2018-02-01", "2018-03-01")
    page.wait_for_function("() => echarts.getInstanceByDom(document.querySelector('.chart')).getOption().series[0].data.length === 28", timeout=60_000)  # type: ignore[attr-defined]
    assert total.text_content() != STEEL_JANUARY_2018_KWH
    # The month's bill under the plant's tariff, with its line items and total.
    page.locator("#bill table").filter(has_text="Total").wait_for()  # type: ignore[attr-defined]
    screenshot(page, "asset", tmp_path)
    assert page.errors == []  # type: ignore[attr-defined]


def test_a_reading_published_on_mqtt_reaches_the_live_tile(page: object, server: Server) -> None:
    if not server.settings.mqtt_broker:
        pytest.skip("no MQTT broker reachable")
    login(page, server, "viewer")
    tile = page.locator('.live[data-asset="steel-plant-live"]')  # type: ignore[attr-defined]
    tile.wait_for()
    page.wait_for_timeout(500)  # the stream's first event (the current state) has arrived  # type: ignore[attr-defined]
    stamp = datetime.now(UTC).replace(microsecond=0)
    payload = json.dumps({"ts": stamp.isoformat(), "power_kw": 123.456}).encode()
    publish(server.settings, "dt/daewoo-steel/steel-plant-live/telemetry", [payload])
    published = datetime.now(UTC)
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => document.querySelector('.live[data-asset=\"steel-plant-live\"]').dataset.value === '123.456'", timeout=2000)
    assert (datetime.now(UTC) - published).total_seconds() < 2.0
    assert "123.46 kW" in (tile.text_content() or "")


def test_a_viewer_is_offered_no_write_controls(page: object, server: Server) -> None:
    login(page, server, "viewer")
    assert page.get_by_role("link", name="Data").count() == 0  # type: ignore[attr-defined]
    page.goto("/#/models")  # type: ignore[attr-defined]
    page.get_by_role("heading", name="Models").wait_for()  # type: ignore[attr-defined]
    assert page.get_by_role("button", name="Activate").count() == 0  # type: ignore[attr-defined]


def test_login_with_a_second_factor(page: object, server: Server) -> None:
    username = "mfa-user"
    headers = {"Authorization": f"Bearer {server.token('admin')}"}
    password = "correct horse battery staple"
    created = httpx.post(f"{server.url}/api/v1/users", headers=headers,
                         json={"username": username, "password": password, "role": "operator"})
    assert created.status_code == 201, created.text
    token = httpx.post(f"{server.url}/api/v1/auth/token", json={"username": username, "password": password}).json()["access_token"]
    secret = httpx.post(f"{server.url}/api/v1/auth/mfa/enroll", headers={"Authorization": f"Bearer {token}"}).json()["secret"]
    confirmed = httpx.post(f"{server.url}/api/v1/auth/mfa/confirm", headers={"Authorization": f"Bearer {token}"},
                           json={"code": pyotp.TOTP(secret).now()})
    assert confirmed.status_code == 200, confirmed.text
    server.users["mfa"] = (username, password)
    page.goto("/")  # type: ignore[attr-defined]
    page.get_by_label("Username", exact=True).fill(username)  # type: ignore[attr-defined]
    page.get_by_label("Password", exact=True).fill(password)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Log in").click()  # type: ignore[attr-defined]
    page.get_by_role("heading", name="Second factor").wait_for()  # type: ignore[attr-defined]
    # A code of the next 30-second step: the one used to confirm enrolment may not be replayed.
    page.get_by_label("Code from your authenticator app (or a recovery code)", exact=True).fill(  # type: ignore[attr-defined]
        pyotp.TOTP(secret).at(datetime.now(UTC).timestamp() + 30))
    page.get_by_role("button", name="Verify").click()  # type: ignore[attr-defined]
    page.get_by_role("heading", name="Overview").wait_for()  # type: ignore[attr-defined]
    assert username in (page.locator("#who").text_content() or "")  # type: ignore[attr-defined]


def test_an_operator_acknowledges_an_alarm_and_sees_its_state_change(page: object, server: Server, tmp_path: Path) -> None:
    login(page, server, "operator")
    page.goto("/#/alarms")  # type: ignore[attr-defined]
    card = page.locator(".alarm", has_text="stale_device on steel-plant").first  # type: ignore[attr-defined]
    for _ in range(30):  # the stale-device timer runs every 2 s in this server
        if card.count():
            break
        page.wait_for_timeout(1000)  # type: ignore[attr-defined]
        page.get_by_role("button", name="Filter").click()  # type: ignore[attr-defined]
    card.wait_for()
    assert "active" in (card.locator(".badge.state").text_content() or "")
    card.get_by_label("Comment", exact=True).fill("meter archived: expected")
    card.get_by_role("button", name="Acknowledge").click()
    acknowledged = page.locator(".alarm", has_text="stale_device on steel-plant").first  # type: ignore[attr-defined]
    acknowledged.locator(".badge.state", has_text="acknowledged").wait_for()
    assert "meter archived: expected" in (acknowledged.text_content() or "")
    screenshot(page, "alarms", tmp_path)
    # A viewer sees the alarm but no way to act on it.
    page.get_by_role("button", name="Log out").click()  # type: ignore[attr-defined]
    login(page, server, "viewer")
    page.goto("/#/alarms")  # type: ignore[attr-defined]
    page.locator(".alarm", has_text="stale_device on steel-plant").first.wait_for()  # type: ignore[attr-defined]
    assert page.get_by_role("button", name="Acknowledge").count() == 0  # type: ignore[attr-defined]
    assert page.get_by_role("button", name="Clear").count() == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("route", ["#/", "#/assets/steel-plant", "#/alarms", "#/models", "#/data", "#/schedules"])
def test_pages_have_no_serious_accessibility_violations(page: object, server: Server, route: str, tmp_path: Path) -> None:
    from axe_playwright_python.sync_playwright import Axe

    login(page, server, "admin")
    page.goto(f"/{route}")  # type: ignore[attr-defined]
    page.locator("main h1").wait_for()  # type: ignore[attr-defined]
    # The overview keeps event streams open (never network-idle): give the page's requests a moment.
    page.wait_for_timeout(1500)  # type: ignore[attr-defined]
    results = Axe().run(page)
    serious = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert serious == [], json.dumps([(v["id"], v["help"], [n["target"] for n in v["nodes"]][:3]) for v in serious], indent=1)
    name = route.strip("#/").split("/")[0] or "overview"
    if name in ("models", "data", "schedules"):
        screenshot(page, name, tmp_path)


def test_phone_width_keeps_the_page_usable(browser: object, server: Server, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=server.url)  # type: ignore[attr-defined]
    page = context.new_page()
    try:
        login(page, server, "admin")
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390 + 1, f"horizontal scrolling at phone width ({width} px)"
        screenshot(page, "overview-phone", tmp_path)
    finally:
        context.close()


def test_a_csv_upload_lists_every_rejected_row(page: object, server: Server, tmp_path: Path) -> None:
    login(page, server, "operator")
    page.goto("/#/data")  # type: ignore[attr-defined]
    page.get_by_role("heading", name="Import a CSV file").wait_for()  # type: ignore[attr-defined]
    text = "ts,kwh\n2024-01-01T00:00:00Z,1\n2024-01-01T00:15:00Z,x\n2024-01-01T00:30:00Z,2\n2024-01-01T00:45:00Z,65535\n"
    page.set_input_files("#csv-file", files=[{"name": "m.csv", "mimeType": "text/csv", "buffer": text.encode()}])  # type: ignore[attr-defined]
    for name, value in (("asset", "steel-plant-live"), ("timestamp_column", "ts"), ("value_column", "kwh"),
                        ("unit", "kWh"), ("interval_seconds", "900")):
        page.locator(f"#csv-{name}").fill(value)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Import").click()  # type: ignore[attr-defined]
    rows = page.locator("#csv-rejected tbody tr")  # type: ignore[attr-defined]
    rows.first.wait_for()
    assert rows.count() == 2
    assert [rows.nth(i).locator("td").first.text_content() for i in range(2)] == ["3", "5"]
    assert "Readingsstored2" in (page.locator("#csv-result dl").text_content() or "").replace(" ", "")  # type: ignore[attr-defined]
    screenshot(page, "data", tmp_path)

    # Every row rejected: the API answers 422 with the same body, and the page still lists the rows.
    text = "ts,kwh\n2024-01-02T00:00:00Z,x\n2024-01-02T00:15:00Z,\u0665\n"
    page.set_input_files("#csv-file", files=[{"name": "m.csv", "mimeType": "text/csv", "buffer": text.encode()}])  # type: ignore[attr-defined]
    with page.expect_response("**/api/v1/imports") as answer:  # type: ignore[attr-defined]
        page.get_by_role("button", name="Import").click()  # type: ignore[attr-defined]
    assert answer.value.status == 422
    page.get_by_role("alert").filter(has_text="Not imported: all 2 rows were rejected").wait_for()  # type: ignore[attr-defined]
    assert [rows.nth(i).locator("td").first.text_content() for i in range(rows.count())] == ["2", "3"]
    assert "null" not in (page.locator("#csv-result").text_content() or "")  # type: ignore[attr-defined]
