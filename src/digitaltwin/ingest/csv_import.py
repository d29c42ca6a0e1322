"""CSV import with a column mapping, and the built-in presets.

Every row is validated (timestamp, asset, each value: a plain finite decimal in a known unit
within the quantity's plausible range); rejected rows are reported with their line number,
field and reason (all of them: :meth:`ImportReport.write_rejections`), all other rows are
stored. Readings are keyed by series and timestamp: re-importing a file stores nothing new
(*duplicates*); a key already stored (or earlier in the file) with a *different* value is a
*conflict*, reported with both values. First write wins unless the import replaces.

Timestamps: values with a UTC offset are taken as they are; offset-less values
take the mapping's timezone, else the site's; with neither the row is
rejected ("no UTC offset", field case ``time/naive-timestamps``).

Local labels are turned into local interval starts *before* they are placed in time, so
that the fall-back day's repeated hour and the spring-forward gap resolve on the hour each
row measures:

* ``label="end"``: the interval start is the label minus ``interval_seconds`` on the wall
  clock; when that start falls in a DST gap (the hour 01:00-02:00 EST labelled with its end
  03:00 EDT) the end label is placed in time and the interval subtracted.
* a separate hour column (``hour_column``) of hour numbers, "hour ending" 1-24 or "hour
  beginning" 0-23 of the date in ``timestamp_column``. A fall-back day is numbered either
  with a repeated hour number (resolved by file order) or up to 25 (24 beginning); a date
  numbered that way, or a 23-hour day numbered 1-23 without its skipped hour, counts hours
  from the local midnight instead of reading them as wall-clock labels.
* Repeated local times are resolved per asset by file order: the first of two equal labels
  is the summer hour, the second the winter one, wherever they stand in the file
  (``time/csv-ambiguous-local-times``, :func:`~digitaltwin.domain.timestamps.localize_walls`).

Interval-end labels are moved to interval starts, the product's convention. The work is done
on whole columns (pandas and numpy) and stored with
:meth:`~digitaltwin.storage.repository.Repository.store_arrays` (binary ``COPY`` on PostgreSQL).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from digitaltwin.domain.errors import ValidationError
from digitaltwin.domain.readings import parse_value
from digitaltwin.domain.timestamps import (
    FUTURE_TOLERANCE,
    PLAUSIBLE_FLOOR,
    check_plausible,
    localize_walls,
    parse_instant,
    zone,
)
from digitaltwin.domain.units import check_range, quantity_spec, to_canonical
from digitaltwin.storage.repository import Repository
from digitaltwin.storage.tables import from_epoch_us, to_epoch_us

#: Rows stored per transaction; progress is reported after each.
CHUNK_ROWS = 50_000
_US_PER_S = 1_000_000
_US_PER_HOUR = 3600 * _US_PER_S
_DECIMAL = r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?"  # as digitaltwin.domain.readings.parse_value
_HOUR_NUMBER = r"\d{1,2}"
#: pandas 2 parses floats to the nearest double only with float_precision="round_trip" (pandas 3
#: always does and deprecates the argument).
_ROUND_TRIP: dict[str, str] = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}


@dataclass(frozen=True, slots=True)
class ValueColumn:
    """A CSV column holding values of one quantity, in ``unit`` (None: canonical)."""

    column: str
    quantity: str
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class ColumnMapping:
    """How to read a CSV file into readings.

    Attributes:
        timestamp_column: column with the timestamps (the dates, with ``hour_column``).
        values: the value columns.
        asset_column: column naming the asset of each row; else ``asset_id`` for all rows.
        timezone: IANA zone of offset-less timestamps (None: the site's zone).
        label: whether timestamps label interval starts or ends.
        interval_seconds: interval length of interval quantities (needed for ``label="end"``;
            one hour by default with ``hour_column``).
        timestamp_format: ``strptime`` format (of the dates with ``hour_column``); None for ISO 8601.
        midnight_ends_day: a ``00:00`` label closes its own date (it is 24:00), as in the steel dataset.
        hour_column: column of hour numbers of the date in ``timestamp_column`` (see the module docstring).
        hour_convention: ``ending`` (hour 1 is 00:00-01:00) or ``beginning`` (hour 0 is 00:00-01:00).
        delimiter: the field separator, e.g. ``;`` for exports of spreadsheet programs in many locales.
    """

    timestamp_column: str
    values: tuple[ValueColumn, ...]
    asset_column: str | None = None
    asset_id: str | None = None
    timezone: str | None = None
    label: Literal["start", "end"] = "start"
    interval_seconds: int | None = None
    timestamp_format: str | None = None
    midnight_ends_day: bool = False
    delimiter: str = ","
    encoding: str = "utf-8-sig"
    hour_column: str | None = None
    hour_convention: Literal["ending", "beginning"] = "ending"


#: UCI "Steel Industry Energy Consumption" (DAEWOO Steel, 2018): see datasets/steel_industry/.
STEEL_PRESET = ColumnMapping(
    timestamp_column="date",
    values=(ValueColumn("Usage_kWh", "energy", "kWh"),),
    asset_id="steel-plant",
    timezone="Asia/Seoul",
    label="end",
    interval_seconds=900,
    timestamp_format="%d/%m/%Y %H:%M",
    midnight_ends_day=True,
)

PRESETS: dict[str, ColumnMapping] = {"steel": STEEL_PRESET}


@dataclass(frozen=True, slots=True)
class RowError:
    """A rejected row: its 1-based line number in the file, the field to blame and why."""

    line: int
    field: str
    reason: str


@dataclass(frozen=True, slots=True)
class ImportConflict:
    """A reading whose key (asset, quantity, ts) was already stored, or earlier in the file, with
    another value: ``stored_value`` stayed (or was replaced by ``new_value`` when replacing)."""

    line: int
    asset_id: str
    quantity: str
    ts: datetime
    stored_value: float
    new_value: float


@dataclass(slots=True)
class ImportReport:
    """Outcome of one import.

    Attributes:
        rows_read: data rows of the file (blank lines not counted).
        readings_parsed: readings of the accepted rows.
        readings_stored: readings newly stored.
        duplicates: readings whose key was stored with the same value (nothing to do).
        conflicts: readings whose key was stored with another value.
        replaced: whether conflicts replaced the stored value (else the stored value stayed).
        errors: every rejected row, by line.
    """

    rows_read: int = 0
    readings_parsed: int = 0
    readings_stored: int = 0
    duplicates: int = 0
    conflicts: list[ImportConflict] = field(default_factory=list)
    replaced: bool = False
    errors: list[RowError] = field(default_factory=list)

    @property
    def rejected_by_field(self) -> dict[str, int]:
        """Rejected rows per field to blame, most frequent first."""
        return dict(Counter(e.field for e in self.errors).most_common())

    def write_rejections(self, path: Path) -> int:
        """Write every rejected row and every conflict to a CSV file; returns the lines written.

        Columns: ``line`` (of the imported file), ``kind`` (``rejected`` or ``conflict``),
        ``field`` and ``reason``; a conflict's reason names the series, the instant and both values.
        """
        entries: list[tuple[int, str, str, str]] = [(e.line, "rejected", e.field, e.reason) for e in self.errors]
        for c in self.conflicts:
            outcome = "replaced" if self.replaced else "kept"
            entries.append((
                c.line, "conflict", c.quantity,
                f"{c.quantity} of {c.asset_id} at {c.ts.isoformat().replace('+00:00', 'Z')} is stored as {c.stored_value!r}, "
                f"the file has {c.new_value!r}; the stored value was {outcome}",
            ))
        entries.sort(key=lambda e: (e[0], e[1]))
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["line", "kind", "field", "reason"])
            writer.writerows(entries)
        return len(entries)


@dataclass(slots=True)
class _Columns:
    """The file's needed columns as lists of text, with each row's line number."""

    lines: list[int]
    assets: list[str | None]
    stamps: list[str | None]
    hours: list[str | None] | None
    values: list[list[str | None] | np.ndarray]  # text, or float64 when the fast reader parsed the column


def read_columns(path: Path, mapping: ColumnMapping) -> _Columns:
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
        cols = _Columns([], [], [], [] if hour_i is not None else None, [[] for _ in value_i])
        pad: list[str | None] = [None] * width
        for record in reader:
            if not record:
                continue  # a blank line, as csv.DictReader skips them
            row: list[str | None] = record if len(record) >= width else [*record, *pad[len(record):]]  # type: ignore[list-item]
            cols.lines.append(reader.line_num)
            cols.stamps.append(row[ts_i])
            cols.assets.append(row[asset_i] if asset_i is not None else mapping.asset_id)
            if hour_i is not None:
                cols.hours.append(row[hour_i])  # type: ignore[union-attr]
            for out, i in zip(cols.values, value_i, strict=True):
                out.append(row[i])
    return cols


def _read_columns_fast(path: Path, mapping: ColumnMapping) -> _Columns | None:
    """:func:`read_columns` with pandas' C parser, or None when the file needs :mod:`csv`'s rules."""
    data = path.read_bytes()
    if b'"' in data or data.count(b"\r") != data.count(b"\r\n") or b"\n\n" in data or b"\n\r\n" in data:
        return None
    first_line = data.split(b"\n", 1)[0].rstrip(b"\r")
    header = first_line.decode(mapping.encoding).split(mapping.delimiter)  # UnicodeDecodeError: the caller reports it
    needed = [mapping.timestamp_column, *(v.column for v in mapping.values)]
    needed += [c for c in (mapping.asset_column, mapping.hour_column) if c]
    if any(c not in header for c in needed) or len(set(header)) != len(header):
        return None  # the csv path reports missing columns
    texts = [c for c in (mapping.timestamp_column, mapping.asset_column, mapping.hour_column) if c]
    try:
        # Value columns are left to the C parser's float conversion (pandas 3: the same double as
        # Python's float(), checked on 400,000 random decimals); a column with any text that is
        # not a number comes back as text and takes the strict path.
        frame = pd.read_csv(
            io.BytesIO(data), encoding=mapping.encoding, sep=mapping.delimiter, usecols=list(dict.fromkeys(needed)), dtype=dict.fromkeys(texts, str),
            na_filter=False, keep_default_na=False, engine="c", skip_blank_lines=False, quoting=csv.QUOTE_NONE,
            **_ROUND_TRIP,
        )
    except (pd.errors.ParserError, ValueError):
        return None
    rows = data.count(b"\n") - (1 if data.endswith(b"\n") else 0)
    if rows != len(frame) or frame.isna().to_numpy().any():  # one row per line after the header: line numbers hold
        return None
    lines = list(range(2, len(frame) + 2))
    column = frame[mapping.timestamp_column].tolist()
    assets = frame[mapping.asset_column].tolist() if mapping.asset_column else [mapping.asset_id] * len(frame)
    hours = frame[mapping.hour_column].tolist() if mapping.hour_column else None
    values: list[list[str | None] | np.ndarray] = []
    for v in mapping.values:
        series = frame[v.column]
        values.append(series.to_numpy(np.float64) if series.dtype.kind in "fi" else series.astype(str).tolist())
    return _Columns(lines, assets, column, hours, values)


class _Rows:
    """Per-row state of an import: the first error of each row wins."""

    def __init__(self, lines: list[int]) -> None:
        self.lines = lines
        self.ok = np.ones(len(lines), dtype=bool)
        self.errors: list[RowError] = []

    def reject(self, i: int, field_name: str, reason: str) -> None:
        if self.ok[i]:
            self.ok[i] = False
            self.errors.append(RowError(self.lines[i], field_name, reason))


def _parse_ts(text: str, mapping: ColumnMapping) -> datetime:
    column = mapping.timestamp_column
    if mapping.timestamp_format is None:
        return parse_instant(text, field=column, tz=None) if _has_offset(text) else _naive_iso(text, column)
    try:
        parsed = datetime.strptime(text.strip(), mapping.timestamp_format)
    except ValueError:
        raise ValidationError(f"timestamp {text!r} does not match {mapping.timestamp_format!r}", field=column) from None
    if mapping.midnight_ends_day and parsed.hour == 0 and parsed.minute == 0:
        parsed += timedelta(days=1)
    return parsed


def _has_offset(text: str) -> bool:
    text = text.strip()
    return text.endswith(("Z", "z")) or (len(text) > 10 and ("+" in text[10:] or "-" in text[10:]))


def _naive_iso(text: str, column: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(f"unparseable timestamp {text!r}", field=column) from None


def _wall_us(value: datetime) -> int:
    """Microseconds of a naive wall-clock time counted like epoch microseconds."""
    return to_epoch_us(value.replace(tzinfo=UTC))


_FIELD_WIDTH = {"%Y": 4, "%m": 2, "%d": 2, "%H": 2, "%M": 2, "%S": 2}


def _fixed_width_strptime(texts: list[str], fmt: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Parse same-length, zero-padded texts of a numeric ``strptime`` format (``%d/%m/%Y %H:%M``)
    with numpy: (int64 wall-clock microseconds, bool ok). None when the format or the texts do
    not fit (then pandas parses them). A text whose digits name no date or time is not ok."""
    slots: dict[str, int] = {}
    literal: list[tuple[int, str]] = []
    pos = i = 0
    while i < len(fmt):
        if fmt[i] == "%":
            code = fmt[i : i + 2]
            if code not in _FIELD_WIDTH or code in slots:
                return None
            slots[code] = pos
            pos += _FIELD_WIDTH[code]
            i += 2
        else:
            literal.append((pos, fmt[i]))
            pos += 1
            i += 1
    if not {"%Y", "%m", "%d"} <= slots.keys() or not texts:
        return None
    try:
        joined = "".join(texts).encode("ascii")
    except (TypeError, UnicodeEncodeError):
        return None
    if len(joined) != pos * len(texts) or set(map(len, texts)) != {pos}:
        return None
    codes = np.frombuffer(joined, dtype=np.uint8).reshape(len(texts), pos).astype(np.int64)
    ok = np.ones(len(texts), dtype=bool)
    for at, char in literal:
        ok &= codes[:, at] == ord(char)
    digits = codes - ord("0")

    def number(code: str, default: int = 0) -> np.ndarray:
        if code not in slots:
            return np.full(len(texts), default, dtype=np.int64)
        at, width = slots[code], _FIELD_WIDTH[code]
        part = digits[:, at : at + width]
        nonlocal ok
        ok &= ((part >= 0) & (part <= 9)).all(axis=1)
        return (part * (10 ** np.arange(width - 1, -1, -1))).sum(axis=1)

    year, month, day = number("%Y"), number("%m"), number("%d")
    hour, minute, second = number("%H"), number("%M"), number("%S")
    ok &= (month >= 1) & (month <= 12) & (day >= 1) & (hour <= 23) & (minute <= 59) & (second <= 59) & (year >= 1)
    months = np.where(ok, (year - 1970) * 12 + month - 1, 0).astype("datetime64[M]")
    days_in_month = ((months + 1).astype("datetime64[D]") - months.astype("datetime64[D]")).astype(np.int64)
    ok &= day <= days_in_month
    start = months.astype("datetime64[D]").astype(np.int64) + day - 1
    us = ((start * 24 + hour) * 60 + minute) * 60 + second
    return np.where(ok, us * _US_PER_S, 0), ok


def _stamps(cols: _Columns, mapping: ColumnMapping, rows: _Rows) -> tuple[np.ndarray, np.ndarray]:
    """Instant labels: (int64 microseconds, bool "is a naive wall-clock time"); UTC epoch for
    labels with an offset, wall-clock microseconds counted the same way for the others."""
    n = len(cols.lines)
    us = np.zeros(n, dtype=np.int64)
    wall = np.zeros(n, dtype=bool)
    column = mapping.timestamp_column
    if mapping.timestamp_format is not None:
        fixed = _fixed_width_strptime([t or "" for t in cols.stamps], mapping.timestamp_format)
        if fixed is not None:
            parsed_us, failed = fixed[0], ~fixed[1]
        else:
            texts = pd.Series([t or "" for t in cols.stamps], dtype="object").str.strip()
            parsed = pd.to_datetime(texts, format=mapping.timestamp_format, errors="coerce")
            failed = np.asarray(parsed.isna())
            parsed_us = np.where(failed, 0, parsed.to_numpy(dtype="datetime64[us]").astype(np.int64))
        if mapping.midnight_ends_day:
            midnight = (parsed_us % (24 * _US_PER_HOUR)) // (60 * _US_PER_S) % 60 == 0
            midnight &= (parsed_us % (24 * _US_PER_HOUR)) < _US_PER_HOUR
            parsed_us = np.where(midnight & ~failed, parsed_us + 24 * _US_PER_HOUR, parsed_us)
        us[:] = parsed_us
        wall[:] = True
        for i in np.flatnonzero(failed).tolist():
            try:
                us[i] = _wall_us(_parse_ts(cols.stamps[i] or "", mapping))
            except ValidationError as exc:
                rows.reject(i, exc.field or column, exc.message)
        return us, wall
    for i, text in enumerate(cols.stamps):
        try:
            value = _parse_ts(text or "", mapping)
        except ValidationError as exc:
            rows.reject(i, exc.field or column, exc.message)
            continue
        if value.tzinfo is None:
            us[i], wall[i] = _wall_us(value), True
        else:
            us[i] = to_epoch_us(value)
    return us, wall


def _hour_starts(cols: _Columns, mapping: ColumnMapping, tz_name: str | None, rows: _Rows) -> tuple[np.ndarray, np.ndarray]:
    """Date and hour-number columns: (int64 microseconds of each hour's start, bool "is a wall-clock
    time"); hours of dates numbered from midnight (see the module docstring) are UTC already."""
    n = len(cols.lines)
    column, hour_column = mapping.timestamp_column, mapping.hour_column
    assert cols.hours is not None and hour_column is not None
    fmt = mapping.timestamp_format or "%Y-%m-%d"
    dates = pd.to_datetime(pd.Series([t or "" for t in cols.stamps], dtype="object").str.strip(), format=fmt, errors="coerce")
    bad_date = np.asarray(dates.isna())
    hour_text = pd.Series([h or "" for h in cols.hours], dtype="object").str.strip()
    number = pd.to_numeric(hour_text.where(hour_text.str.fullmatch(_HOUR_NUMBER)), errors="coerce").to_numpy(float)
    ending = mapping.hour_convention == "ending"
    first, last = (1, 25) if ending else (0, 24)
    bad_hour = ~np.isfinite(number) | (number < first) | (number > last)
    for i in range(n):
        if bad_date[i]:
            rows.reject(i, column, f"date {cols.stamps[i]!r} does not match {fmt!r}")
        elif bad_hour[i]:
            kind = "hour ending number (1-24, 25 on a fall-back day)" if ending else "hour beginning number (0-23, 24 on a fall-back day)"
            rows.reject(i, hour_column, f"{cols.hours[i]!r} is not an {kind}")
    k = np.where(bad_hour, 0, number).astype(np.int64) - (1 if ending else 0)  # hours after midnight
    day_us = np.where(bad_date, 0, dates.to_numpy(dtype="datetime64[us]").astype(np.int64))
    us = day_us + k * _US_PER_HOUR
    wall = np.ones(n, dtype=bool)
    if tz_name is None:
        return us, wall
    tz = zone(tz_name)
    valid = rows.ok.copy()
    days = np.unique(day_us[valid])
    if len(days) == 0:
        return us, wall
    midnights = pd.DatetimeIndex(days.astype("datetime64[us]").astype("datetime64[ns]"))
    local = midnights.tz_localize(tz, ambiguous=np.ones(len(days), dtype=bool), nonexistent="shift_forward")
    following = (midnights + pd.Timedelta(days=1)).tz_localize(tz, ambiguous=np.ones(len(days), dtype=bool), nonexistent="shift_forward")
    midnight_utc = dict(zip(days.tolist(), (local.asi8 // 1000).tolist(), strict=True))
    day_hours = dict(zip(days.tolist(), ((following.asi8 - local.asi8) // (3600 * 10**9)).tolist(), strict=True))
    starts = pd.DatetimeIndex(us.astype("datetime64[us]").astype("datetime64[ns]"))
    in_gap = np.asarray(starts.tz_localize(tz, ambiguous=np.ones(n, dtype=bool), nonexistent="NaT").isna())
    frame = pd.DataFrame({"asset": cols.assets, "day": day_us, "k": k, "gap": in_gap})[valid]
    by_day = frame.groupby(["asset", "day"]).agg(top=("k", "max"), gap=("gap", "any"))
    elapsed_days = {
        key for key, top, gap in zip(by_day.index, by_day["top"], by_day["gap"], strict=True)
        if top >= 24 or (gap and top <= 22 and day_hours[key[1]] == 23)
    }
    for i in np.flatnonzero(valid).tolist():
        key = (cols.assets[i], int(day_us[i]))
        hours_of_day = day_hours[key[1]]
        if key in elapsed_days:
            if k[i] >= hours_of_day:
                rows.reject(i, hour_column, f"hour {cols.hours[i]} does not exist on {cols.stamps[i]}, a {hours_of_day}-hour day in {tz.key}")
            else:
                us[i], wall[i] = midnight_utc[key[1]] + int(k[i]) * _US_PER_HOUR, False
        elif k[i] >= 24:
            rows.reject(i, hour_column, f"hour {cols.hours[i]} does not exist on {cols.stamps[i]}, a {hours_of_day}-hour day in {tz.key}")
    return us, wall


def _localize(
    us: np.ndarray, wall: np.ndarray, cols: _Columns, tz_name: str | None, column: str, rows: _Rows, gap_shift_us: int
) -> None:
    """Turn the wall-clock entries of ``us`` (interval starts) into UTC epoch microseconds in place,
    per asset in file order. ``gap_shift_us``: for interval-end labels, the interval; a start in a
    DST gap is then placed as its end label minus the interval."""
    todo = np.flatnonzero(wall & rows.ok)
    if len(todo) == 0:
        return
    if tz_name is None:
        for i in todo.tolist():
            rows.reject(i, column, "timestamp has no UTC offset and no timezone is configured")
        return
    tz = zone(tz_name)
    # File order resolves the repeated hour per asset: in a file that interleaves
    # meters, one meter's rows are not a step back in another meter's time.
    assets = np.asarray(cols.assets, dtype=object)[todo]
    groups = pd.Series(np.arange(len(todo))).groupby(assets, sort=False).indices
    for positions in groups.values():
        idx = todo[positions]
        resolved, errors = localize_walls(us[idx].astype("datetime64[us]"), tz)
        for p, reason in errors.items():
            i = int(idx[p])
            if gap_shift_us and "DST gap" in reason:
                end, end_errors = localize_walls(np.array([us[i] + gap_shift_us], dtype="datetime64[us]"), tz)
                if not end_errors:
                    resolved[p] = end[0] - gap_shift_us
                    continue
            rows.reject(i, column, reason)
        us[idx] = resolved


def _check_plausible(us: np.ndarray, column: str, rows: _Rows) -> None:
    now = datetime.now(UTC)
    low, high = to_epoch_us(PLAUSIBLE_FLOOR), to_epoch_us(now + FUTURE_TOLERANCE)
    for i in np.flatnonzero(rows.ok & ((us < low) | (us > high))).tolist():
        try:
            check_plausible(from_epoch_us(int(us[i])), field=column, now=now)
        except ValidationError as exc:
            rows.reject(i, column, exc.message)


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


def _values(texts: list[str | None] | np.ndarray, col: ValueColumn, rows: _Rows) -> np.ndarray:
    """A value column in the quantity's canonical unit; rows with a value that is not a plain finite
    decimal, or outside the quantity's plausible range, are rejected naming the column."""
    spec = quantity_spec(col.quantity)
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
    for i in np.flatnonzero(~good & rows.ok).tolist():
        try:
            text = texts[i] if not isinstance(texts, np.ndarray) else float(texts[i])
            value = to_canonical(col.quantity, parse_value(text, field=col.column), col.unit, field=col.column)
            check_range(col.quantity, value, field=col.column)
            reason = f"value {texts[i]!r} could not be read"  # not reached: the checks above agree
        except ValidationError as exc:
            reason = exc.message
        rows.reject(i, col.column, reason)
    return canonical


def import_csv(
    repo: Repository,
    path: Path,
    mapping: ColumnMapping,
    *,
    site_timezone: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    replace_conflicts: bool = False,
) -> ImportReport:
    """Import a CSV file into stored readings.

    Args:
        repo: storage.
        path: the CSV file.
        mapping: how to read it (see :data:`PRESETS`).
        site_timezone: zone for offset-less timestamps when the mapping names none.
        progress: called with (readings written so far, readings to write) after each chunk.
        replace_conflicts: a reading stored with another value takes the file's value
            (default: the stored value stays; either way the conflict is reported).

    Returns:
        Counts, the conflicts and every rejected row. Rows of unknown assets are rejected
        naming the asset column.

    Raises:
        ValidationError: the mapping does not fit the file's header, or names an unknown
            quantity, a bad delimiter or interval (an unknown unit rejects every row).
    """
    for col in mapping.values:
        quantity_spec(col.quantity, field=col.column)
    if not isinstance(mapping.delimiter, str) or len(mapping.delimiter) != 1 or mapping.delimiter in "\r\n\"":
        raise ValidationError(f"delimiter must be one character (not a quote or line break), not {mapping.delimiter!r}", field="delimiter")
    interval = mapping.interval_seconds or (3600 if mapping.hour_column else None)
    if mapping.label == "end" and not interval:
        raise ValidationError("interval-end labels need interval_seconds", field="interval_seconds")
    if interval is not None and interval <= 0:
        raise ValidationError("interval_seconds must be positive", field="interval_seconds")
    try:
        cols = read_columns(path, mapping)
    except UnicodeDecodeError as exc:
        raise ValidationError(
            f"{path.name} is not {mapping.encoding} text (byte {exc.start}); is it a CSV file?", field="file"
        ) from None
    except csv.Error as exc:
        raise ValidationError(f"{path.name} is not a readable CSV file: {exc}", field="file") from None
    rows = _Rows(cols.lines)
    if not all(cols.assets):
        for i, asset_id in enumerate(cols.assets):
            if not asset_id:
                rows.reject(i, mapping.asset_column or "asset_id", "asset id is missing")
    tz_name = mapping.timezone or site_timezone
    column = mapping.timestamp_column
    end_shift_us = 0
    if mapping.hour_column:
        us, wall = _hour_starts(cols, mapping, tz_name, rows)
    else:
        us, wall = _stamps(cols, mapping, rows)
        if mapping.label == "end":
            end_shift_us = interval * _US_PER_S  # type: ignore[operator]
            us -= end_shift_us  # wall-clock labels too: the start is placed in time, not the end
    values = [_values(texts, col, rows) for texts, col in zip(cols.values, mapping.values, strict=True)]
    _localize(us, wall, cols, tz_name, mapping.hour_column or column, rows, end_shift_us)
    _check_plausible(us, mapping.hour_column or column, rows)
    named = {a for a in set(cols.assets) if a}
    known = repo.known_asset_ids(named)
    if named - known:
        for i, asset_id in enumerate(cols.assets):
            if rows.ok[i] and asset_id not in known:
                rows.reject(i, mapping.asset_column or "asset_id", f"unknown asset {asset_id!r}")
    keep = np.flatnonzero(rows.ok)
    report = ImportReport(rows_read=len(cols.lines), replaced=replace_conflicts, errors=sorted(rows.errors, key=lambda e: e.line))
    assets = np.asarray(cols.assets, dtype=object)[keep]
    parts_sid, parts_ts, parts_value, parts_row, parts_col = [], [], [], [], []
    for c, col in enumerate(mapping.values):
        kind_interval = quantity_spec(col.quantity).kind.value == "interval"
        sid_of = {
            a: repo.ensure_series(a, col.quantity, interval_seconds=interval if kind_interval else None).id
            for a in dict.fromkeys(assets.tolist())
        }
        if len(sid_of) == 1:
            parts_sid.append(np.full(len(keep), next(iter(sid_of.values())), dtype=np.int64))
        else:
            parts_sid.append(pd.Series(assets).map(sid_of).to_numpy(np.int64))
        parts_ts.append(us[keep])
        parts_value.append(values[c][keep])
        parts_row.append(keep)
        parts_col.append(np.full(len(keep), c))
    if not parts_sid:
        return report
    sids, ts_us, vals = np.concatenate(parts_sid), np.concatenate(parts_ts), np.concatenate(parts_value)
    row_of, col_of = np.concatenate(parts_row), np.concatenate(parts_col)
    report.readings_parsed = len(sids)
    total = len(sids)
    for offset in range(0, total, CHUNK_ROWS):
        chunk = slice(offset, offset + CHUNK_ROWS)
        outcome = repo.store_arrays(sids[chunk], ts_us[chunk], vals[chunk], replace=replace_conflicts)
        report.readings_stored += outcome.stored
        report.duplicates += outcome.duplicates
        for conflict in outcome.conflicts:
            j = offset + conflict.position
            i = int(row_of[j])
            report.conflicts.append(ImportConflict(
                cols.lines[i], str(cols.assets[i]), mapping.values[int(col_of[j])].quantity,
                from_epoch_us(int(ts_us[j])), conflict.stored_value, conflict.new_value,
            ))
        if progress is not None:
            progress(min(offset + CHUNK_ROWS, total), total)
    return report


def with_asset(mapping: ColumnMapping, asset_id: str) -> ColumnMapping:
    """A copy of ``mapping`` that files every row under ``asset_id``."""
    return replace(mapping, asset_id=asset_id, asset_column=None)
