"""A counter's long spans are gaps in the forecasting target exactly as in the energy report.

The newcomer's counter (Europe/Berlin, 15-minute register readings at 50 kW from 2026-11-20),
with a stray reading of 0 kWh stamped 2005-01-01 and a three-day outage: the increases over both
long spans went into the training target spread flat over 22 years and three days. SQLite and
PostgreSQL (the ``repo`` fixture).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from digitaltwin.analytics.buckets import Bucket
from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.domain.readings import Reading
from digitaltwin.registry.store import ModelRegistry
from digitaltwin.services.energy import energy_report
from digitaltwin.services.forecasting import ForecastService
from digitaltwin.storage.repository import Repository

HOLD = timedelta(hours=1)
FIRST = datetime(2026, 11, 20, tzinfo=UTC)
QUARTER = timedelta(minutes=15)
OUTAGE = (datetime(2026, 11, 22, 23, tzinfo=UTC), datetime(2026, 11, 25, 23, tzinfo=UTC))


@pytest.fixture
def counter(repo: Repository) -> Repository:
    repo.create_site(Site("berlin", "Berlin", "Europe/Berlin", "DE"))
    repo.create_asset(Asset("c1", "berlin", "counter", AssetKind.METER))
    rows = [Reading("c1", "energy_total", datetime(2005, 1, 1, tzinfo=UTC), 0.0)]
    for i in range(768):  # 2026-11-20T00:00Z .. 2026-11-27T23:45Z
        ts = FIRST + i * QUARTER
        if not OUTAGE[0] <= ts < OUTAGE[1]:
            rows.append(Reading("c1", "energy_total", ts, 100_000.0 + 12.5 * i))
    repo.write_readings(rows)
    return repo


def test_target_has_the_reports_gaps_and_no_invented_energy(counter: Repository, tmp_path: Path) -> None:
    service = ForecastService(counter, ModelRegistry(tmp_path / "models"), max_hold=HOLD)
    start, end = datetime(2026, 11, 15, tzinfo=UTC), datetime(2026, 11, 27, 23, 45, tzinfo=UTC)
    target = service.target("c1", start=start, end=end)
    report = energy_report(counter, "c1", start=start, end=end, bucket=Bucket.QUARTER_HOUR, max_hold=HOLD)
    expected = pd.Series(
        [r.energy_kwh for r in report.rows],
        index=pd.DatetimeIndex([r.start for r in report.rows]).tz_convert("UTC"),
        dtype="float64",
        name="c1",
    )
    pd.testing.assert_series_equal(target.y, expected, check_exact=True)

    y = target.y
    assert y[: FIRST - QUARTER].isna().all()  # before the first real reading: the span from 2005 is a gap
    assert y[OUTAGE[0] - QUARTER : OUTAGE[1] - QUARTER].isna().all()  # the outage, from the last reading before it
    finite = y[np.isfinite(y.to_numpy())]
    assert finite.to_numpy() == pytest.approx(np.full(len(finite), 12.5))  # 50 kW: nothing spread flat
    assert len(finite) == (OUTAGE[0] - QUARTER - FIRST) // QUARTER + (end - OUTAGE[1]) // QUARTER


def test_target_over_all_data_starts_its_energy_at_the_first_real_reading(counter: Repository, tmp_path: Path) -> None:
    service = ForecastService(counter, ModelRegistry(tmp_path / "models"), max_hold=HOLD)
    y = service.target("c1").y
    finite = y[np.isfinite(y.to_numpy())]
    assert finite.index[0] == FIRST
    assert finite.to_numpy() == pytest.approx(np.full(len(finite), 12.5))
