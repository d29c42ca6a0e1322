"""The streamed CSV import on PostgreSQL: reading and checking a file overlapped with the server's
``COPY`` of the rows already checked.

An unstreamed import reads and checks the whole file (about 20 ms for the steel file's 35,040
rows), then the server inserts the rows (about 40 ms) while Python waits. The server is another
process, so the two can overlap: the file is read in pieces of :data:`STREAM_PIECE_ROWS` rows (a
smaller first one, so the server starts early), each piece checked on its own and its readings
handed to :func:`~digitaltwin.storage.batch_write.stream_new_readings`, which writes them into one
``COPY`` while the next piece is read.

A piece checked on its own can differ from the file checked whole: local times are placed per
asset in file order (the fall-back hour's repeated labels, reading labels as interval ends or
starts). So after the last piece the file is checked as one, as the unstreamed import does, from
the pieces' row-by-row checks when those are each row's own
(:func:`~digitaltwin.ingest.csv_checks.row_local`) and from scratch otherwise; the streamed rows
are committed only when they are the file's accepted rows with the same instants and values,
and rolled back otherwise. Then, and whenever a key of the file is stored already or repeats in
it, the caller imports the file the unstreamed way: the stored readings, rejected rows,
duplicates, conflicts and change marks are the same either way. One trace can remain of a
rolled-back stream: the series, created (or given its interval) before the first piece is
written when that piece has an accepted row, stays even if checking the whole file then
rejects every row, where the unstreamed import would not have created it. That needs a file of
more than one piece none of whose rows the whole-file check accepts.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from digitaltwin.ingest.csv_checks import Checked, check_rows, join_checks, place, readings_of, row_checks, row_local
from digitaltwin.ingest.csv_columns import Columns, join_pieces, read_column_pieces
from digitaltwin.storage.batch_write import StreamAbandoned
from digitaltwin.storage.repository import Repository

if TYPE_CHECKING:
    from digitaltwin.ingest.csv_import import ColumnMapping

#: Rows per piece of a streamed import, and of its first piece: a small first piece starts the
#: server's ``COPY`` early; the others are large enough that pandas' fixed cost per piece (about
#: 1 ms) stays small, while the server inserts about 1,000 rows per millisecond, slower than a
#: piece is read and checked.
STREAM_PIECE_ROWS = 8_192
STREAM_FIRST_PIECE_ROWS = 4_096
#: Encodings in which a line feed byte is always a line break, so a file can be cut at them.
_CUTTABLE_ENCODINGS = {"utf-8", "utf-8-sig", "ascii", "iso8859-1", "cp1252"}


def streams(repo: Repository, mapping: ColumnMapping, *, replace_conflicts: bool) -> bool:
    """Whether an import may be streamed: PostgreSQL, first write wins, one value column of one
    asset named by the mapping, instant labels (no hour column), decimal points, and an encoding
    that can be cut at line feeds."""
    return (
        repo.engine.dialect.name == "postgresql" and not replace_conflicts and len(mapping.values) == 1
        and mapping.asset_column is None and bool(mapping.asset_id) and mapping.hour_column is None
        and mapping.decimal == "." and codecs.lookup(mapping.encoding).name in _CUTTABLE_ENCODINGS
    )


def import_streamed(
    repo: Repository, path: Path, mapping: ColumnMapping, *, tz_name: str | None, interval: int | None, max_readings: int
) -> tuple[Columns, Checked, int] | None:
    """Import a file that :func:`streams` allows and whose readings fit one batch of
    ``max_readings``, streamed (see the module docstring).

    Args:
        tz_name: IANA zone of offset-less timestamps.
        interval: interval length in seconds (needed for ``label="end"``).

    Returns:
        (the file's columns, their checks, readings stored) once committed, every row of the
        file read and checked as the unstreamed import does. None, with nothing stored, when the
        file does not fit one batch or needs the whole-file reader, no row of the first piece is
        accepted, a key of the file is stored already or repeats in it, or the file's check does
        not confirm the streamed rows: the caller then imports it the unstreamed way.
    """
    try:
        found = read_column_pieces(path, mapping, rows_per_piece=STREAM_PIECE_ROWS, first_piece_rows=STREAM_FIRST_PIECE_ROWS)
    except UnicodeDecodeError:
        return None  # the unstreamed import reports it
    if found is None or not 0 < found[0] <= max_readings:
        return None
    pieces = found[1]
    read: list[Columns] = []
    piece_checks: list[Checked] = []  # each piece's row-by-row checks, before placing
    confirmed: list[tuple[Columns, Checked]] = []

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for piece in pieces:
            if piece is None or not isinstance(piece.values[0], np.ndarray):
                raise StreamAbandoned("a piece needs the whole-file reader")  # or has text among its values
            checked = row_checks(piece, mapping, tz_name)
            read.append(piece)
            piece_checks.append(checked.copy())
            place(repo, piece, mapping, tz_name, interval, checked)
            if len(read) == 1 and not checked.rows.ok.any():
                raise StreamAbandoned("no row of the first piece is accepted")  # its series may not exist
            readings = readings_of(repo, piece, mapping, checked, interval)
            assert readings is not None  # one value column
            yield readings[0], readings[1], readings[2]

    def confirm(sids: np.ndarray, ts_us: np.ndarray, values: np.ndarray) -> bool:
        cols = join_pieces(read)
        if row_local(cols, mapping):
            checked = join_checks(cols, piece_checks)
            place(repo, cols, mapping, tz_name, interval, checked)
        else:
            checked = check_rows(repo, cols, mapping, tz_name, interval)
        whole = readings_of(repo, cols, mapping, checked, interval)
        assert whole is not None
        confirmed.append((cols, checked))
        return all(np.array_equal(a, b) for a, b in zip((sids, ts_us, values), whole[:3], strict=True))

    outcome = repo.stream_new_readings(chunks(), confirm)
    if outcome is None:
        return None
    cols, checked = confirmed[0]
    return cols, checked, outcome.stored
