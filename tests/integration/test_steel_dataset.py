"""Real-data figures of the steel plant (UCI 851), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from digitaltwin.analytics.buckets import Bucket
from digitaltwin.services import demo
from digitaltwin.services.energy import energy_report
from digitaltwin.storage.repository import Repository
from tests.conftest import STEEL_CSV

KST = ZoneInfo("Asia/Seoul")
HOLD = timedelta(hours=1)


@pytest.fixture
def steel(repo: Repository) -> Repository:
    report = demo.setup_and_import(repo, STEEL_CSV)
    assert report.rows_read == 35040
    assert report.readings_stored == 35040
    assert report.errors == []
    return repo


def test_year_month_and_peak(steel: Repository) -> None:
    year = energy_report(
        steel, "steel-plant", start=datetime(2018, 1, 1, tzinfo=KST), end=datetime(2019, 1, 1, tzinfo=KST), bucket=Bucket.MONTH, max_hold=HOLD
    )
    assert len(year.rows) == 12
    assert year.total_energy_kwh == pytest.approx(959_636.71, abs=1e-6)
    assert year.rows[0].start == datetime(2018, 1, 1, tzinfo=KST)
    assert year.rows[0].energy_kwh == pytest.approx(126_238.29, abs=1e-6)
    assert all(r.missing_count == 0 for r in year.rows)
    peak = max(year.rows, key=lambda r: r.peak_power_kw or 0)
    assert peak.peak_power_kw == pytest.approx(628.72, abs=1e-9)

    quarter = energy_report(
        steel, "steel-plant", start=datetime(2018, 1, 1, tzinfo=KST), end=datetime(2019, 1, 1, tzinfo=KST), bucket=Bucket.QUARTER_HOUR, max_hold=HOLD
    )
    largest = max(quarter.rows, key=lambda r: r.energy_kwh or 0)
    assert largest.energy_kwh == pytest.approx(157.18, abs=1e-9)
    assert largest.start == datetime(2018, 11, 22, 9, 30, tzinfo=KST)
    assert largest.start.isoformat() == "2018-11-22T00:30:00+00:00"


def test_reimport_changes_nothing(steel: Repository) -> None:
    again = demo.setup_and_import(steel, STEEL_CSV)
    assert again.readings_stored == 0
    assert again.duplicates == 35040
    page = steel.read_page("steel-plant", limit=2)
    assert [r.ts.isoformat() for r in page.rows] == ["2017-12-31T15:00:00+00:00", "2017-12-31T15:15:00+00:00"]
    assert page.rows[0].value == pytest.approx(3.17)


def test_midnight_rows_close_their_day(steel: Repository) -> None:
    """The file's '01/01/2018 00:00' row is 24:00 of Jan 1: the interval 23:45-24:00 local."""
    day = energy_report(
        steel, "steel-plant", start=datetime(2018, 1, 1, tzinfo=KST), end=datetime(2018, 1, 2, tzinfo=KST), bucket=Bucket.DAY, max_hold=HOLD
    )
    assert day.rows[0].sample_count == 96
    last = steel.read_page("steel-plant", start=datetime(2018, 1, 1, 23, 45, tzinfo=KST), limit=1).rows[0]
    assert last.ts == datetime(2018, 1, 1, 23, 45, tzinfo=KST)
