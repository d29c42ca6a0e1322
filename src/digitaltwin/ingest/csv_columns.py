"""Reading a CSV file's columns for import, and parsing value columns: whole columns at once.

A file without quotes, blank lines or ragged rows is read by pandas' C parser; any other by
:mod:`csv` (both give each row's line number). Value columns are checked the way
:func:`~digitaltwin.domain.readings.parse_value` checks one value (plain finite decimals), then
converted to the canonical unit and checked against the quantity's plausible range; rows that
fail are rejected naming the column. Digits are ASCII only (``float()`` would read other scripts'
digits, '٥' as 5). A mapping with ``decimal=","`` reads decimal commas (``1,5``); a point in
such a file's values is then refused (``1.500`` may mean 1500). Used by
:mod:`digitaltwin.ingest.csv_import`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from digitaltwin.domain.errors import ValidationError
from digitaltwin.domain.readings import parse_value
from digitaltwin.domain.sentinels import NON_NEGATIVE, SENTINELS, check_sentinel
from digitaltwin.domain.units import check_range, quantity_spec, to_canonical

if TYPE_CHECKING:
    from digitaltwin.ingest.csv_import import ColumnMapping, ValueColumn

_DECIMAL = r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?"  # as digitaltwin.domain.readings.parse_value: ASCII digits
_DECIMAL_COMMA = r"[+-]?([0-9]+(,[0-9]*)?|,[0-9]+)([eE][+-]?[0-9]+)?"  # the same with a comma
#: pandas 2 parses floats to the nearest double only with float_precision="round_trip" (pandas 3
#: always does and deprecates the argument).
_ROUND_TRIP: dict[str, str] = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}


@dataclass(frozen=True, slots=True)
class RowError:
    """A rejected row: its 1-based line number in the file, the field to blame and why."""

    line: int
    field: str
    reason: str


@dataclass(slots=True)
class Columns:
    """The file's needed columns as lists of text, with each row's line number.

    ``one_asset``: every row is filed under the mapping's ``asset_id`` (no asset column), so
    per-asset work can skip looking at ``assets`` row by row.
    """

    lines: list[int]
    assets: list[str | None]
    stamps: list[str | None]
    hours: list[str | None] | None
    values: list[list[str | None] | np.ndarray]  # text, or float64 when the fast reader parsed the column
    one_asset: bool = False
    #: Rows (0-based positions) with more fields than the header (beyond it not all empty), and the
    #: header's field count: such a row is rejected, whatever its needed columns hold (a value
    #: holding the delimiter, such as an unquoted decimal comma, shifted the fields after it).
    wide: list[int] = field(default_factory=list)
    header_fields: int = 0


def read_columns(path: Path, mapping: ColumnMapping) -> Columns:
    """The columns ``mapping`` needs, as text; blank lines are skipped, short rows padded with None.

    A file without quotes, blank lines or ragged rows is read by pandas' C parser (line numbers
    are then the row's position plus the header); any other goes through :mod:`csv`.

    Raises:
        ValidationError: naming ``mapping`` when a column is not in the header.
    """
    fast = _read_columns_fast(path, mapping)
    if fast is not None:
        return fast
    with path.open(newline="", encoding=mapping.encoding) as handle:
        reader = csv.reader(handle, delimiter=mapping.delimiter)
        header = next(reader, [])
        needed = [mapping.timestamp_column, *(v.column for v in mapping.values)]
        needed += [c for c in (mapping.asset_column, mapping.hour_column) if c]
        missing = [c for c in needed if c not in header]
        if missing:
            hint = "" if len(header) > 1 else "; is --delimiter right?"
            raise ValidationError(f"column(s) {', '.join(missing)} not in the header ({', '.join(header)}){hint}", field="mapping")
        ts_i = header.index(mapping.timestamp_column)
        value_i = [header.index(v.column) for v in mapping.values]
        asset_i = header.index(mapping.asset_column) if mapping.asset_column else None
        hour_i = header.index(mapping.hour_column) if mapping.hour_column else None
        width = max(header.index(c) for c in needed) + 1
        cols = Columns([], [], [], [] if hour_i is not None else None, [[] for _ in value_i], one_asset=asset_i is None)
        pad: list[str | None] = [None] * width
        cols.header_fields = len(header)
        for record in reader:
            if not record:
                continue  # a blank line, as csv.DictReader skips them
            row: list[str | None] = record if len(record) >= width else [*record, *pad[len(record):]]  # type: ignore[list-item]
            if len(record) > len(header) and any(record[len(header):]):  # empty trailing fields are harmless
                cols.wide.append(len(cols.lines))
            cols.lines.append(reader.line_num)
            cols.stamps.append(row[ts_i])
            cols.assets.append(row[asset_i] if asset_i is not None else mapping.asset_id)
            if hour_i is not None:
                cols.hours.append(row[hour_i])  # type: ignore[union-attr]
            for out, i in zip(cols.values, value_i, strict=True):
                out.append(row[i])
    return cols


@dataclass(frozen=True, slots=True)
class _Layout:
    """A file the fast reader can take: its bytes, its data rows (lines after the header) and the
    columns to read as text."""

    data: bytes
    rows: int
    needed: list[str]
    texts: list[str]


def _fast_layout(path: Path, mapping: ColumnMapping) -> _Layout | None:
    """The file's :class:`_Layout`, or None when it needs :mod:`csv`'s rules (quotes, blank lines,
    lone carriage returns) or the csv path's report (a missing or repeated column)."""
    data = path.read_bytes()
    if b'"' in data:
        return None
    # Line breaks found with numpy, one pass per byte value: a carriage return not followed by a
    # line feed, or a blank line ("\n\n", "\n\r\n"), needs csv's rules.
    codes = np.frombuffer(data, dtype=np.uint8)
    breaks = np.flatnonzero(codes == ord("\n"))
    returns = np.flatnonzero(codes == ord("\r"))
    if len(returns) and (returns[-1] == len(codes) - 1 or not (codes[returns + 1] == ord("\n")).all()):
        return None
    if bool((np.diff(breaks) == 1).any()) or bool((codes[returns[returns > 0] - 1] == ord("\n")).any()):
        return None
    # A row with more fields than the header is rejected by the csv path; pandas' C parser would
    # drop its extra fields silently (usecols), so such a file goes there.
    if len(mapping.delimiter) != 1 or ord(mapping.delimiter) > 127:
        return None  # the byte search below takes an ASCII delimiter (one byte in every encoding read here)
    ends = np.append(breaks, len(codes))
    fields = np.diff(np.searchsorted(np.flatnonzero(codes == ord(mapping.delimiter)), ends), prepend=0)
    if bool((fields[1:] > fields[0]).any()):
        return None
    first_line = data.split(b"\n", 1)[0].rstrip(b"\r")
    header = first_line.decode(mapping.encoding).split(mapping.delimiter)  # UnicodeDecodeError: the caller reports it
    needed = [mapping.timestamp_column, *(v.column for v in mapping.values)]
    needed += [c for c in (mapping.asset_column, mapping.hour_column) if c]
    if any(c not in header for c in needed) or len(set(header)) != len(header):
        return None  # the csv path reports missing columns
    texts = [c for c in (mapping.timestamp_column, mapping.asset_column, mapping.hour_column) if c]
    if mapping.decimal != ".":
        texts += [v.column for v in mapping.values]  # decimal commas are read by parse_values
    rows = len(breaks) - (1 if data.endswith(b"\n") else 0)
    return _Layout(data, rows, needed, texts)


def _read_csv_options(layout: _Layout, mapping: ColumnMapping) -> dict[str, object]:
    """pandas' C parser as the fast reader uses it. Value columns are left to its float conversion
    (pandas 3: the same double as Python's float(), checked on 400,000 random decimals); a column
    with any text that is not a number comes back as text and takes the strict path."""
    return {
        "encoding": mapping.encoding, "sep": mapping.delimiter, "usecols": list(dict.fromkeys(layout.needed)),
        "dtype": dict.fromkeys(layout.texts, str), "na_filter": False, "keep_default_na": False, "engine": "c",
        "skip_blank_lines": False, "quoting": csv.QUOTE_NONE, **_ROUND_TRIP,
    }


def _frame_columns(frame: pd.DataFrame, mapping: ColumnMapping, first: int, rows: int) -> Columns | None:
    """The :class:`Columns` of ``rows`` data rows read by the C parser, the first being data row
    ``first`` (0-based), or None when the parser did not give one complete row per line."""
    if rows != len(frame) or frame.isna().to_numpy().any():  # one row per line after the header: line numbers hold
        return None
    lines = list(range(first + 2, first + rows + 2))
    column = frame[mapping.timestamp_column].tolist()
    assets = frame[mapping.asset_column].tolist() if mapping.asset_column else [mapping.asset_id] * len(frame)
    hours = frame[mapping.hour_column].tolist() if mapping.hour_column else None
    values: list[list[str | None] | np.ndarray] = []
    for v in mapping.values:
        series = frame[v.column]
        values.append(series.to_numpy(np.float64) if series.dtype.kind in "fi" else series.astype(str).tolist())
    return Columns(lines, assets, column, hours, values, one_asset=mapping.asset_column is None)


def _read_columns_fast(path: Path, mapping: ColumnMapping) -> Columns | None:
    """:func:`read_columns` with pandas' C parser, or None when the file needs :mod:`csv`'s rules."""
    layout = _fast_layout(path, mapping)
    if layout is None:
        return None
    try:
        frame = pd.read_csv(io.BytesIO(layout.data), **_read_csv_options(layout, mapping))  # type: ignore[call-overload]
    except (pd.errors.ParserError, ValueError):
        return None
    return _frame_columns(frame, mapping, 0, layout.rows)


def read_column_pieces(
    path: Path, mapping: ColumnMapping, *, rows_per_piece: int, first_piece_rows: int | None = None
) -> tuple[int, Iterator[Columns | None]] | None:
    """The file's rows in pieces of ``rows_per_piece`` (the first of ``first_piece_rows``, when
    given), each read when asked for (one C parser reading on), so that a caller can work on a
    piece while the next is read; None when the fast reader does not apply (then
    :func:`read_columns` reads the file with :mod:`csv`).

    Returns:
        (data rows of the file, an iterator of pieces). A piece is the :class:`Columns` of its
        rows with their line numbers in the file; :func:`join_pieces` of all of them equals
        :func:`read_columns` of the file when every value column of every piece came back as
        numbers (a text column is only text in the piece that has the text, while the whole
        file's column would be text throughout). The iterator yields None, and stops, at a
        piece the C parser does not read as the fast reader needs: the caller reads the whole
        file instead.

    Raises:
        UnicodeDecodeError: the header is not in the mapping's encoding.
    """
    layout = _fast_layout(path, mapping)
    if layout is None:
        return None

    def pieces() -> Iterator[Columns | None]:
        first, size = 0, first_piece_rows or rows_per_piece
        try:
            with pd.read_csv(io.BytesIO(layout.data), iterator=True, **_read_csv_options(layout, mapping)) as reader:  # type: ignore[call-overload]
                while first < layout.rows:
                    rows = min(size, layout.rows - first)
                    piece = _frame_columns(reader.get_chunk(rows), mapping, first, rows)
                    yield piece
                    if piece is None:
                        return
                    first, size = first + rows, rows_per_piece
                if len(reader.get_chunk(1)):
                    yield None  # more rows than lines
        except StopIteration:  # at the end: fewer rows than lines when some were not read
            if first < layout.rows:
                yield None
        except (pd.errors.ParserError, ValueError):
            yield None

    return layout.rows, pieces()


def join_pieces(pieces: list[Columns]) -> Columns:
    """The :class:`Columns` of consecutive pieces of one file (see :func:`read_column_pieces`)."""
    first = pieces[0]
    joined = Columns([], [], [], [] if first.hours is not None else None, [], one_asset=first.one_asset)
    for piece in pieces:
        joined.lines += piece.lines
        joined.assets += piece.assets
        joined.stamps += piece.stamps
        if joined.hours is not None:
            joined.hours += piece.hours or []
    for c, column in enumerate(first.values):
        parts = [piece.values[c] for piece in pieces]
        if isinstance(column, np.ndarray):
            joined.values.append(np.concatenate(parts))  # type: ignore[arg-type]
        else:
            joined.values.append([text for part in parts for text in part])
    return joined


class RowChecks:
    """Per-row state of an import: the first error of each row wins."""

    def __init__(self, lines: list[int]) -> None:
        self.lines = lines
        self.ok = np.ones(len(lines), dtype=bool)
        self.errors: list[RowError] = []

    def reject(self, i: int, field_name: str, reason: str) -> None:
        if self.ok[i]:
            self.ok[i] = False
            self.errors.append(RowError(self.lines[i], field_name, reason))


_DECIMAL_CHARS = np.zeros(128, dtype=bool)
_DECIMAL_CHARS[[ord(c) for c in "0123456789+-.eE"]] = True


def _plain_decimals(texts: list[str | None]) -> tuple[np.ndarray, np.ndarray] | None:
    """Fast path of value parsing: (float64 values, bool ok) when numpy can convert the column
    whole, texts made only of digits, signs, points and exponents counting as ok (what
    :func:`~digitaltwin.domain.readings.parse_value` accepts once numpy's float conversion also
    succeeds); None when any text needs the slow path."""
    if not texts or None in texts:
        return None
    chars = np.array(texts, dtype=str)
    codes = chars.view(np.uint32).reshape(len(texts), -1) if chars.itemsize else None
    if codes is None:
        return None
    lengths = np.char.str_len(chars)
    used = np.arange(codes.shape[1]) < lengths[:, None]
    allowed = np.where(codes < 128, _DECIMAL_CHARS[np.minimum(codes, 127)], False)
    ok = (allowed | ~used).all(axis=1) & (lengths > 0)
    if not ok.all():
        return None
    try:
        return chars.astype(np.float64), ok
    except ValueError:
        return None


def _comma_decimals(texts: list[str | None], column: str, rows: RowChecks) -> list[str | None]:
    """Decimal-comma texts (``1,5``) written with a point; a text that is not such a number (a
    point in it included) rejects its row naming ``column`` and is left as it is."""
    stripped = pd.Series([t if t is not None else "" for t in texts], dtype="object").str.strip()
    plain = np.asarray(stripped.str.fullmatch(_DECIMAL_COMMA), dtype=bool)
    for i in np.flatnonzero(~plain & rows.ok).tolist():
        rows.reject(i, column, f"value {str(texts[i])[:40]!r} is not a number with a decimal comma")
    return [t.replace(",", ".") if ok and t is not None else t for t, ok in zip(texts, plain.tolist(), strict=True)]


def parse_values(texts: list[str | None] | np.ndarray, col: ValueColumn, rows: RowChecks, *, decimal: str = ".") -> np.ndarray:
    """A value column in the quantity's canonical unit; rows with a value that is not a plain finite
    decimal (with a comma for ``decimal=","``), or outside the quantity's plausible range, are
    rejected naming the column."""
    spec = quantity_spec(col.quantity)
    if decimal == "," and not isinstance(texts, np.ndarray):
        texts = _comma_decimals(texts, col.column, rows)
    try:
        to_canonical(col.quantity, 0.0, col.unit, field=col.column)
    except ValidationError as exc:  # an unknown unit: every row is rejected naming the column, as before
        for i in np.flatnonzero(rows.ok).tolist():
            rows.reject(i, exc.field or col.column, exc.message)
        return np.zeros(len(texts))
    fast = (texts, np.ones(len(texts), dtype=bool)) if isinstance(texts, np.ndarray) else _plain_decimals(texts)
    if fast is not None:
        raw, plain = fast
    else:
        stripped = pd.Series([t if t is not None else "" for t in texts], dtype="object").str.strip()
        plain = np.asarray(stripped.str.fullmatch(_DECIMAL), dtype=bool)
        raw = pd.to_numeric(stripped.where(plain), errors="coerce").to_numpy(np.float64)
    factor, offset = spec.factors[col.unit] if col.unit is not None else (1.0, 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        canonical = raw * factor + offset
    low, high = spec.bounds
    good = plain & np.isfinite(canonical) & (canonical >= low) & (canonical <= high)
    # "Not available" sentinels are refused by the raw value as written, also inside the range.
    sentinel = np.isin(raw, list(SENTINELS)) | ((raw == -1.0) & (col.quantity in NON_NEGATIVE))
    for i in np.flatnonzero(plain & sentinel & rows.ok).tolist():
        try:
            check_sentinel(col.quantity, float(raw[i]), field=col.column)
        except ValidationError as exc:
            rows.reject(i, col.column, exc.message)
    good &= ~sentinel
    for i in np.flatnonzero(~good & rows.ok).tolist():
        try:
            text = texts[i] if not isinstance(texts, np.ndarray) else float(texts[i])
            value = to_canonical(col.quantity, parse_value(text, field=col.column), col.unit, field=col.column)
            check_range(col.quantity, value, field=col.column)
            reason = f"value {texts[i]!r} could not be read"  # not reached: the checks above agree
        except ValidationError as exc:
            reason = exc.message
            if decimal == "." and isinstance(text, str) and "," in text and re.fullmatch(_DECIMAL_COMMA, text.strip()):
                reason += "; for decimal commas give the decimal option ','"
        rows.reject(i, col.column, reason)
    return canonical
