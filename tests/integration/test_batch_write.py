"""Batch writes of readings on SQLite and PostgreSQL: a missing series is refused (on PostgreSQL by
the statement-level check of migration 0009), deleting a series deletes its readings, and a
batch stores nothing twice whichever path (direct COPY or through the staging table) it takes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import delete, func, select

from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.domain.readings import Reading
from digitaltwin.storage.repository import Repository, SeriesInfo
from digitaltwin.storage.tables import energy_rollup_dirty, readings, series

T0 = datetime(2024, 5, 1, tzinfo=UTC)
US = 900 * 1_000_000


def _series(repo: Repository) -> int:
    repo.create_site(Site("s", "s", "UTC"), exist_ok=True)
    repo.create_asset(Asset("m", "s", "m", AssetKind.METER), exist_ok=True)
    return repo.ensure_series("m", "energy", interval_seconds=900).id


def _count(repo: Repository) -> int:
    with repo.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(readings)).scalar_one())


def test_a_missing_series_is_refused(repo: Repository) -> None:
    sid = _series(repo)
    ts = int(T0.timestamp() * 1e6) + np.arange(3) * US
    with pytest.raises(Exception, match="(?i)foreign key"):
        repo.store_arrays(np.array([sid, sid + 1000, sid]), ts, np.ones(3))
    assert _count(repo) == 0  # the whole batch was refused
    repo.store_arrays(np.array([sid] * 3), ts, np.ones(3))
    with pytest.raises(Exception, match="(?i)foreign key"):  # through the staging table too
        repo.store_arrays(np.array([sid, sid + 1000]), ts[:2], np.array([1.0, 2.0]))
    assert _count(repo) == 3


def test_deleting_a_series_deletes_its_readings(repo: Repository) -> None:
    sid = _series(repo)
    repo.store_readings([Reading("m", "energy", T0, 1.0), Reading("m", "power", T0, 2.0)])
    assert _count(repo) == 2
    with repo.engine.begin() as conn:
        conn.execute(delete(series).where(series.c.id == sid))
    assert _count(repo) == 1


def test_nothing_is_stored_twice_and_conflicts_name_their_rows(repo: Repository) -> None:
    sid = _series(repo)
    ts = int(T0.timestamp() * 1e6) + np.arange(1000) * US
    values = np.arange(1000, dtype=float)
    first = repo.store_arrays(np.full(1000, sid), ts, values)
    assert (first.stored, first.duplicates, first.conflicts) == (1000, 0, [])
    changed = values.copy()
    changed[[10, 500]] = -1.0
    again = repo.store_arrays(np.full(1000, sid), ts, changed)
    assert (again.stored, again.duplicates) == (0, 998)
    assert [(c.position, c.stored_value, c.new_value) for c in again.conflicts] == [(10, 10.0, -1.0), (500, 500.0, -1.0)]
    assert _count(repo) == 1000
    outcome = repo.store_readings([Reading("m", "energy", T0, 7.0), Reading("m", "energy", T0, 5.0)], replace=True)
    # The batch's 5.0 follows its 7.0 and replaces the stored 0.0: both reported, the last one stays.
    assert (outcome.stored, outcome.duplicates) == (0, 0)
    assert sorted((c.stored_value, c.new_value) for c in outcome.conflicts) == [(0.0, 5.0), (7.0, 5.0)]
    assert repo.read_page("m", limit=1).rows[0].value == 5.0


def test_a_series_created_meanwhile_is_the_one_returned(repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    """ensure_series that found no series, then loses the race to create it, returns the row the
    other writer created (one row, its interval kept) instead of failing on the unique pair."""
    first = _series(repo)  # "another process" created it, interval 900
    other = Repository(repo.engine)  # its own series cache
    looked = []

    def find_series(asset_id: str, quantity: str, *, fresh: bool = False) -> SeriesInfo | None:
        looked.append(1)  # the first look happened before the other writer's commit: nothing yet
        return None if len(looked) == 1 else Repository.find_series(other, asset_id, quantity, fresh=fresh)

    monkeypatch.setattr(other, "find_series", find_series)
    created = other.ensure_series("m", "energy", interval_seconds=3600)
    assert created.id == first and created.interval_seconds == 900
    with repo.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(series)).scalar_one() == 1


def test_a_new_series_comes_back_as_stored(repo: Repository) -> None:
    sid = _series(repo)
    fresh = Repository(repo.engine).find_series("m", "energy")
    assert fresh is not None and fresh.id == sid and fresh.interval_seconds == 900 and fresh.unit == "kWh"
    assert repo.ensure_series("m", "energy") == fresh


def _chunks(*parts: tuple[list[int], list[int], list[float]]) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    for sids, offsets, values in parts:
        yield np.array(sids), int(T0.timestamp() * 1e6) + np.array(offsets) * US, np.array(values, dtype=float)


def test_a_streamed_batch_is_stored_only_when_all_new_and_confirmed(repo: Repository) -> None:
    if repo.engine.dialect.name != "postgresql":
        pytest.skip("batches are streamed on PostgreSQL only")
    sid = _series(repo)
    seen: list[int] = []
    # A key repeated in a later chunk: the COPY fails on the primary key, nothing is stored.
    assert repo.stream_new_readings(_chunks(([sid] * 2, [0, 1], [1, 2]), ([sid], [1], [2])), lambda *a: True) is None
    # Refused by confirm, which sees the whole batch: nothing is stored.
    refuse = lambda sids, ts, values: seen.append(len(sids)) or False  # noqa: E731
    assert repo.stream_new_readings(_chunks(([sid] * 2, [0, 1], [1, 2]), ([sid], [2], [3])), refuse) is None
    assert seen == [3] and _count(repo) == 0
    with repo.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(energy_rollup_dirty)).scalar_one() == 0
    outcome = repo.stream_new_readings(_chunks(([sid] * 2, [0, 1], [1, 2]), ([sid], [5], [3])), lambda *a: True)
    assert outcome is not None and (outcome.stored, outcome.duplicates, outcome.conflicts) == (3, 0, [])
    assert _count(repo) == 3
    with repo.engine.connect() as conn:  # one change mark over the batch's span, as write_arrays leaves
        marks = conn.execute(select(energy_rollup_dirty.c.series_id, energy_rollup_dirty.c.lo_s, energy_rollup_dirty.c.hi_s)).all()
    assert [tuple(m) for m in marks] == [(sid, T0.timestamp(), T0.timestamp() + 5 * 900)]
    # The first chunk's span holds a reading (at 5): not streamed (write_arrays tells duplicates from conflicts).
    assert repo.stream_new_readings(_chunks(([sid] * 2, [4, 6], [9, 9]),), lambda *a: True) is None
    assert _count(repo) == 3
