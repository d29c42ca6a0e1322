"""Energy from rollups equals energy from raw readings, on real data, SQLite and PostgreSQL.

The steel plant (UCI 851, 15-minute interval energy, Asia/Seoul) also as a counter and a power
meter with gaps, and Cambridge building b2 (hourly, Europe/London, gaps across both 2019 DST
changes). Every report is computed twice, from rollups and from raw readings, before and after
late, out-of-order and corrected readings, deletions, a counter reset and a meter replacement.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from digitaltwin.analytics.buckets import Bucket
from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.domain.readings import Reading
from digitaltwin.services import demo
from digitaltwin.services.energy import EnergyReport, energy_report
from digitaltwin.services.interval_flows import interval_flows
from digitaltwin.storage.meter_events import MeterEventStore
from digitaltwin.storage.repository import Repository
from digitaltwin.storage.rollups import RollupStore
from tests.conftest import REPO_ROOT, STEEL_CSV

HOLD = timedelta(hours=1)
CAMBRIDGE = REPO_ROOT / "datasets" / "cambridge_estates_2019"
KST = ZoneInfo("Asia/Seoul")
LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def write(repo: Repository, asset_id: str, quantity: str, series: pd.Series, *, interval_seconds: int | None = None) -> None:
    rows = [Reading(asset_id, quantity, ts.to_pydatetime(), float(v)) for ts, v in series.items()]
    for i in range(0, len(rows), 5000):
        repo.write_readings(rows[i : i + 5000], interval_seconds=interval_seconds)


@pytest.fixture
def plants(repo: Repository) -> Repository:
    """The steel plant with gaps, its energy as counter and power meters, and Cambridge b2."""
    assert demo.setup_and_import(repo, STEEL_CSV).readings_stored == 35040
    repo.delete_readings("steel-plant", start=utc(2018, 12, 10, 3), end=utc(2018, 12, 11, 3))
    repo.delete_readings("steel-plant", start=utc(2018, 12, 27, 8, 15), end=utc(2018, 12, 27, 8, 30))
    stored = repo.read_page("steel-plant", start=utc(2018, 10, 1), limit=100_000)
    energy = pd.Series([r.value for r in stored.rows], index=pd.DatetimeIndex([r.ts for r in stored.rows]))
    site = repo.get_asset("steel-plant").site_id
    for asset_id in ("steel-counter", "steel-power"):
        repo.create_asset(Asset(asset_id, site, asset_id, AssetKind.METER))
    write(repo, "steel-counter", "energy_total", 1000.0 + energy.cumsum())
    write(repo, "steel-counter", "energy_export_total", 50.0 + 0.1 * energy.cumsum())  # its pair: the other direction
    write(repo, "steel-power", "power", energy * 4.0)
    repo.create_site(Site("cambridge", "Cambridge", "Europe/London", "GB"))
    repo.create_asset(Asset("b2", "cambridge", "Building b2", AssetKind.BUILDING))
    frame = pd.read_csv(CAMBRIDGE / "UCam_Building_b2/electricity/2019.csv")
    load = pd.Series(frame["equipment load [kWh]"].to_numpy(dtype=float), index=pd.DatetimeIndex(pd.to_datetime(frame["datetime"])).tz_localize("UTC"))
    for gap_start, gap_end in (("2019-03-30 20:00", "2019-03-31 02:00"), ("2019-10-27 00:00", "2019-10-27 03:00")):
        load = load.drop(load.index[(load.index >= gap_start) & (load.index < gap_end)])
    write(repo, "b2", "energy", load.dropna(), interval_seconds=3600)
    return repo


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def assert_same(rolled: EnergyReport, raw: EnergyReport) -> None:
    assert len(rolled.rows) == len(raw.rows)
    for r, w in zip(rolled.rows, raw.rows, strict=True):
        assert (r.start, r.end, r.sample_count, r.expected_count, r.missing_count, r.events) == (
            w.start, w.end, w.sample_count, w.expected_count, w.missing_count, w.events,
        ), r.start
        for name in ("energy_kwh", "mean_power_kw", "peak_power_kw", "import_kwh", "export_kwh", "net_kwh"):
            assert close(getattr(r, name), getattr(w, name)), (r.start, name, getattr(r, name), getattr(w, name))
    assert [(e.kind, e.start_s, e.end_s) for e in rolled.events] == [(e.kind, e.start_s, e.end_s) for e in raw.events]


def both(repo: Repository, asset_id: str, start: datetime, end: datetime, bucket: Bucket) -> EnergyReport:
    """The report from rollups, checked against the raw one."""
    kw = {"start": start, "end": end, "bucket": bucket, "max_hold": HOLD, "now": NOW}
    rolled = energy_report(repo, asset_id, use_rollups=True, **kw)
    assert_same(rolled, energy_report(repo, asset_id, use_rollups=False, **kw))
    return rolled


CASES = [
    ("steel-plant", datetime(2018, 1, 1, tzinfo=KST), datetime(2019, 1, 1, tzinfo=KST), Bucket.MONTH),
    ("steel-plant", datetime(2018, 1, 1, tzinfo=KST), datetime(2019, 1, 1, tzinfo=KST), Bucket.WEEK),
    ("steel-plant", datetime(2018, 11, 1, tzinfo=KST), datetime(2019, 1, 1, tzinfo=KST), Bucket.DAY),
    ("steel-plant", utc(2018, 12, 9, 22, 7, 30), utc(2018, 12, 21, 0, 0, 1), Bucket.HOUR),  # unaligned ends
    ("steel-plant", utc(2018, 12, 1), utc(2018, 12, 31), Bucket.QUARTER_HOUR),
    ("steel-counter", utc(2018, 10, 3), utc(2019, 1, 1), Bucket.DAY),
    ("steel-counter", utc(2018, 12, 5, 0, 1), utc(2018, 12, 29, 23, 59), Bucket.HOUR),
    ("steel-power", utc(2018, 10, 3), utc(2019, 1, 1), Bucket.WEEK),
    ("steel-power", utc(2018, 12, 5, 0, 0, 7), utc(2018, 12, 29), Bucket.QUARTER_HOUR),
    ("b2", datetime(2019, 1, 1, tzinfo=LONDON), datetime(2020, 1, 1, tzinfo=LONDON), Bucket.MONTH),
    ("b2", datetime(2019, 1, 1, tzinfo=LONDON), datetime(2020, 1, 1, tzinfo=LONDON), Bucket.DAY),  # 23 h and 25 h days
    ("b2", utc(2019, 3, 25), utc(2019, 4, 8), Bucket.HOUR),  # spring forward, a gap around it
    ("b2", utc(2019, 10, 20, 0, 20), utc(2019, 11, 3, 0, 30), Bucket.QUARTER_HOUR),  # fall back
]


def test_rollups_equal_raw_on_real_data(plants: Repository) -> None:
    for asset_id, start, end, bucket in CASES:
        both(plants, asset_id, start, end, bucket)
    # The answers came from stored cells, not from the raw fallback.
    store = RollupStore(plants.engine)
    for asset_id, quantity in (("steel-plant", "energy"), ("steel-counter", "energy_total"), ("steel-power", "power"), ("b2", "energy")):
        info = plants.find_series(asset_id, quantity)
        assert info is not None and store.count(info.id) > 1000


def test_dst_days_have_their_hours_from_rollups(plants: Repository) -> None:
    report = both(plants, "b2", datetime(2019, 3, 30, tzinfo=LONDON), datetime(2019, 4, 1, tzinfo=LONDON), Bucket.HOUR)
    days = pd.Series([r.start.astimezone(LONDON).date() for r in report.rows]).value_counts().sort_index()
    assert days.tolist() == [24, 23]
    report = both(plants, "b2", datetime(2019, 10, 27, tzinfo=LONDON), datetime(2019, 10, 28, tzinfo=LONDON), Bucket.HOUR)
    assert len(report.rows) == 25


def test_late_out_of_order_and_corrected_readings_deletions_reset_and_replacement(plants: Repository) -> None:
    month = (utc(2018, 11, 1), utc(2019, 1, 1))
    for asset_id in ("steel-plant", "steel-counter", "steel-power", "b2"):
        start, end = (utc(2019, 1, 1), utc(2020, 1, 1)) if asset_id == "b2" else month
        both(plants, asset_id, start, end, Bucket.DAY)  # builds the rollups
    before = both(plants, "steel-plant", *month, Bucket.DAY)
    # Late readings into the deleted day, out of order, and a corrected value on 2018-12-15.
    late = [Reading("steel-plant", "energy", utc(2018, 12, 10, 3) + timedelta(minutes=15 * k), 7.0) for k in range(96)][::-1]
    plants.write_readings(late)
    plants.delete_readings("steel-plant", start=utc(2018, 12, 15, 6), end=utc(2018, 12, 15, 6, 15))
    plants.write_readings([Reading("steel-plant", "energy", utc(2018, 12, 15, 6), 99.0)])
    after = both(plants, "steel-plant", *month, Bucket.DAY)
    assert after.total_energy_kwh != pytest.approx(before.total_energy_kwh)
    both(plants, "steel-plant", *month, Bucket.WEEK)  # Seoul's weeks hold whole UTC days: read from the day sums
    # A deleted stretch of power samples: the sample before it is held up to the hold, then a gap.
    plants.delete_readings("steel-power", start=utc(2018, 12, 3, 10), end=utc(2018, 12, 3, 16, 5))
    both(plants, "steel-power", *month, Bucket.HOUR)
    both(plants, "steel-power", *month, Bucket.WEEK)
    # A counter reset (from 2018-12-12 the register counts again from 5 kWh, resent corrected)
    # and a glitch (one low reading that comes back).
    resent = plants.read_page("steel-counter", start=utc(2018, 12, 12), limit=100_000).rows
    plants.delete_readings("steel-counter", start=utc(2018, 12, 12), end=utc(2100, 1, 1))
    offset = resent[0].value - 5.0
    plants.write_readings([Reading("steel-counter", "energy_total", r.ts, r.value - offset) for r in resent])
    plants.delete_readings("steel-counter", start=utc(2018, 11, 20, 4), end=utc(2018, 11, 20, 4, 15))
    plants.write_readings([Reading("steel-counter", "energy_total", utc(2018, 11, 20, 4), 0.0)])
    report = both(plants, "steel-counter", *month, Bucket.DAY)
    assert {"reset", "glitch"} <= {e.kind.value for e in report.events}
    # A meter replacement recorded afterwards changes the rollups of the series.
    info = plants.find_series("steel-counter", "energy_total")
    assert info is not None
    old = plants.previous_reading(info.id, utc(2018, 12, 20, 12))
    new = plants.next_reading(info.id, utc(2018, 12, 20, 13))
    assert old is not None and new is not None
    MeterEventStore(plants.engine).add_replacement(info.id, old=old, new=(new[0], new[1] - 40.0))
    report = both(plants, "steel-counter", *month, Bucket.DAY)
    assert "replacement" in {e.kind.value for e in report.events}
    both(plants, "steel-counter", *month, Bucket.WEEK)
    both(plants, "steel-counter", utc(2018, 12, 20), utc(2018, 12, 21), Bucket.QUARTER_HOUR)
    # New readings past the end move the frontier; deleting the end moves it back.
    last = plants.previous_reading(info.id, utc(2100, 1, 1))
    assert last is not None
    plants.write_readings([Reading("steel-counter", "energy_total", last[0] + timedelta(minutes=15 * k), last[1] + k) for k in range(1, 200)])
    both(plants, "steel-counter", utc(2018, 12, 1), last[0] + timedelta(days=3), Bucket.HOUR)
    both(plants, "steel-counter", utc(2018, 12, 1), last[0] + timedelta(days=3), Bucket.WEEK)
    plants.delete_readings("steel-counter", start=last[0] - timedelta(days=1), end=last[0] + timedelta(days=10))
    both(plants, "steel-counter", utc(2018, 12, 1), last[0] + timedelta(days=3), Bucket.HOUR)
    both(plants, "steel-counter", utc(2018, 12, 1), last[0] + timedelta(days=3), Bucket.WEEK)
    both(plants, "b2", datetime(2019, 1, 1, tzinfo=LONDON), datetime(2020, 1, 1, tzinfo=LONDON), Bucket.WEEK)


def test_asset_rating_change_recomputes_quarantine(plants: Repository) -> None:
    both(plants, "steel-power", utc(2018, 12, 1), utc(2019, 1, 1), Bucket.DAY)
    asset = plants.get_asset("steel-power")
    plants.update_asset(Asset(asset.id, asset.site_id, asset.name, asset.kind, rated_power_kw=30.0))
    report = both(plants, "steel-power", utc(2018, 12, 1), utc(2019, 1, 1), Bucket.DAY)
    assert "quarantined" in {e.kind.value for e in report.events}


@pytest.mark.parametrize("minutes", [15, 60])
def test_bill_input_from_rollups_equals_raw(plants: Repository, minutes: int) -> None:
    for asset_id, start, end in (
        ("steel-power", utc(2018, 11, 1), utc(2019, 1, 1, 6)),
        ("steel-counter", utc(2018, 11, 1), utc(2019, 1, 1, 6)),
        ("b2", utc(2019, 3, 1), utc(2019, 11, 1)),
    ):
        kw = {"start": start, "end": end, "step": timedelta(minutes=minutes), "max_hold": HOLD, "now": NOW}
        rolled, raw = interval_flows(plants, asset_id, use_rollups=True, **kw), interval_flows(plants, asset_id, use_rollups=False, **kw)
        for name in ("import_kwh", "export_kwh", "import_coverage", "export_coverage"):
            np.testing.assert_allclose(getattr(rolled, name), getattr(raw, name), rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=name)
        assert rolled.covered.tolist() == raw.covered.tolist()
        assert [(e.kind, e.start_s, e.end_s) for e in rolled.events] == [(e.kind, e.start_s, e.end_s) for e in raw.events]


def test_concurrent_first_queries_build_once_and_agree(repo: Repository) -> None:
    """Four requests reading a series whose rollups are not built yet, at once."""
    from concurrent.futures import ThreadPoolExecutor

    repo.create_site(Site("kathmandu", "Kathmandu", "Asia/Kathmandu", "NP"))  # UTC+05:45
    repo.create_asset(Asset("pump", "kathmandu", "pump", AssetKind.MACHINE))
    t0 = utc(2026, 1, 1)
    repo.write_readings([Reading("pump", "power", t0 + timedelta(minutes=5 * k), 10.0 + (k % 7)) for k in range(20_000)])
    kw = {"start": t0, "end": t0 + timedelta(days=60), "bucket": Bucket.DAY, "max_hold": HOLD, "now": NOW + timedelta(days=365)}
    with ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(lambda _: energy_report(repo, "pump", use_rollups=True, **kw), range(4)))
    raw = energy_report(repo, "pump", use_rollups=False, **kw)
    for report in reports:
        assert_same(report, raw)
    # "now" inside the range, with readings stamped after it: the sample before the range's end
    # is held up to now only, as the raw path holds it.
    for now in (t0 + timedelta(days=30, minutes=7), t0, t0 - timedelta(days=1)):
        assert_same(energy_report(repo, "pump", use_rollups=True, **(kw | {"now": now})), energy_report(repo, "pump", use_rollups=False, **(kw | {"now": now})))
    assert [r.start.astimezone(ZoneInfo("Asia/Kathmandu")).strftime("%H:%M") for r in raw.rows[1:3]] == ["00:00", "00:00"]


def test_a_later_replacement_recomputes_its_swap_window_only(plants: Repository) -> None:
    from digitaltwin.services.energy_rollups import _changed_swaps, rules_key

    asset = plants.get_asset("steel-counter")
    info = plants.find_series("steel-counter", "energy_total")
    assert info is not None
    before = rules_key(plants, asset, info, HOLD)
    old, new = (utc(2018, 12, 20, 12), 5000.0), (utc(2018, 12, 20, 13), 10.0)
    MeterEventStore(plants.engine).add_replacement(info.id, old=old, new=new)
    after = rules_key(plants, asset, info, HOLD)
    assert before is not None and after is not None
    assert _changed_swaps(before, after) == [(old[0].timestamp(), new[0].timestamp())]
    plants.update_asset(Asset(asset.id, asset.site_id, asset.name, asset.kind, rated_power_kw=500.0))
    rated = rules_key(plants, plants.get_asset("steel-counter"), info, HOLD)
    assert rated is not None and _changed_swaps(after, rated) is None  # other rules: the series is recomputed whole
