"""``machine_status`` (migration 0004): the latest machine state per asset by event time, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.storage.repository import Repository


def at(minute: int) -> datetime:
    return datetime(2025, 5, 1, 10, minute, tzinfo=UTC)


def test_latest_by_event_time_not_arrival(repo: Repository) -> None:
    repo.create_site(Site("s", "s", "UTC"))
    for asset_id in ("p1", "p2"):
        repo.create_asset(Asset(asset_id, "s", asset_id, AssetKind.MACHINE))
    assert repo.latest_machine_status("p1") is None

    repo.write_machine_statuses([("p1", "RUN", at(5)), ("p1", "IDLE", at(7)), ("p1", "STOP", at(6)), ("p2", "STOP", at(1))])
    assert repo.latest_machine_status("p1") == ("IDLE", at(7))
    assert repo.latest_machine_status("p2") == ("STOP", at(1))

    repo.write_machine_statuses([("p1", "RUN", at(6))])  # older than the stored one: ignored
    assert repo.latest_machine_status("p1") == ("IDLE", at(7))
    repo.write_machine_statuses([("p1", "STOP", at(7))])  # as old: the first one stays, as for readings
    assert repo.latest_machine_status("p1") == ("IDLE", at(7))
    repo.write_machine_statuses([("p1", "RUN", at(8)), ("p2", "RUN", at(2))])
    assert repo.latest_machine_status("p1") == ("RUN", at(8))
    assert repo.latest_machine_status("p2") == ("RUN", at(2))
    repo.write_machine_statuses([])  # nothing to do


def test_deleting_the_asset_deletes_its_status(repo: Repository) -> None:
    repo.create_site(Site("s", "s", "UTC"))
    repo.create_asset(Asset("p1", "s", "p1", AssetKind.MACHINE))
    repo.write_machine_statuses([("p1", "RUN", at(5))])
    from sqlalchemy import text

    with repo.engine.begin() as conn:
        conn.execute(text("DELETE FROM assets WHERE id = 'p1'"))
        assert conn.execute(text("SELECT count(*) FROM machine_status")).scalar_one() == 0
