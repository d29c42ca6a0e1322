"""Kept energy answers (ENERGY_CACHE_MB) are never served for data or a meter set-up they were not computed from.

Each check compares the API's answer with the same report computed without the cache, and with the
answer before the change. Writes go straight to the database or through a second app on the same
database, as an ingest worker or another API process would make them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import orjson
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from digitaltwin.analytics.buckets import Bucket
from digitaltwin.api.app import create_app
from digitaltwin.api.routers import assets as assets_router
from digitaltwin.api.routers.assets import energy_body
from digitaltwin.config import Settings
from digitaltwin.domain.readings import Reading
from digitaltwin.security.roles import Role
from digitaltwin.services.energy import energy_report
from digitaltwin.services.energy_answers import EnergyAnswers
from digitaltwin.storage.energy_fingerprint import energy_fingerprint
from digitaltwin.storage.repository import Repository
from tests.api.conftest import cache_lookups, headers_for
from tests.api.test_forecast_api import load_profile, register, store_hourly

URL = "/api/v1/assets/meter-c/energy"
START, END = "2024-03-01T00:00:00Z", "2024-03-15T00:00:00Z"


@pytest.fixture
def meter(client: TestClient, repo: Repository) -> pd.DatetimeIndex:
    register(client, "meter-c")
    return store_hourly(repo, "meter-c", load_profile(14, seed=5))


@pytest.fixture
def other_process(settings: Settings, client: TestClient) -> Iterator[TestClient]:
    """A second app on the same database: another API worker with its own kept answers."""
    with TestClient(create_app(settings)) as second:
        second.headers.update(headers_for(second, Role.ADMIN))
        yield second


def lookups(client: TestClient) -> dict[str, float]:
    return cache_lookups(client, "energy_cache_lookups_total")


def served(client: TestClient, url: str = URL, start: str = START, end: str = END, bucket: str = "day") -> dict:
    response = client.get(url, params={"start": start, "end": end, "bucket": bucket})
    assert response.status_code == 200, response.text
    return response.json()


def uncached(client: TestClient, asset_id: str = "meter-c", start: str = START, end: str = END, bucket: str = "day") -> dict:
    """The same answer computed now, without any kept answer."""
    state = client.app.state.dt  # type: ignore[attr-defined]
    report = energy_report(
        state.repo, asset_id, start=datetime.fromisoformat(start), end=datetime.fromisoformat(end), bucket=Bucket(bucket),
        max_hold=state.settings.power_max_hold,
    )
    return orjson.loads(energy_body(asset_id, Bucket(bucket), report))


def test_a_repeated_answer_is_a_hit_with_the_same_body(client: TestClient, meter: pd.DatetimeIndex) -> None:
    first = served(client)
    before = lookups(client)
    again = served(client)
    assert lookups(client) == {"hit": before["hit"] + 1, "miss": before["miss"]}
    assert again == first == uncached(client)
    served(client, bucket="hour")  # another bucket: another entry
    assert lookups(client)["miss"] == before["miss"] + 1


def test_on_postgresql_a_kept_answer_is_found_on_the_event_loop(
    client: TestClient, repo: Repository, meter: pd.DatetimeIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event loop's statement (storage/async_reads.py) gives the thread pool's fingerprint rows,
    so the key it makes finds the answer the thread pool kept; after a write it misses and the
    answer is computed again."""
    state = client.app.state.dt  # type: ignore[attr-defined]
    if state.async_reads is None:
        pytest.skip("PostgreSQL only: SQLite reads on the thread pool")
    assert client.portal.call(state.async_reads.energy_fingerprint, "meter-c") == energy_fingerprint(repo.reads, "meter-c")
    first = served(client)
    computed = []
    monkeypatch.setattr(assets_router, "_energy", lambda *args: computed.append(args) or pytest.fail("computed, not kept"))
    assert served(client) == first
    assert not computed
    monkeypatch.undo()
    repo.write_readings([Reading("meter-c", "energy", datetime(2024, 3, 2, 0, 30, tzinfo=UTC), 1_000.0)])
    assert served(client) == uncached(client) != first


def test_a_new_reading_written_elsewhere_gives_a_fresh_answer(client: TestClient, repo: Repository, meter: pd.DatetimeIndex) -> None:
    before = served(client)
    served(client)
    hits = lookups(client)["hit"]
    # an ingest worker's write, straight to the database: a reading inside a gap of the range
    inside = meter[100].to_pydatetime()
    repo.delete_readings("meter-c", start=inside, end=inside + timedelta(hours=1))
    after_delete = served(client)
    repo.write_readings([Reading("meter-c", "energy", inside, 500.0)], interval_seconds=3600)
    after = served(client)
    assert lookups(client)["hit"] == hits
    assert after_delete["total_energy_kwh"] < before["total_energy_kwh"] < after["total_energy_kwh"]
    assert after == uncached(client)


def test_a_correction_through_another_process_gives_a_fresh_answer(
    client: TestClient, meter: pd.DatetimeIndex, other_process: TestClient
) -> None:
    """The documented correction: delete the range, send the corrected readings. Count and extent stay the same."""
    before = served(client)
    at = meter[30]
    window = {"start": at.isoformat(), "end": (at + pd.Timedelta(hours=1)).isoformat()}
    assert other_process.delete("/api/v1/assets/meter-c/readings", params=window).json()["deleted"] == 1
    item = {"asset_id": "meter-c", "ts": window["start"], "quantity": "energy", "value": 99.5, "unit": "kWh", "interval": "PT1H"}
    assert other_process.post("/api/v1/readings", json={"readings": [item]}).status_code == 200
    after = served(client)
    assert [b["start"] for b in after["buckets"]] == [b["start"] for b in before["buckets"]]
    assert after["total_energy_kwh"] != before["total_energy_kwh"]
    assert after == uncached(client)


def test_a_changed_meter_set_up_gives_a_fresh_answer(client: TestClient, meter: pd.DatetimeIndex, other_process: TestClient) -> None:
    before = served(client)
    assert before["total_import_kwh"] > 0 and before["total_export_kwh"] == 0
    # the asset now produces: its energy counts as export
    response = other_process.patch("/api/v1/assets/meter-c", json={"attributes": {"energy_flow": "produce"}})
    assert response.status_code == 200, response.text
    after = served(client)
    assert after["total_export_kwh"] == pytest.approx(before["total_import_kwh"]) and after["total_import_kwh"] == 0
    assert after == uncached(client)


def test_a_declared_sign_convention_gives_a_fresh_answer(client: TestClient, meter: pd.DatetimeIndex, other_process: TestClient) -> None:
    before = served(client)
    response = other_process.patch("/api/v1/assets/meter-c/series/energy", json={"attributes": {"sign_convention": "export_positive"}})
    assert response.status_code == 200, response.text
    after = served(client)
    assert after["total_export_kwh"] == pytest.approx(before["total_import_kwh"]) and after["total_import_kwh"] == 0
    assert after == uncached(client)


def test_energy_and_co2_of_one_answer_come_from_one_state_of_the_data(
    client: TestClient, repo: Repository, meter: pd.DatetimeIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write landing between the energy and the CO2 reads of one answer makes both be read again."""
    site = client.get("/api/v1/assets/meter-c").json()["site_id"]
    assert client.patch(f"/api/v1/sites/{site}", json={"attributes": {"co2_factor_g_per_kwh": 400}}).status_code == 200
    original = assets_router.energy_co2
    calls: list[int] = []

    def write_then_read(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:  # an ingest worker's write, after the energy was read
            at = meter[50].to_pydatetime()
            repo.delete_readings("meter-c", start=at, end=at + timedelta(hours=1))
            repo.write_readings([Reading("meter-c", "energy", at, 900.0)], interval_seconds=3600)
        return original(*args, **kwargs)

    monkeypatch.setattr(assets_router, "energy_co2", write_then_read)
    response = client.get(URL, params={"start": START, "end": END, "bucket": "day", "with": "co2"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert len(calls) == 2  # read again once
    for b in answer["buckets"]:
        assert b["co2_kg"] == pytest.approx(b["energy_kwh"] * 0.4)
    assert answer["total_energy_kwh"] == pytest.approx(uncached(client)["total_energy_kwh"])


def test_a_range_reaching_past_a_recent_power_reading_is_not_reused(client: TestClient, repo: Repository) -> None:
    """A power sample is held until ``now`` at most: until the hold limit has passed, the answer changes with ``now``."""
    register(client, "pump-c")
    now = datetime.now(UTC).replace(microsecond=0)
    repo.write_readings([Reading("pump-c", "power", now - timedelta(minutes=m), 10.0) for m in (30, 20, 10, 1)])
    url, start, end = "/api/v1/assets/pump-c/energy", (now - timedelta(hours=1)).isoformat(), (now + timedelta(hours=1)).isoformat()
    served(client, url, start, end, "hour")
    before = lookups(client)
    served(client, url, start, end, "hour")
    assert lookups(client) == {"hit": before["hit"], "miss": before["miss"] + 1}


def test_a_settled_range_reaching_into_the_future_is_reused(client: TestClient, meter: pd.DatetimeIndex) -> None:
    """Long after the last reading, ``now`` no longer changes the answer of a range that reaches past it."""
    end = (datetime.now(UTC) + timedelta(days=40)).replace(microsecond=0).isoformat()
    first = served(client, start=START, end=end, bucket="month")
    before = lookups(client)
    assert served(client, start=START, end=end, bucket="month") == first
    assert lookups(client) == {"hit": before["hit"] + 1, "miss": before["miss"]}


def test_an_unknown_asset_is_still_a_404(client: TestClient, meter: pd.DatetimeIndex) -> None:
    response = client.get("/api/v1/assets/nobody/energy", params={"start": START, "end": END})
    assert response.status_code == 404 and response.json()["field"] == "asset_id"


def test_energy_cache_mb_zero_keeps_nothing(settings: Settings, meter: pd.DatetimeIndex) -> None:
    with TestClient(create_app(settings.model_copy(update={"energy_cache_mb": 0.0}))) as plain:
        plain.headers.update(headers_for(plain, Role.ADMIN))
        assert plain.app.state.dt.energy_answers is None  # type: ignore[attr-defined]
        assert served(plain) == uncached(plain)


def test_a_body_larger_than_a_quarter_of_the_cache_is_not_kept(repo: Repository, meter: pd.DatetimeIndex) -> None:
    answers = EnergyAnswers(400, 60.0)
    calls: list[int] = []

    def ask(size: int) -> bytes:
        def compute() -> bytes:
            calls.append(size)
            return b"x" * size

        start, end = datetime.fromisoformat(START), datetime.fromisoformat(END)
        return answers.body(repo, "meter-c", start=start, end=end, bucket=Bucket.DAY, quantity=None, max_hold=timedelta(hours=1),
                            rollups=True, now=datetime.now(UTC), compute=compute)

    assert ask(101) == ask(101) == b"x" * 101
    assert calls == [101, 101]
    answers.clear()
    assert ask(100) == ask(100) == b"x" * 100  # kept: a quarter of 400 bytes
    assert calls == [101, 101, 100]


def test_concurrent_requests_for_one_answer_compute_it_once(repo: Repository, meter: pd.DatetimeIndex) -> None:
    answers = EnergyAnswers(1_000_000, 60.0)
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def compute() -> bytes:
        calls.append(1)
        started.set()
        release.wait(10)
        return b"answer"

    def ask() -> bytes:
        start, end = datetime.fromisoformat(START), datetime.fromisoformat(END)
        return answers.body(repo, "meter-c", start=start, end=end, bucket=Bucket.DAY, quantity=None, max_hold=timedelta(hours=1),
                            rollups=True, now=datetime.now(UTC), compute=compute)

    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(ask)
        assert started.wait(10)
        others = [pool.submit(ask) for _ in range(3)]
        time.sleep(0.3)  # the others have read their key and wait
        release.set()
        assert [f.result(10) for f in (first, *others)] == [b"answer"] * 4
    assert calls == [1]


def test_a_failed_computation_is_not_shared(repo: Repository, meter: pd.DatetimeIndex) -> None:
    answers = EnergyAnswers(1_000_000, 60.0)
    start, end = datetime.fromisoformat(START), datetime.fromisoformat(END)

    def failing() -> bytes:
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError):
        answers.body(repo, "meter-c", start=start, end=end, bucket=Bucket.DAY, quantity=None, max_hold=timedelta(hours=1),
                     rollups=True, now=datetime.now(UTC), compute=failing)
    again = answers.body(repo, "meter-c", start=start, end=end, bucket=Bucket.DAY, quantity=None, max_hold=timedelta(hours=1),
                         rollups=True, now=datetime.now(UTC), compute=lambda: b"fresh")
    assert again == b"fresh"


def test_a_too_small_cache_is_refused() -> None:
    with pytest.raises(ValueError):
        EnergyAnswers(0, 60.0)
    with pytest.raises(ValueError):
        EnergyAnswers(10, 0.0)
