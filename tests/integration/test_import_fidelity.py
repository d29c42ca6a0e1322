"""CSV import fidelity on SQLite and PostgreSQL: conflicts told apart from duplicates, hour-numbering
conventions and DST days of utility load files, interval-end labels on DST days in several zones,
every rejected row available, ``;`` files, decimal commas.

The load-file rows follow the field report of a public utility's hourly file ("hour ending" labels
in local prevailing time, unordered rows) and the cases ``time/csv-ambiguous-local-times``,
``time/dst-fall-back-repeated-hour`` and ``time/dst-spring-forward-23h-day``.
"""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from digitaltwin.analytics.buckets import Bucket
from digitaltwin.cli import app
from digitaltwin.config import Settings
from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.ingest.csv_import import ColumnMapping, ImportReport, ValueColumn, import_csv
from digitaltwin.services.energy import energy_report
from digitaltwin.storage.repository import Repository
from tests.integration.test_cli_forecast import _env
from tests.local_days import day_intervals, end_labelled_csv


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def register(repo: Repository, timezone: str, *asset_ids: str) -> None:
    site_id = "site-" + timezone.replace("/", "-").lower()
    repo.create_site(Site(site_id, site_id, timezone), exist_ok=True)
    for asset_id in asset_ids:
        repo.create_asset(Asset(asset_id, site_id, asset_id, AssetKind.METER), exist_ok=True)


def load(repo: Repository, tmp_path: Path, text: str, mapping: ColumnMapping, **kwargs: object) -> ImportReport:
    path = tmp_path / "load.csv"
    path.write_text(text, encoding="utf-8")
    return import_csv(repo, path, mapping, **kwargs)  # type: ignore[arg-type]


def stored(repo: Repository, asset_id: str) -> dict[datetime, float]:
    return {r.ts: r.value for r in repo.read_page(asset_id, limit=10_000).rows}


HOURLY_END = ColumnMapping(
    "hour_ending", (ValueColumn("mwh", "energy", "MWh"),), asset_id="zone-a", timezone="America/New_York",
    label="end", interval_seconds=3600,
)


def test_fall_back_day_keeps_both_values_of_a_repeated_label_in_unordered_rows(repo: Repository, tmp_path: Path) -> None:
    """Two different values stamped 02:00 on 2024-11-03 (hours 01-02 EDT and 01-02 EST): each in its own hour."""
    register(repo, "America/New_York", "zone-a")
    text = "hour_ending,mwh\n" + "\n".join([
        "2024-11-03 03:00,4.0", "2024-11-03 02:00,2.0", "2024-11-03 01:00,1.0", "2024-11-03 02:00,3.0",
    ]) + "\n"
    rep = load(repo, tmp_path, text, HOURLY_END)
    assert (rep.readings_stored, rep.duplicates, rep.conflicts, rep.errors) == (4, 0, [], [])
    assert stored(repo, "zone-a") == {
        utc(2024, 11, 3, 4): 1000.0,  # 00:00-01:00 EDT
        utc(2024, 11, 3, 5): 2000.0,  # 01:00-02:00 EDT: the first 02:00 label
        utc(2024, 11, 3, 6): 3000.0,  # 01:00-02:00 EST: the second
        utc(2024, 11, 3, 7): 4000.0,  # 02:00-03:00 EST
    }


def test_spring_forward_hours_are_stored(repo: Repository, tmp_path: Path) -> None:
    """Prevailing-time labels 01:00, 03:00, 04:00 on 2024-03-10: the 03:00 label ends the hour 01:00-02:00 EST."""
    register(repo, "America/New_York", "zone-a")
    rep = load(repo, tmp_path, "hour_ending,mwh\n2024-03-10 03:00,2\n2024-03-10 01:00,1\n2024-03-10 04:00,3\n", HOURLY_END)
    assert rep.errors == [] and rep.readings_stored == 3
    assert stored(repo, "zone-a") == {utc(2024, 3, 10, 5): 1000.0, utc(2024, 3, 10, 6): 2000.0, utc(2024, 3, 10, 7): 3000.0}


def _hour_file(day: str, hours: list[int]) -> str:
    return "date;HE;kwh\n" + "".join(f"{day};{h};{h}\n" for h in hours)


BERLIN_HE = ColumnMapping(
    "date", (ValueColumn("kwh", "energy", "kWh"),), asset_id="m", timezone="Europe/Berlin",
    hour_column="HE", delimiter=";",
)


@pytest.mark.parametrize(
    ("hours", "label"),
    [
        (list(range(1, 26)), "numbered 1-25"),
        ([1, 2, 3, 3, *range(4, 25)], "hour 3 repeated"),
        ([24, 3, 1, 3, *range(4, 24), 2], "hour 3 repeated, unordered"),
    ],
)
def test_hour_ending_on_the_fall_back_day_gives_25_hours(repo: Repository, tmp_path: Path, hours: list[int], label: str) -> None:
    register(repo, "Europe/Berlin", "m")
    rep = load(repo, tmp_path, _hour_file("2024-10-27", hours), BERLIN_HE)
    assert rep.errors == [] and rep.readings_stored == 25, label
    assert sorted(stored(repo, "m")) == [utc(2024, 10, 26, 22) + timedelta(hours=k) for k in range(25)]


@pytest.mark.parametrize("hours", [[1, 2, *range(4, 25)], list(range(1, 24))])
def test_hour_ending_on_the_spring_forward_day_gives_23_hours(repo: Repository, tmp_path: Path, hours: list[int]) -> None:
    """Prevailing labels (1, 2, 4 ... 24) or hours counted from midnight (1 ... 23): the same 23 hours, none rejected."""
    register(repo, "Europe/Berlin", "m")
    rep = load(repo, tmp_path, _hour_file("2024-03-31", hours), BERLIN_HE)
    assert rep.errors == [] and rep.readings_stored == 23
    assert sorted(stored(repo, "m")) == [utc(2024, 3, 30, 23) + timedelta(hours=k) for k in range(23)]


def test_hour_beginning_and_bad_hour_numbers(repo: Repository, tmp_path: Path) -> None:
    register(repo, "Europe/Berlin", "m")
    mapping = ColumnMapping(
        "date", (ValueColumn("kwh", "energy", "kWh"),), asset_id="m", timezone="Europe/Berlin",
        hour_column="HE", hour_convention="beginning", delimiter=";",
    )
    rep = load(repo, tmp_path, _hour_file("2024-06-03", [0, 1, 23, 24, 77]) + "2024-06-03;x;1\n", mapping)
    assert rep.readings_stored == 3
    assert sorted(stored(repo, "m")) == [utc(2024, 6, 2, 22), utc(2024, 6, 2, 23), utc(2024, 6, 3, 21)]
    assert [(e.line, e.field) for e in rep.errors] == [(5, "HE"), (6, "HE"), (7, "HE")]
    assert "24-hour day" in rep.errors[0].reason


def test_conflicts_are_reported_with_both_values_and_kept_unless_replacing(repo: Repository, tmp_path: Path) -> None:
    register(repo, "UTC", "m")
    mapping = ColumnMapping("ts", (ValueColumn("kwh", "energy", "kWh"),), asset_id="m", interval_seconds=3600)
    first = load(repo, tmp_path, "ts,kwh\n2024-05-01T00:00Z,1.5\n2024-05-01T01:00Z,2.5\n", mapping)
    assert (first.readings_stored, first.duplicates, first.conflicts) == (2, 0, [])

    again = load(repo, tmp_path, "ts,kwh\n2024-05-01T00:00Z,1.5\n2024-05-01T01:00Z,9.0\n2024-05-01T02:00Z,3.5\n", mapping)
    assert (again.readings_stored, again.duplicates, len(again.conflicts)) == (1, 1, 1)
    conflict = again.conflicts[0]
    assert (conflict.line, conflict.ts, conflict.stored_value, conflict.new_value) == (3, utc(2024, 5, 1, 1), 2.5, 9.0)
    assert stored(repo, "m")[utc(2024, 5, 1, 1)] == 2.5  # first write wins

    replaced = load(
        repo, tmp_path, "ts,kwh\n2024-05-01T01:00Z,9.0\n2024-05-01T02:00Z,3.5\n", mapping, replace_conflicts=True
    )
    assert (replaced.readings_stored, replaced.duplicates, len(replaced.conflicts), replaced.replaced) == (0, 1, 1, True)
    assert stored(repo, "m")[utc(2024, 5, 1, 1)] == 9.0


def test_a_key_twice_in_one_file_with_two_values_is_a_conflict(repo: Repository, tmp_path: Path) -> None:
    register(repo, "UTC", "m")
    mapping = ColumnMapping("ts", (ValueColumn("kwh", "energy", "kWh"),), asset_id="m", interval_seconds=3600)
    rep = load(repo, tmp_path, "ts,kwh\n2024-05-01T00:00Z,1\n2024-05-01T00:00Z,1\n2024-05-01T00:00Z,2\n", mapping)
    assert (rep.readings_stored, rep.duplicates) == (1, 1)
    assert [(c.line, c.stored_value, c.new_value) for c in rep.conflicts] == [(4, 1.0, 2.0)]
    assert stored(repo, "m") == {utc(2024, 5, 1): 1.0}


def test_every_rejected_row_is_written_and_counted(repo: Repository, tmp_path: Path) -> None:
    register(repo, "UTC", "m")
    mapping = ColumnMapping("ts", (ValueColumn("kwh", "energy", "kWh"),), asset_id="m", interval_seconds=3600)
    good = [f"2024-05-01T{h:02d}:00Z,1" for h in range(10)]
    bad_values = [f"2024-05-02T{h:02d}:00Z,n/a" for h in range(20)]
    bad_times = [f"2024-05-03 {h:02d}:00,1" for h in range(15)]  # no offset, no timezone
    rep = load(repo, tmp_path, "ts,kwh\n" + "\n".join(good + bad_values + bad_times) + "\n", mapping)
    assert rep.readings_stored == 10 and len(rep.errors) == 35
    assert rep.rejected_by_field == {"kwh": 20, "ts": 15}
    out = tmp_path / "rejected.csv"
    assert rep.write_rejections(out) == 35
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["line"]) for r in rows] == list(range(12, 47))
    assert {r["kind"] for r in rows} == {"rejected"} and rows[0]["field"] == "kwh" and "n/a" in rows[0]["reason"]


def test_cli_semicolon_file_with_conflicts_and_the_rejected_file(settings: Settings, repo: Repository, tmp_path: Path) -> None:
    register(repo, "Europe/Berlin", "m")
    path = tmp_path / "export.csv"
    path.write_text("zeit;verbrauch\n2024-05-01 00:00;1,5\n2024-05-01 01:00;2.5\n", encoding="utf-8")
    args = ["import", str(path), "--asset", "m", "--timestamp-column", "zeit", "--value-column", "verbrauch",
            "--unit", "kWh", "--interval-seconds", "3600", "--timezone", "Europe/Berlin", "--delimiter", ";"]
    rejected = tmp_path / "rejected.csv"
    result = CliRunner().invoke(app, [*args, "--rejected-file", str(rejected)], env=_env(settings))
    assert result.exit_code == 1, result.output
    out = " ".join(result.output.split())  # the console wraps long lines
    assert "readings stored 1" in out and "rejected rows 1" in out
    assert rejected.read_text().splitlines()[1] == (
        "2,rejected,verbrauch,\"value '1,5' is not a number; for decimal commas give the decimal option ','\""
    )
    path.write_text("zeit;verbrauch\n2024-05-01 01:00;7.5\n", encoding="utf-8")
    result = CliRunner().invoke(app, [*args, "--on-conflict", "replace"], env=_env(settings))
    assert result.exit_code == 1, result.output
    out = " ".join(result.output.split())
    assert "conflicts (another value already stored, replaced) 1" in out
    assert "stored 2.5, file 7.5" in out
    assert stored(repo, "m") == {utc(2024, 4, 30, 23): 7.5}


# -- interval-end labels on DST days -------------------------------------------------------------

#: The hour-ending file of Berlin's fall-back day as a meter export writes it: 25 rows, the label
#: 02:00 twice (00:00Z, the end of 01:00-02:00 CEST, then 01:00Z, the end of 02:00-03:00 CEST,
#: which the clock shows as 02:00 CET), the last 24:00. Values 1.5 ... 25.5: 337.5 kWh.
BERLIN_FALL_BACK_HOUR_ENDING = "ts,kwh\n" + "".join(
    f"2025-10-26 {label},{k + 1.5}\n"
    for k, label in enumerate(["01:00", "02:00", "02:00", *(f"{h:02d}:00" for h in range(3, 25))])
)
BERLIN_FALL_BACK_STARTS = [utc(2025, 10, 25, 22) + timedelta(hours=k) for k in range(25)]


def _end_mapping(asset_id: str, zone: str, minutes: int) -> ColumnMapping:
    return ColumnMapping("ts", (ValueColumn("kwh", "energy", "kWh"),), asset_id=asset_id, timezone=zone, label="end",
                         interval_seconds=minutes * 60)


def _day_total(repo: Repository, asset_id: str, zone: str, day: date) -> tuple[float | None, int, int | None]:
    """(kWh, samples, expected samples) of the site-local day."""
    starts = day_intervals(zone, day, 60)
    (row,) = energy_report(repo, asset_id, start=starts[0], end=starts[-1] + timedelta(hours=1), bucket=Bucket.DAY,
                           max_hold=timedelta(hours=1)).rows
    return row.energy_kwh, row.sample_count, row.expected_count


def test_hour_ending_labels_of_the_fall_back_day_keep_all_25_hours(repo: Repository, tmp_path: Path) -> None:
    register(repo, "Europe/Berlin", "m")
    rep = load(repo, tmp_path, BERLIN_FALL_BACK_HOUR_ENDING, _end_mapping("m", "Europe/Berlin", 60))
    assert (rep.readings_stored, rep.duplicates, rep.conflicts, rep.errors) == (25, 0, [], [])
    assert stored(repo, "m") == {start: k + 1.5 for k, start in enumerate(BERLIN_FALL_BACK_STARTS)}
    assert _day_total(repo, "m", "Europe/Berlin", date(2025, 10, 26)) == (pytest.approx(337.5), 25, 25)


@pytest.mark.parametrize(
    ("zone", "day", "minutes", "count"),
    [
        ("Europe/Berlin", date(2025, 10, 26), 15, 100),
        ("Europe/Berlin", date(2025, 3, 30), 60, 23),
        ("Europe/Berlin", date(2025, 3, 30), 15, 92),
        ("America/New_York", date(2025, 11, 2), 60, 25),  # repeated hour 01:00-02:00: the label 01:00 twice
        ("America/New_York", date(2025, 3, 9), 15, 92),
        ("Australia/Sydney", date(2025, 4, 6), 60, 25),  # the southern fall-back, in April
        ("Australia/Sydney", date(2025, 4, 6), 15, 100),
        ("Australia/Sydney", date(2025, 10, 5), 15, 92),
        ("Asia/Kathmandu", date(2025, 4, 6), 15, 96),  # UTC+05:45, no DST
        ("America/Santiago", date(2025, 9, 6), 60, 24),  # its 24:00 is the start of the next day's gap
    ],
)
def test_interval_end_labels_of_dst_days_place_every_interval(
    repo: Repository, tmp_path: Path, zone: str, day: date, minutes: int, count: int
) -> None:
    register(repo, zone, "m")
    text, expected = end_labelled_csv(zone, day, minutes)
    assert len(expected) == count
    rep = load(repo, tmp_path, text, _end_mapping("m", zone, minutes))
    assert (rep.readings_stored, rep.duplicates, rep.conflicts, rep.errors) == (count, 0, [], [])
    assert stored(repo, "m") == expected
    total, samples, _ = _day_total(repo, "m", zone, day)
    assert (total, samples) == (pytest.approx(sum(expected.values())), count)


def test_hour_ending_labels_counted_from_the_start_hour_are_read_too(repo: Repository, tmp_path: Path) -> None:
    """Some utility files label an interval with its start's wall-clock time plus the interval: the
    hours 02:00-03:00 CEST and CET both end at "03:00", and 01:00-02:00 at "02:00" once. The same
    25 hours (and quarter hours) are stored."""
    register(repo, "Europe/Berlin", "h", "q")
    labels = ["01:00", "02:00", "03:00", "03:00", *(f"{h:02d}:00" for h in range(4, 25))]
    text = "ts,kwh\n" + "".join(f"2025-10-26 {label},{k + 1.5}\n" for k, label in enumerate(labels))
    rep = load(repo, tmp_path, text, _end_mapping("h", "Europe/Berlin", 60))
    assert (rep.readings_stored, rep.conflicts, rep.errors) == (25, [], [])
    assert stored(repo, "h") == {start: k + 1.5 for k, start in enumerate(BERLIN_FALL_BACK_STARTS)}

    quarters = day_intervals("Europe/Berlin", date(2025, 10, 26), 15)
    walls = [(start.astimezone(ZoneInfo("Europe/Berlin")).replace(tzinfo=None) + timedelta(minutes=15)) for start in quarters]
    text = "ts,kwh\n" + "".join(f"{wall:%Y-%m-%d %H:%M},{k + 0.5}\n" for k, wall in enumerate(walls))
    assert text.count("2025-10-26 03:00,") == 2
    rep = load(repo, tmp_path, text, _end_mapping("q", "Europe/Berlin", 15))
    assert (rep.readings_stored, rep.conflicts, rep.errors) == (100, [], [])
    assert stored(repo, "q") == {start: k + 0.5 for k, start in enumerate(quarters)}


def test_end_labels_in_the_spring_forward_gap(repo: Repository, tmp_path: Path) -> None:
    """02:00 on Berlin's spring-forward day is the instant the clock jumps to 03:00 (01:00Z), so it may
    end the quarter hour 01:45-02:00 CET; 02:30 is shown by no clock and is rejected."""
    register(repo, "Europe/Berlin", "m")
    text = "ts,kwh\n2025-03-30 01:45,1\n2025-03-30 02:00,2\n2025-03-30 02:30,9\n2025-03-30 03:15,3\n"
    rep = load(repo, tmp_path, text, _end_mapping("m", "Europe/Berlin", 15))
    assert stored(repo, "m") == {utc(2025, 3, 30, 0, 30): 1.0, utc(2025, 3, 30, 0, 45): 2.0, utc(2025, 3, 30, 1): 3.0}
    assert [(e.line, e.field) for e in rep.errors] == [(4, "ts")] and "DST gap" in rep.errors[0].reason


def test_end_labels_of_whole_days_are_local_days(repo: Repository, tmp_path: Path) -> None:
    """A daily value labelled with its day's end covers the local day before the label, 25 or 23 hours."""
    register(repo, "Europe/Berlin", "m")
    text = "ts,kwh\n2025-10-26 24:00,25\n2025-03-31 00:00,23\n"
    rep = load(repo, tmp_path, text, _end_mapping("m", "Europe/Berlin", 24 * 60))
    assert rep.errors == []
    assert stored(repo, "m") == {utc(2025, 10, 25, 22): 25.0, utc(2025, 3, 29, 23): 23.0}


def test_cli_imports_the_hour_ending_fall_back_day(settings: Settings, repo: Repository, tmp_path: Path) -> None:
    register(repo, "Europe/Berlin", "m")
    path = tmp_path / "berlin.csv"
    path.write_text(BERLIN_FALL_BACK_HOUR_ENDING, encoding="utf-8")
    args = ["import", str(path), "--asset", "m", "--value-column", "kwh", "--unit", "kWh", "--label", "end",
            "--interval-seconds", "3600", "--site", "site-europe-berlin"]
    result = CliRunner().invoke(app, args, env=_env(settings))
    assert result.exit_code == 0, result.output
    assert "readings stored 25" in " ".join(result.output.split())
    assert stored(repo, "m") == {start: k + 1.5 for k, start in enumerate(BERLIN_FALL_BACK_STARTS)}
    assert _day_total(repo, "m", "Europe/Berlin", date(2025, 10, 26)) == (pytest.approx(337.5), 25, 25)

    quarters, expected = end_labelled_csv("Europe/Berlin", date(2025, 3, 30), 15)
    path.write_text(quarters.replace("ts,kwh", "ts,kwh_q"), encoding="utf-8")
    register(repo, "Europe/Berlin", "q")
    args = ["import", str(path), "--asset", "q", "--value-column", "kwh_q", "--unit", "kWh", "--label", "end",
            "--interval-seconds", "900", "--timezone", "Europe/Berlin"]
    result = CliRunner().invoke(app, args, env=_env(settings))
    assert result.exit_code == 0, result.output
    assert stored(repo, "q") == expected and len(expected) == 92


def test_cli_decimal_commas_and_an_unknown_asset(settings: Settings, repo: Repository, tmp_path: Path) -> None:
    register(repo, "Europe/Berlin", "m")
    path = tmp_path / "export.csv"
    path.write_text("zeit;verbrauch\n2024-05-01 00:00;1,5\n2024-05-01 01:00;2\n2024-05-01 02:00;1.500\n", encoding="utf-8")
    args = ["import", str(path), "--timestamp-column", "zeit", "--value-column", "verbrauch", "--unit", "kWh",
            "--interval-seconds", "3600", "--timezone", "Europe/Berlin", "--delimiter", ";"]
    result = CliRunner().invoke(app, [*args, "--asset", "m", "--decimal", ","], env=_env(settings))
    assert result.exit_code == 1, result.output
    out = " ".join(result.output.split())
    assert "readings stored 2" in out and "line 4: verbrauch: value '1.500' is not a number with a decimal comma" in out
    assert stored(repo, "m") == {utc(2024, 4, 30, 22): 1.5, utc(2024, 4, 30, 23): 2.0}
    unknown = CliRunner().invoke(app, [*args, "--asset", "nope"], env=_env(settings))
    assert unknown.exit_code == 2 and "(asset)" in unknown.output and "'nope' not found" in unknown.output
    bad = CliRunner().invoke(app, [*args, "--asset", "m", "--decimal", ";"], env=_env(settings))
    assert bad.exit_code == 2 and "(decimal)" in bad.output
