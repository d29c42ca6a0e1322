"""Readings of many series at once equal what the energy report reads of each (read_window), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.domain.readings import Reading
from digitaltwin.services.energy import COUNTER_CONTEXT_READINGS, read_window
from digitaltwin.storage.repository import ReadingSpan, Repository

T = datetime(2026, 2, 2, tzinfo=UTC)


def test_many_series_with_their_context_as_read_window_reads_each(repo: Repository) -> None:
    """130 counters (two context statements: more terms than one holds) and 130 power meters with
    sparse, irregular readings and spans of their own."""
    repo.create_site(Site("s", "s", "UTC"))
    rng = np.random.default_rng(5)
    spans, infos = [], []
    for i in range(260):
        asset_id = f"m{i:03d}"
        repo.create_asset(Asset(asset_id, "s", asset_id, AssetKind.METER))
        quantity = "energy_total" if i % 2 else "power"
        minutes = np.sort(rng.choice(24 * 60, size=int(rng.integers(0, 40)), replace=False))
        readings = [Reading(asset_id, quantity, T + timedelta(minutes=int(m)), float(10 + k)) for k, m in enumerate(minutes)]
        if readings:
            repo.write_readings(readings)
        info = repo.ensure_series(asset_id, quantity)
        start = T + timedelta(hours=int(rng.integers(0, 20)))
        end = start + timedelta(hours=int(rng.integers(1, 4)))
        counter = quantity == "energy_total"
        spans.append(ReadingSpan(info.id, start, end, COUNTER_CONTEXT_READINGS if counter else 1, COUNTER_CONTEXT_READINGS if counter else 0))
        infos.append(info)
    got = repo.readings_with_context(spans)
    for span, info in zip(spans, infos, strict=True):
        one = read_window(repo, info, span.start, span.end)
        np.testing.assert_array_equal(got[info.id][0], one.ts_s, err_msg=info.asset_id)
        np.testing.assert_array_equal(got[info.id][1], one.values, err_msg=info.asset_id)
    assert sum(len(got[i.id][0]) for i in infos) > 1000
