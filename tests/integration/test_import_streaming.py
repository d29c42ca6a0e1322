"""The streamed CSV import on PostgreSQL (a file read in pieces while the server inserts the
previous ones) stores exactly what the unstreamed import stores: the same rows, instants, values,
rejected rows, rollup change marks and duplicate/conflict counts, also when a piece alone would
place local times differently or when a key of a later piece is stored already.

Pieces are made a few rows long so that small files cross piece boundaries."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

import digitaltwin.ingest.csv_import as csv_import
import digitaltwin.ingest.csv_stream as csv_stream
from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.demo_data import STEEL_CSV
from digitaltwin.ingest.csv_import import STEEL_PRESET, ColumnMapping, ImportReport, ValueColumn, import_csv, with_asset
from digitaltwin.storage.batch_write import WriteOutcome
from digitaltwin.storage.repository import Repository
from digitaltwin.storage.rollups import RollupStore

SEOUL_END = ColumnMapping(
    "ts", (ValueColumn("kwh", "energy", "kWh"),), asset_id="a", timezone="Asia/Seoul", label="end",
    interval_seconds=900, timestamp_format="%d/%m/%Y %H:%M", midnight_ends_day=True,
)
DEFAULT_PIECES = (csv_stream.STREAM_FIRST_PIECE_ROWS, csv_stream.STREAM_PIECE_ROWS)
BERLIN_START = ColumnMapping("ts", (ValueColumn("kwh", "energy", "kWh"),), asset_id="a", timezone="Europe/Berlin")


@pytest.fixture
def streamed(repo: Repository, monkeypatch: pytest.MonkeyPatch) -> list[WriteOutcome | None]:
    """PostgreSQL only; pieces of 3 rows; the outcome of every stream attempt, in order."""
    if repo.engine.dialect.name != "postgresql":
        pytest.skip("imports are streamed on PostgreSQL only")
    monkeypatch.setattr(csv_stream, "STREAM_PIECE_ROWS", 3)
    monkeypatch.setattr(csv_stream, "STREAM_FIRST_PIECE_ROWS", 2)
    repo.create_site(Site("s", "s", "Asia/Seoul"), exist_ok=True)
    for asset_id in ("a", "b"):
        repo.create_asset(Asset(asset_id, "s", asset_id, AssetKind.METER), exist_ok=True)
    outcomes: list[WriteOutcome | None] = []
    stream = repo.stream_new_readings

    def spy(*args: object) -> WriteOutcome | None:
        outcome = stream(*args)  # type: ignore[arg-type]
        outcomes.append(outcome)
        return outcome

    monkeypatch.setattr(repo, "stream_new_readings", spy)
    return outcomes


def _import(repo: Repository, tmp_path: Path, text: str, mapping: ColumnMapping, asset_id: str) -> ImportReport:
    path = tmp_path / f"{asset_id}.csv"
    path.write_text(text, encoding="utf-8")
    return import_csv(repo, path, ColumnMapping(**{**{f: getattr(mapping, f) for f in mapping.__slots__}, "asset_id": asset_id}))


def _unstreamed(repo: Repository, tmp_path: Path, text: str, mapping: ColumnMapping, monkeypatch: pytest.MonkeyPatch) -> ImportReport:
    """The same file imported the unstreamed way, under asset ``b``."""
    with monkeypatch.context() as patch:
        patch.setattr(csv_import, "streams", lambda *args, **kwargs: False)
        return _import(repo, tmp_path, text, mapping, "b")


def _stored(repo: Repository, asset_id: str) -> dict[datetime, float]:
    return {r.ts: r.value for r in repo.read_page(asset_id, limit=10_000).rows}


def _summary(report: ImportReport) -> tuple[object, ...]:
    return (report.rows_read, report.readings_parsed, report.readings_stored, report.duplicates,
            [(c.line, c.stored_value, c.new_value) for c in report.conflicts], report.errors)


def test_a_streamed_import_stores_what_the_unstreamed_one_does(
    repo: Repository, tmp_path: Path, streamed: list[WriteOutcome | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [f"{day:02d}/03/2024 {hour:02d}:{minute:02d},{day * 100 + hour + minute / 100}"
            for day in (1, 2) for hour in (23, 0) for minute in (0, 15, 30, 45)]
    rows[3] = "01/03/2024 23:45,2e7"  # beyond the plausible range
    rows[6] = "02/03/2024 00:30,65535"  # a "not available" sentinel
    rows[9] = "32/03/2024 00:15,1.0"  # a date that does not exist
    text = "ts,kwh\n" + "\n".join(rows) + "\n"
    report = _import(repo, tmp_path, text, SEOUL_END, "a")
    assert [o.stored if o else None for o in streamed] == [13]  # committed in one stream
    expected = _unstreamed(repo, tmp_path, text, SEOUL_END, monkeypatch)
    assert _summary(report) == _summary(expected) and [e.field for e in report.errors] == ["kwh", "kwh", "ts"]
    assert _stored(repo, "a") == _stored(repo, "b") and len(_stored(repo, "a")) == 13
    # The change mark spans the batch, as the unstreamed write's does.
    marks = [RollupStore(repo.engine).dirty(repo.find_series(a, "energy").id).spans for a in "ab"]  # type: ignore[union-attr]
    assert marks[0] == marks[1] and len(marks[0]) == 1
    # A re-import stores nothing: its first piece's span is stored already, so it is not streamed.
    again = _import(repo, tmp_path, text, SEOUL_END, "a")
    assert (again.readings_stored, again.duplicates, streamed[-1]) == (0, 13, None)


def test_pieces_that_place_local_times_differently_are_rolled_back(
    repo: Repository, tmp_path: Path, streamed: list[WriteOutcome | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Berlin's 02:00 twice on 2025-10-26: the file's order makes the first the summer hour and the
    second the winter one, but a piece holding one of them alone cannot tell which it is."""
    monkeypatch.setattr(csv_stream, "STREAM_PIECE_ROWS", 2)
    monkeypatch.setattr(csv_stream, "STREAM_FIRST_PIECE_ROWS", 2)
    text = "ts,kwh\n2025-10-26 01:00,1\n2025-10-26 02:00,2\n2025-10-26 02:00,3\n2025-10-26 03:00,4\n"
    report = _import(repo, tmp_path, text, BERLIN_START, "a")
    assert streamed == [None]  # streamed, refused by the whole-file check, rolled back
    assert (report.readings_stored, report.errors) == (4, [])
    assert _stored(repo, "a") == {
        datetime(2025, 10, 25, 23, tzinfo=UTC): 1.0,
        datetime(2025, 10, 26, 0, tzinfo=UTC): 2.0,  # 02:00 CEST
        datetime(2025, 10, 26, 1, tzinfo=UTC): 3.0,  # 02:00 CET
        datetime(2025, 10, 26, 2, tzinfo=UTC): 4.0,
    }
    assert _summary(report) == _summary(_unstreamed(repo, tmp_path, text, BERLIN_START, monkeypatch))


def test_a_key_of_a_later_piece_stored_already_counts_as_without_streaming(
    repo: Repository, tmp_path: Path, streamed: list[WriteOutcome | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [f"01/03/2024 {hour:02d}:00,{hour}" for hour in range(1, 10)]
    text = "ts,kwh\n" + "\n".join(rows) + "\n"
    tail = "ts,kwh\n01/03/2024 07:00,7\n01/03/2024 08:00,80\n"  # one duplicate, one conflict
    for asset_id in ("a", "b"):
        with monkeypatch.context() as patch:
            patch.setattr(csv_import, "streams", lambda *args, **kwargs: False)
            _import(repo, tmp_path, tail, SEOUL_END, asset_id)
    report = _import(repo, tmp_path, text, SEOUL_END, "a")
    assert streamed == [None]  # the first piece's span was free; the COPY met the stored key and was rolled back
    assert (report.readings_stored, report.duplicates, [(c.line, c.stored_value, c.new_value) for c in report.conflicts]) == (
        7, 1, [(9, 80.0, 8.0)],
    )
    assert _summary(report) == _summary(_unstreamed(repo, tmp_path, text, SEOUL_END, monkeypatch))
    assert _stored(repo, "a") == _stored(repo, "b")


def test_a_file_whose_timestamps_pandas_reads_is_checked_again_whole(
    repo: Repository, tmp_path: Path, streamed: list[WriteOutcome | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One label without its zero padding sends the whole timestamp column to pandas' parser, while
    the pieces without it take the fixed-width reader: the file is checked again from its text."""
    rows = [f"01/03/2024 {hour:02d}:00,{hour}" for hour in range(1, 10)]
    rows[7] = "1/3/2024 08:00,8"
    text = "ts,kwh\n" + "\n".join(rows) + "\n"
    report = _import(repo, tmp_path, text, SEOUL_END, "a")
    assert _summary(report) == _summary(_unstreamed(repo, tmp_path, text, SEOUL_END, monkeypatch))
    assert _stored(repo, "a") == _stored(repo, "b")
    assert [o.stored if o else None for o in streamed] == [report.readings_stored]


def test_the_steel_file_streamed_in_its_default_pieces_equals_the_unstreamed_import(
    repo: Repository, streamed: list[WriteOutcome | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csv_stream, "STREAM_FIRST_PIECE_ROWS", DEFAULT_PIECES[0])  # five pieces
    monkeypatch.setattr(csv_stream, "STREAM_PIECE_ROWS", DEFAULT_PIECES[1])
    report = import_csv(repo, STEEL_CSV, with_asset(STEEL_PRESET, "a"))
    assert [o.stored if o else None for o in streamed] == [35_040] and report.errors == []
    with monkeypatch.context() as patch:
        patch.setattr(csv_import, "streams", lambda *args, **kwargs: False)
        expected = import_csv(repo, STEEL_CSV, with_asset(STEEL_PRESET, "b"))
    assert _summary(report) == _summary(expected)
    far = {"start": datetime(2000, 1, 1, tzinfo=UTC), "end": datetime(2100, 1, 1, tzinfo=UTC)}
    ts_a, values_a = repo.series_arrays(repo.find_series("a", "energy").id, **far)  # type: ignore[union-attr]
    ts_b, values_b = repo.series_arrays(repo.find_series("b", "energy").id, **far)  # type: ignore[union-attr]
    assert len(ts_a) == 35_040 and (ts_a == ts_b).all() and (values_a == values_b).all()
