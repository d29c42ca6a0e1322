"""The forecasting target applies the series' meter rules as the energy report does: a declared
meter replacement and a register modulus are the same numbers in both (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from digitaltwin.analytics.buckets import Bucket
from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.domain.readings import Reading
from digitaltwin.registry.store import ModelRegistry
from digitaltwin.services.energy import energy_report
from digitaltwin.services.forecasting import ForecastService
from digitaltwin.services.meter import ReplacementIn, declare_series, record_replacement
from digitaltwin.storage.repository import Repository

HOLD = timedelta(hours=1)
FIRST = datetime(2026, 11, 20, tzinfo=UTC)
Q = timedelta(minutes=15)


def test_target_and_report_agree_under_a_replacement_and_a_modulus(repo: Repository, tmp_path: Path) -> None:
    repo.create_site(Site("berlin", "Berlin", "Europe/Berlin", "DE"))
    repo.create_asset(Asset("c1", "berlin", "counter", AssetKind.METER))
    # old meter wraps at 100 000 kWh, 12.5 kWh per quarter; swapped for a used meter at 30 000 kWh
    old = [Reading("c1", "energy_total", FIRST + i * Q, (99_000.0 + 12.5 * i) % 100_000.0) for i in range(200)]
    new_start = FIRST + 201 * Q
    new = [Reading("c1", "energy_total", new_start + i * Q, 30_000.0 + 12.5 * i) for i in range(200)]
    repo.write_readings(old + new)
    declare_series(repo, "c1", "energy_total", {"counter_modulus_kwh": 100_000.0})
    record_replacement(repo, "c1", ReplacementIn("energy_total", FIRST + 199 * Q, old[-1].value, new_start, 30_000.0))

    service = ForecastService(repo, ModelRegistry(tmp_path / "models"), max_hold=HOLD)
    start, end = FIRST, new_start + 199 * Q
    target = service.target("c1", start=start, end=end)
    report = energy_report(repo, "c1", start=start, end=end, bucket=Bucket.QUARTER_HOUR, max_hold=HOLD)
    expected = pd.Series(
        [r.energy_kwh for r in report.rows], index=pd.DatetimeIndex([r.start for r in report.rows]).tz_convert("UTC"),
        dtype="float64", name="c1",
    )
    pd.testing.assert_series_equal(target.y, expected.loc[target.y.index], check_exact=True)
    y = target.y.to_numpy()
    assert np.nanmax(y) == 12.5 and np.nanmin(y) == 12.5  # no wrap, no swap booked as energy
    assert {e.kind.value for e in report.events} == {"rollover", "replacement"}
    assert target.y[FIRST + 199 * Q : new_start - Q].isna().all()  # the swap window is a gap
