"""The readings page written by orjson is the text pydantic writes for the same page, byte for byte."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from digitaltwin.api.routers.assets import readings_body, readings_out
from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.domain.readings import Reading
from digitaltwin.domain.errors import NotFoundError
from digitaltwin.storage.async_reads import AsyncReads
from digitaltwin.storage.repository import Repository

T0 = datetime(2024, 3, 30, 22, 0, 0, 125_000, tzinfo=UTC)


def test_the_fast_body_is_the_models_json(repo: Repository) -> None:
    repo.create_site(Site("s", "S", "Europe/Berlin"))
    repo.create_asset(Asset("m", "s", "M", AssetKind.METER))
    # two series interleaved, microseconds in the stamps, floats that need care, a whole number
    repo.write_readings([Reading("m", "power", T0 + timedelta(minutes=7 * i), 0.1 * i + 1 / 3) for i in range(30)])
    repo.write_readings([Reading("m", "energy", T0 + timedelta(minutes=15 * i), 1e-7 * i + 2.0) for i in range(20)])
    cursor = None
    pages = 0
    while True:
        page = repo.read_page("m", limit=7, cursor=cursor)
        assert readings_body("m", page) == readings_out("m", page).model_dump_json().encode()
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 8  # 50 readings, 7 per page: the cursor of each page was written too
    empty = repo.read_page("m", start=T0 + timedelta(days=9))
    assert readings_body("m", empty) == readings_out("m", empty).model_dump_json().encode()


def test_unknown_asset_is_404_after_the_parameters_are_checked(client: TestClient) -> None:
    missing = client.get("/api/v1/assets/nowhere/readings")
    assert missing.status_code == 404 and missing.json()["field"] == "asset_id"
    bad = client.get("/api/v1/assets/nowhere/readings", params={"start": "yesterday"})
    assert bad.status_code == 422 and bad.json()["field"] == "start"


def test_the_one_statement_page_of_postgresql_is_the_generic_page(repo: Repository) -> None:
    """The one-statement page, read on the thread pool's connections and on the event loop's
    (storage/async_reads.py), is the generic two-statement page, cursor by cursor."""
    if repo.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has only the generic page")
    reads = AsyncReads(repo.engine)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(reads.open())
    repo.create_site(Site("s", "S", "Europe/Berlin"))
    repo.create_asset(Asset("m", "s", "M", AssetKind.METER))
    repo.create_asset(Asset("empty", "s", "E", AssetKind.METER))
    repo.write_readings([Reading("m", "power", T0 + timedelta(minutes=5 * i), float(i)) for i in range(40)])
    repo.write_readings([Reading("m", "energy", T0 + timedelta(minutes=15 * i), 0.5 * i) for i in range(14)])
    cases = [
        {}, {"quantity": "energy"}, {"quantity": "voltage"}, {"start": T0 + timedelta(minutes=30)},
        {"end": T0 + timedelta(hours=2)}, {"start": T0 + timedelta(minutes=15), "end": T0 + timedelta(hours=1), "quantity": "power"},
        {"start": T0 + timedelta(days=3)},
    ]
    pages = 0
    for case in cases:
        for asset in ("m", "empty", "nowhere"):
            cursor = None
            while True:
                args = dict(start=case.get("start"), end=case.get("end"), quantity=case.get("quantity"), limit=6)
                after = None if cursor is None else _decode(cursor)
                fast = repo._read_page_postgres(asset, args["start"], args["end"], args["quantity"], 6, after, False)
                generic = repo._read_page_generic(asset, args["start"], args["end"], args["quantity"], 6, after, False)
                awaited = loop.run_until_complete(reads.read_page(asset, **args, cursor=cursor))
                assert fast == generic == awaited, (case, asset, cursor)
                pages += 1
                if fast.next_cursor is None:
                    break
                cursor = fast.next_cursor
    assert pages > len(cases) * 3  # some cases took several pages
    with pytest.raises(NotFoundError) as unknown:
        loop.run_until_complete(reads.read_page("nowhere", asset_must_exist=True))
    assert unknown.value.field == "asset_id"
    loop.run_until_complete(reads.close())
    loop.close()


def _decode(cursor: str) -> tuple[datetime, int]:
    from digitaltwin.storage.repository import decode_cursor

    return decode_cursor(cursor)
