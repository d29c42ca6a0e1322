"""Field cases on time, end to end through CSV import, storage and energy analytics (SQLite and PostgreSQL).

Each test names its case file under ``/work/shared/cases/time/``; the CSV inputs are the
cases' own, written to ``tmp_path`` and imported with :func:`import_csv`:

* ``bucket-alignment-local-day-monday-week.md``: ``test_weekly_buckets_start_on_monday``,
  ``test_daily_buckets_follow_the_site_timezone``
* ``dst-fall-back-repeated-hour.md``: ``test_fall_back_repeated_hour_stays_two_hours``
* ``dst-spring-forward-23h-day.md``: ``test_spring_forward_day_has_23_hours``
* ``leap-day-and-leap-second.md``: ``test_leap_february_in_monthly_and_daily_rollups``,
  ``test_leap_second_is_rejected_and_not_stored`` (the "same day last year" bullet is not
  covered: the product has no such comparison yet)
* ``naive-timestamps.md``: ``test_naive_local_times_take_the_site_timezone``,
  ``test_naive_times_without_any_timezone_are_rejected``,
  ``test_offset_forms_of_the_second_row_are_the_same_reading``
* ``csv-ambiguous-local-times.md``: ``test_repeated_local_hour_is_resolved_by_file_order``,
  ``test_lone_ambiguous_time_is_the_only_rejected_row``,
  ``test_repeated_hour_is_resolved_per_meter_in_a_multi_meter_file``
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from digitaltwin.analytics.buckets import Bucket
from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.ingest.batch import ingest_batch
from digitaltwin.ingest.csv_import import ColumnMapping, ImportReport, ValueColumn, import_csv
from digitaltwin.services.energy import EnergyReport, energy_report
from digitaltwin.storage.repository import Repository

KWH = 1e-6  # tolerance on kWh
HOLD = timedelta(hours=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def register(repo: Repository, timezone: str, *asset_ids: str) -> None:
    site_id = "site-" + timezone.replace("/", "-").lower()
    repo.create_site(Site(site_id, site_id, timezone), exist_ok=True)
    for asset_id in asset_ids:
        repo.create_asset(Asset(asset_id, site_id, asset_id, AssetKind.METER))


def load(repo: Repository, tmp_path: Path, text: str, mapping: ColumnMapping, *, site_timezone: str | None = None) -> ImportReport:
    path = tmp_path / "upload.csv"
    path.write_text(text, encoding="utf-8")
    return import_csv(repo, path, mapping, site_timezone=site_timezone)


def stored(repo: Repository, asset_id: str) -> list[tuple[datetime, float]]:
    return [(r.ts, r.value) for r in repo.read_page(asset_id, limit=10_000).rows]


def report(repo: Repository, asset_id: str, start: datetime, end: datetime, bucket: Bucket) -> EnergyReport:
    return energy_report(repo, asset_id, start=start, end=end, bucket=bucket, max_hold=HOLD)


def energies(rep: EnergyReport) -> dict[str, float]:
    """Non-empty buckets as {local start ISO: kWh}."""
    tz = ZoneInfo(rep.timezone)
    return {r.start.astimezone(tz).isoformat(): r.energy_kwh for r in rep.rows if r.energy_kwh is not None}


# -- bucket-alignment-local-day-monday-week -------------------------------------------


def test_weekly_buckets_start_on_monday(repo: Repository, tmp_path: Path) -> None:
    """Case (a): 14 daily rows from Monday 2024-01-01, site tz UTC -> two weeks of 7.0 kWh."""
    register(repo, "UTC", "m-week")
    text = "day,energy_kwh\n" + "".join(f"2024-01-{d:02d},1.0\n" for d in range(1, 15))
    mapping = ColumnMapping("day", (ValueColumn("energy_kwh", "energy", "kWh"),), asset_id="m-week", interval_seconds=86400)
    imported = load(repo, tmp_path, text, mapping, site_timezone=repo.get_site("site-utc").timezone)
    assert (imported.readings_stored, imported.errors) == (14, [])

    weeks = report(repo, "m-week", utc(2024, 1, 1), utc(2024, 1, 15), Bucket.WEEK)
    assert [r.start for r in weeks.rows] == [utc(2024, 1, 1), utc(2024, 1, 8)]
    assert [r.energy_kwh for r in weeks.rows] == pytest.approx([7.0, 7.0], abs=KWH)
    assert all(r.start.weekday() == 0 for r in weeks.rows)
    assert weeks.total_energy_kwh == pytest.approx(14.0, abs=KWH)
    # Not the Saturday (2023-12-30: 5.0 ...) or Thursday (2023-12-28: 3.0 ...) origins, even for a wider range.
    wide = report(repo, "m-week", utc(2023, 12, 25), utc(2024, 1, 22), Bucket.WEEK)
    assert energies(wide) == pytest.approx({"2024-01-01T00:00:00+00:00": 7.0, "2024-01-08T00:00:00+00:00": 7.0}, abs=KWH)


def test_daily_buckets_follow_the_site_timezone(repo: Repository, tmp_path: Path) -> None:
    """Case (b): Europe/Berlin local days; 23:30Z on Jan 15 is 00:30 local on Jan 16."""
    register(repo, "Europe/Berlin", "m-day")
    text = "ts,energy_kwh\n2024-01-15T22:30:00Z,1.0\n2024-01-15T23:30:00Z,2.0\n"
    # The case gives no interval length; its answer holds for any interval up to 30 min.
    # We declare the product's 15-min default so the interval is not inferred from these two rows' 1 h spacing.
    mapping = ColumnMapping("ts", (ValueColumn("energy_kwh", "energy", "kWh"),), asset_id="m-day", interval_seconds=900)
    assert load(repo, tmp_path, text, mapping).readings_stored == 2

    berlin = ZoneInfo("Europe/Berlin")
    days = report(repo, "m-day", datetime(2024, 1, 15, tzinfo=berlin), datetime(2024, 1, 17, tzinfo=berlin), Bucket.DAY)
    assert len(days.rows) == 2
    assert [r.energy_kwh for r in days.rows] == pytest.approx([1.0, 2.0], abs=KWH)  # not 3.0 on Jan 15
    assert days.rows[1].start == utc(2024, 1, 15, 23)
    assert days.rows[1].start.astimezone(berlin).date().isoformat() == "2024-01-16"


# -- dst-fall-back-repeated-hour ----------------------------------------------------


FALL_BACK_CSV = """device_id,ts,energy_import_kwh_total
m-dst-1,2024-10-27T01:00:00+02:00,100.0
m-dst-1,2024-10-27T02:00:00+02:00,101.0
m-dst-1,2024-10-27T02:00:00+01:00,102.2
m-dst-1,2024-10-27T03:00:00+01:00,103.0
m-dst-1,2024-10-27T04:00:00+01:00,104.0
"""


def test_fall_back_repeated_hour_stays_two_hours(repo: Repository, tmp_path: Path) -> None:
    register(repo, "Europe/Berlin", "m-dst-1")
    mapping = ColumnMapping("ts", (ValueColumn("energy_import_kwh_total", "energy_total", "kWh"),), asset_column="device_id")
    imported = load(repo, tmp_path, FALL_BACK_CSV, mapping)
    assert (imported.readings_stored, imported.errors) == (5, [])
    assert [ts for ts, _ in stored(repo, "m-dst-1")] == [
        utc(2024, 10, 26, 23), utc(2024, 10, 27, 0), utc(2024, 10, 27, 1), utc(2024, 10, 27, 2), utc(2024, 10, 27, 3)
    ]

    berlin = ZoneInfo("Europe/Berlin")
    hours = report(repo, "m-dst-1", datetime(2024, 10, 27, tzinfo=berlin), datetime(2024, 10, 28, tzinfo=berlin), Bucket.HOUR)
    assert len(hours.rows) == 25
    assert hours.rows[0].start == utc(2024, 10, 26, 22)
    assert hours.rows[-1].start == utc(2024, 10, 27, 22)
    assert energies(hours) == pytest.approx(
        {
            "2024-10-27T01:00:00+02:00": 1.0,
            "2024-10-27T02:00:00+02:00": 1.2,
            "2024-10-27T02:00:00+01:00": 0.8,
            "2024-10-27T03:00:00+01:00": 1.0,
        },
        abs=KWH,
    )
    assert hours.total_energy_kwh == pytest.approx(4.0, abs=KWH)
    assert all(abs(r.energy_kwh - 2.0) > 0.1 for r in hours.rows if r.energy_kwh is not None)

    # A range ending at the last reading (04:00+01:00) still gets its last hour: the closing reading counts.
    part = report(repo, "m-dst-1", utc(2024, 10, 26, 23), utc(2024, 10, 27, 3), Bucket.HOUR)
    assert [r.energy_kwh for r in part.rows] == pytest.approx([1.0, 1.2, 0.8, 1.0], abs=KWH)
    assert [r.sample_count for r in part.rows] == [1, 1, 1, 1]


# -- dst-spring-forward-23h-day --------------------------------------------------------


def test_spring_forward_day_has_23_hours(repo: Repository, tmp_path: Path) -> None:
    register(repo, "Europe/Stockholm", "m-dst-2")
    first = utc(2024, 3, 30, 23)
    lines = [f"m-dst-2,{(first + timedelta(hours=n)).strftime('%Y-%m-%dT%H:%M:%SZ')},1.0" for n in range(23)]
    assert lines[:3] == ["m-dst-2,2024-03-30T23:00:00Z,1.0", "m-dst-2,2024-03-31T00:00:00Z,1.0", "m-dst-2,2024-03-31T01:00:00Z,1.0"]
    assert lines[-1] == "m-dst-2,2024-03-31T21:00:00Z,1.0"
    text = "device_id,interval_start,energy_kwh\n" + "\n".join(lines) + "\n"
    mapping = ColumnMapping(
        "interval_start", (ValueColumn("energy_kwh", "energy", "kWh"),), asset_column="device_id", interval_seconds=3600
    )
    assert load(repo, tmp_path, text, mapping).readings_stored == 23

    stockholm = ZoneInfo("Europe/Stockholm")
    start, end = datetime(2024, 3, 31, tzinfo=stockholm), datetime(2024, 4, 1, tzinfo=stockholm)
    (day,) = report(repo, "m-dst-2", start, end, Bucket.DAY).rows
    assert day.energy_kwh == pytest.approx(23.0, abs=KWH)
    assert (day.expected_count, day.missing_count, day.sample_count) == (23, 0, 23)
    assert day.mean_power_kw == pytest.approx(1.0, abs=1e-9)  # not 23/24 = 0.958 kW

    hours = report(repo, "m-dst-2", start, end, Bucket.HOUR)
    assert len(hours.rows) == 23
    assert [r.start.astimezone(stockholm).hour for r in hours.rows] == [0, 1, *range(3, 24)]  # no 02:00, not zero-filled
    assert all(r.energy_kwh == pytest.approx(1.0, abs=KWH) and r.missing_count == 0 for r in hours.rows)
    late = next(r for r in hours.rows if r.start == utc(2024, 3, 31, 20))
    assert late.start.astimezone(stockholm).isoformat() == "2024-03-31T22:00:00+02:00"
    assert late.energy_kwh == pytest.approx(1.0, abs=KWH)


# -- leap-day-and-leap-second ------------------------------------------------------------


def test_leap_february_in_monthly_and_daily_rollups(repo: Repository, tmp_path: Path) -> None:
    """Case (a). The "same day last year" bullet is skipped: there is no such comparison in the product yet."""
    register(repo, "UTC", "m-leap")
    days = [datetime(2024, 2, 1) + timedelta(days=n) for n in range(60)]
    assert (days[0].date().isoformat(), days[-1].date().isoformat()) == ("2024-02-01", "2024-03-31")
    text = "day,energy_kwh\n" + "".join(f"{d.date().isoformat()},1.0\n" for d in days)
    mapping = ColumnMapping("day", (ValueColumn("energy_kwh", "energy", "kWh"),), asset_id="m-leap", timezone="UTC", interval_seconds=86400)
    assert load(repo, tmp_path, text, mapping).readings_stored == 60

    months = report(repo, "m-leap", utc(2024, 2, 1), utc(2024, 4, 1), Bucket.MONTH)
    assert [(r.start, r.energy_kwh) for r in months.rows] == [
        (utc(2024, 2, 1), pytest.approx(29.0, abs=KWH)),
        (utc(2024, 3, 1), pytest.approx(31.0, abs=KWH)),
    ]
    assert [r.missing_count for r in months.rows] == [0, 0]

    year = report(repo, "m-leap", utc(2024, 1, 1), utc(2025, 1, 1), Bucket.DAY)
    assert len(year.rows) == 366
    leap_day = next(r for r in year.rows if r.start == utc(2024, 2, 29))
    assert leap_day.energy_kwh == pytest.approx(1.0, abs=KWH)
    assert leap_day.end == utc(2024, 3, 1)
    assert sum(1 for r in year.rows if r.energy_kwh is not None) == 60
    assert year.total_energy_kwh == pytest.approx(60.0, abs=KWH)


def test_leap_second_is_rejected_and_not_stored(repo: Repository) -> None:
    """Case (b), through the same batch path as HTTP and MQTT items."""
    register(repo, "UTC", "m-ls")
    item = json.loads(b'{"device_id":"m-ls","ts":"2016-12-31T23:59:60Z","power_w":100}')
    result = ingest_batch(repo, [item])
    assert (result.accepted, result.rejected, result.stored) == (0, 1, 0)
    assert result.items[0].field == "ts"
    assert "leap second" in (result.items[0].reason or "")
    assert stored(repo, "m-ls") == []
    assert repo.list_series("m-ls") == []


# -- naive-timestamps ------------------------------------------------------------------------


NAIVE_CSV = """meter_id,start,energy_kwh
m-ams,2024-08-09 23:00,0.9
m-ams,2024-08-10 00:00,1.1
"""
NAIVE_MAPPING = ColumnMapping("start", (ValueColumn("energy_kwh", "energy", "kWh"),), asset_column="meter_id", interval_seconds=3600)


def test_naive_local_times_take_the_site_timezone(repo: Repository, tmp_path: Path) -> None:
    register(repo, "Europe/Amsterdam", "m-ams")
    site_tz = repo.get_site(repo.get_asset("m-ams").site_id).timezone
    imported = load(repo, tmp_path, NAIVE_CSV, NAIVE_MAPPING, site_timezone=site_tz)
    assert (imported.readings_stored, imported.errors) == (2, [])
    rows = stored(repo, "m-ams")
    assert [int(ts.timestamp()) for ts, _ in rows] == [1723237200, 1723240800]  # not 1723248000 (02:00 local)
    assert [ts for ts, _ in rows] == [utc(2024, 8, 9, 21), utc(2024, 8, 9, 22)]

    ams = ZoneInfo("Europe/Amsterdam")
    days = report(repo, "m-ams", datetime(2024, 8, 9, tzinfo=ams), datetime(2024, 8, 11, tzinfo=ams), Bucket.DAY)
    assert energies(days) == pytest.approx({"2024-08-09T00:00:00+02:00": 0.9, "2024-08-10T00:00:00+02:00": 1.1}, abs=KWH)


def test_naive_times_without_any_timezone_are_rejected(repo: Repository, tmp_path: Path) -> None:
    register(repo, "Europe/Amsterdam", "m-ams")
    imported = load(repo, tmp_path, NAIVE_CSV, NAIVE_MAPPING, site_timezone=None)
    assert imported.readings_stored == 0
    assert [(e.line, e.field) for e in imported.errors] == [(2, "start"), (3, "start")]
    assert all("no UTC offset" in e.reason for e in imported.errors)
    assert stored(repo, "m-ams") == []


def test_offset_forms_of_the_second_row_are_the_same_reading(repo: Repository, tmp_path: Path) -> None:
    register(repo, "Europe/Amsterdam", "m-ams")
    assert load(repo, tmp_path, NAIVE_CSV, NAIVE_MAPPING, site_timezone="Europe/Amsterdam").readings_stored == 2
    again = "meter_id,start,energy_kwh\nm-ams,2024-08-10T00:00:00+02:00,1.1\nm-ams,2024-08-09T22:00:00Z,1.1\n"
    imported = load(repo, tmp_path, again, NAIVE_MAPPING)  # offsets given: no timezone needed
    assert (imported.readings_parsed, imported.readings_stored, imported.duplicates, imported.errors) == (2, 0, 2, [])
    assert len(stored(repo, "m-ams")) == 2


# -- csv-ambiguous-local-times -----------------------------------------------------------------


AMBIGUOUS_CSV = """local_time,energy_kwh
2025-10-26 01:45,0.25
2025-10-26 02:00,0.25
2025-10-26 02:15,0.25
2025-10-26 02:30,0.25
2025-10-26 02:45,0.25
2025-10-26 02:00,0.25
2025-10-26 02:15,0.25
2025-10-26 02:30,0.25
2025-10-26 02:45,0.25
2025-10-26 03:00,0.25
"""
AMBIGUOUS_UTC = [
    utc(2025, 10, 25, 23, 45),
    utc(2025, 10, 26, 0, 0), utc(2025, 10, 26, 0, 15), utc(2025, 10, 26, 0, 30), utc(2025, 10, 26, 0, 45),
    utc(2025, 10, 26, 1, 0), utc(2025, 10, 26, 1, 15), utc(2025, 10, 26, 1, 30), utc(2025, 10, 26, 1, 45),
    utc(2025, 10, 26, 2, 0),
]  # fmt: skip


def _ambiguous_mapping(**kwargs: object) -> ColumnMapping:
    return ColumnMapping(
        "local_time", (ValueColumn("energy_kwh", "energy", "kWh"),), timezone="Europe/Berlin", interval_seconds=900, **kwargs  # type: ignore[arg-type]
    )


def test_repeated_local_hour_is_resolved_by_file_order(repo: Repository, tmp_path: Path) -> None:
    register(repo, "Europe/Berlin", "m-amb")
    imported = load(repo, tmp_path, AMBIGUOUS_CSV, _ambiguous_mapping(asset_id="m-amb"))
    assert (imported.rows_read, imported.readings_stored, imported.errors) == (10, 10, [])
    rows = stored(repo, "m-amb")
    assert [ts for ts, _ in rows] == AMBIGUOUS_UTC  # 10 distinct instants, not 6

    berlin = ZoneInfo("Europe/Berlin")
    (day,) = report(repo, "m-amb", datetime(2025, 10, 26, tzinfo=berlin), datetime(2025, 10, 27, tzinfo=berlin), Bucket.DAY).rows
    assert day.energy_kwh == pytest.approx(2.5, abs=KWH)  # not 1.5
    assert day.sample_count == 10
    assert day.expected_count == 100  # a 25-hour day of 15-min intervals


def test_lone_ambiguous_time_is_the_only_rejected_row(repo: Repository, tmp_path: Path) -> None:
    register(repo, "Europe/Berlin", "m-amb")
    text = "local_time,energy_kwh\n2025-10-26 01:45,0.25\n2025-10-26 02:30,0.25\n2025-10-26 03:00,0.25\n"
    imported = load(repo, tmp_path, text, _ambiguous_mapping(asset_id="m-amb"))
    assert imported.readings_stored == 2
    assert [(e.line, e.field) for e in imported.errors] == [(3, "local_time")]
    assert "ambiguous" in imported.errors[0].reason
    assert [ts for ts, _ in stored(repo, "m-amb")] == [utc(2025, 10, 25, 23, 45), utc(2025, 10, 26, 2, 0)]


def test_repeated_hour_is_resolved_per_meter_in_a_multi_meter_file(repo: Repository, tmp_path: Path) -> None:
    """The same case in a file that interleaves two meters' rows: file order is each meter's own order."""
    register(repo, "Europe/Berlin", "m-amb-a", "m-amb-b")
    body = AMBIGUOUS_CSV.splitlines()[1:]
    text = "meter,local_time,energy_kwh\n" + "".join(f"m-amb-a,{line}\nm-amb-b,{line}\n" for line in body)
    imported = load(repo, tmp_path, text, _ambiguous_mapping(asset_column="meter"))
    assert (imported.rows_read, imported.readings_stored, imported.errors) == (20, 20, [])
    for meter in ("m-amb-a", "m-amb-b"):
        assert [ts for ts, _ in stored(repo, meter)] == AMBIGUOUS_UTC
