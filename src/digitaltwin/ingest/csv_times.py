"""Placing the timestamps of CSV rows in time: instant labels or date and hour-number columns
(see :mod:`digitaltwin.ingest.csv_import` for the rules), in epoch microseconds, whole columns
at once. Used by :mod:`digitaltwin.ingest.csv_import`.

A label may end its day as ``24:00`` (ISO 8601's end of day, ``2025-10-26 24:00`` is
``2025-10-27 00:00``), the usual last label of hour-ending files.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from digitaltwin.domain.errors import ValidationError
from digitaltwin.domain.timestamps import FUTURE_TOLERANCE, PLAUSIBLE_FLOOR, check_plausible, localize_walls, parse_instant, zone
from digitaltwin.ingest.csv_columns import Columns, RowChecks
from digitaltwin.storage.tables import from_epoch_us, to_epoch_us

if TYPE_CHECKING:
    from digitaltwin.ingest.csv_import import ColumnMapping

_US_PER_S = 1_000_000
_US_PER_HOUR = 3600 * _US_PER_S
_US_PER_DAY = 24 * _US_PER_HOUR
_EPOCH_NAIVE = datetime(1970, 1, 1)  # wall-clock microseconds count from here
_HOUR_NUMBER = r"[0-9]{1,2}"  # ASCII digits only (a regex \d also matches other scripts' digits)
#: ISO 8601's end of day, ``24:00`` (``24:00:00``, ``24:00:00.000``), not part of a longer number.
_END_OF_DAY = re.compile(r"(?<![0-9:])24:00(?::00(?:\.0+)?)?(?![0-9:])")


def _end_of_day(text: str) -> tuple[str, bool]:
    """``text`` with an end-of-day time ``24:00`` written as ``00:00`` of the same date, and whether
    it was (the caller then adds the day). Python's parsers refuse hour 24."""
    found = _END_OF_DAY.search(text)
    if found is None or _END_OF_DAY.search(text, found.end()) is not None:
        return text, False
    return text[: found.start()] + "00" + text[found.start() + 2 :], True


def _parse_ts(text: str, mapping: ColumnMapping) -> datetime:
    midnight, end_of_day = _end_of_day(text)
    if end_of_day:
        try:
            # The date's midnight, wall-clock or with a fixed offset: the next midnight is 24 hours later.
            return _parse_one(midnight, mapping, midnight_ends_day=False) + timedelta(days=1)
        except ValidationError:
            pass  # reported as written, below
    return _parse_one(text, mapping, midnight_ends_day=mapping.midnight_ends_day)


def _parse_one(text: str, mapping: ColumnMapping, *, midnight_ends_day: bool) -> datetime:
    column = mapping.timestamp_column
    if mapping.timestamp_format is None:
        return parse_instant(text, field=column, tz=None) if _has_offset(text) else _naive_iso(text, column)
    try:
        parsed = datetime.strptime(text.strip(), mapping.timestamp_format)
    except ValueError:
        raise ValidationError(f"timestamp {text!r} does not match {mapping.timestamp_format!r}", field=column) from None
    if midnight_ends_day and parsed.hour == 0 and parsed.minute == 0:
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


def _fixed_width_format(fmt: str) -> tuple[dict[str, int], list[tuple[int, str]], int] | None:
    """A numeric ``strptime`` format as fixed-width fields: (position of each field, literal
    characters and their positions, width of a text); None when the format is not one."""
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
    return (slots, literal, pos) if {"%Y", "%m", "%d"} <= slots.keys() else None


def _fixed_width_bytes(texts: list[str | None], width: int) -> np.ndarray | None:
    """The texts as a (texts, width + 1) uint8 matrix (a line feed closing each row) when every
    one is ``width`` ASCII characters, else None."""
    n = len(texts)
    if not n:
        return None
    # One buffer of the texts separated by line feeds: each text is ``width`` ASCII characters when
    # the buffer has exactly that length and its n - 1 line feeds all stand where a text ends.
    try:
        joined = "\n".join(texts).encode("ascii")  # type: ignore[arg-type]
    except (TypeError, UnicodeEncodeError):
        return None
    if len(joined) != (width + 1) * n - 1 or joined.count(b"\n") != n - 1:
        return None
    codes = np.frombuffer(joined + b"\n", dtype=np.uint8).reshape(n, width + 1)
    return codes if (codes[:, width] == ord("\n")).all() else None


def fixed_width_applies(texts: list[str | None], fmt: str) -> bool:
    """Whether :func:`instant_labels` reads ``texts`` of format ``fmt`` with the fixed-width reader,
    whose outcome for each text depends on that text only (else pandas' parser reads them all)."""
    layout = _fixed_width_format(fmt)
    return layout is not None and _fixed_width_bytes(texts, layout[2]) is not None


def _fixed_width_strptime(texts: list[str], fmt: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Parse same-length, zero-padded texts of a numeric ``strptime`` format (``%d/%m/%Y %H:%M``)
    with numpy: (int64 wall-clock microseconds, bool ok). None when the format or the texts do
    not fit (then pandas parses them). A text whose digits name no date or time is not ok."""
    layout = _fixed_width_format(fmt)
    if layout is None:
        return None
    slots, literal, pos = layout
    codes = _fixed_width_bytes(texts, pos)  # type: ignore[arg-type]
    if codes is None:
        return None
    n = len(texts)
    ok = np.ones(n, dtype=bool)
    for at, char in literal:
        ok &= codes[:, at] == ord(char)

    def number(code: str, default: int = 0) -> np.ndarray:
        if code not in slots:
            return np.full(n, default, dtype=np.int64)
        value = np.zeros(n, dtype=np.int64)
        for at in range(slots[code], slots[code] + _FIELD_WIDTH[code]):  # one byte column per digit
            digit = codes[:, at] - np.uint8(ord("0"))  # uint8: bytes below "0" wrap around past 9
            ok[:] &= digit <= 9
            value = value * 10 + digit
        return value

    year, month, day = number("%Y"), number("%m"), number("%d")
    hour, minute, second = number("%H"), number("%M"), number("%S")
    ok &= (month >= 1) & (month <= 12) & (day >= 1) & (hour <= 23) & (minute <= 59) & (second <= 59) & (year >= 1)
    months = np.where(ok, (year - 1970) * 12 + month - 1, 0).astype("datetime64[M]")
    days_in_month = ((months + 1).astype("datetime64[D]") - months.astype("datetime64[D]")).astype(np.int64)
    ok &= day <= days_in_month
    start = months.astype("datetime64[D]").astype(np.int64) + day - 1
    us = ((start * 24 + hour) * 60 + minute) * 60 + second
    return np.where(ok, us * _US_PER_S, 0), ok


def instant_labels(cols: Columns, mapping: ColumnMapping, rows: RowChecks) -> tuple[np.ndarray, np.ndarray]:
    """Instant labels (interval starts or ends, as the mapping's ``label``): (int64 microseconds,
    bool "is a naive wall-clock time"); UTC epoch for labels with an offset, wall-clock
    microseconds counted the same way for the others. Rows that cannot be read are rejected
    naming the timestamp column."""
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


def hour_starts(cols: Columns, mapping: ColumnMapping, tz_name: str | None, rows: RowChecks) -> tuple[np.ndarray, np.ndarray]:
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


def _asset_groups(todo: np.ndarray, cols: Columns) -> list[np.ndarray]:
    """Positions of ``todo`` (row indices) per asset, each in file order. File order resolves the
    repeated hour per asset: in a file that interleaves meters, one meter's rows are not a step
    back in another meter's time."""
    if cols.one_asset:
        return [todo]
    assets = np.asarray(cols.assets, dtype=object)[todo]
    groups = pd.Series(np.arange(len(todo))).groupby(assets, sort=False).indices
    return [todo[positions] for positions in groups.values()]


def _reject_naive(todo: np.ndarray, column: str, rows: RowChecks) -> None:
    for i in todo.tolist():
        rows.reject(i, column, "timestamp has no UTC offset and no timezone is configured")


def _start_reading(starts: np.ndarray, tz: ZoneInfo, gap_shift_us: int) -> tuple[np.ndarray, dict[int, str]]:
    """Wall-clock interval starts of one asset (int64 wall microseconds, file order) placed in time:
    (UTC epoch microseconds, ``{position: reason}``), the repeated hour resolved by
    :func:`~digitaltwin.domain.timestamps.localize_walls`. ``gap_shift_us``: for starts computed
    from interval-end labels, the interval; a start in a DST gap is then placed as its end
    label minus the interval (0: such a start is reported)."""
    resolved, errors = localize_walls(starts.astype("datetime64[us]"), tz)
    if gap_shift_us:
        for p in [p for p, reason in errors.items() if "DST gap" in reason]:
            end, end_errors = localize_walls(np.array([starts[p] + gap_shift_us], dtype="datetime64[us]"), tz)
            if not end_errors:
                resolved[p] = end[0] - gap_shift_us
                del errors[p]
    return resolved, errors


def _end_reading(ends: np.ndarray, tz: ZoneInfo, interval_us: int) -> tuple[np.ndarray, dict[int, str]]:
    """Wall-clock interval-end labels of one asset (int64 wall microseconds, file order) as UTC
    interval starts: each end placed in time (the repeated hour resolved by file order, as
    :func:`~digitaltwin.domain.timestamps.localize_walls`), then the interval subtracted in
    elapsed time. A label at the first wall-clock time of a DST gap (02:00 in Berlin on the
    spring-forward day, which the clock reaches and skips to 03:00) is the instant of the
    change; any later time in the gap is reported."""
    resolved, errors = localize_walls(ends.astype("datetime64[us]"), tz)
    for p in [p for p, reason in errors.items() if "DST gap" in reason]:
        naive = _EPOCH_NAIVE + timedelta(microseconds=int(ends[p]))
        # In a gap, fold=0 reads the wall time with the offset in force before the change
        # (PEP 495); the label is the gap's start when the clock read the microsecond before it.
        instant = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
        before = (instant - timedelta(microseconds=1)).astimezone(tz).replace(tzinfo=None)
        if before == naive - timedelta(microseconds=1):
            resolved[p] = to_epoch_us(instant)
            del errors[p]
    return resolved - interval_us, errors


def _faults(starts: np.ndarray, errors: dict[int, str]) -> int:
    """Rows of a reading that are unplaced (``errors``) or share their instant with an earlier row."""
    placed = np.delete(starts, list(errors)) if errors else starts
    if len(placed) < 2 or bool((np.diff(placed) > 0).all()):
        return len(errors)
    return len(errors) + len(placed) - len(np.unique(placed))


def _walls_to_place(wall: np.ndarray, rows: RowChecks, tz_name: str | None, column: str) -> tuple[np.ndarray, ZoneInfo] | None:
    """Positions of the rows still accepted whose timestamps are wall-clock times, and the zone to
    place them in; None when there are none, or when there is no zone (then they are rejected
    naming ``column``)."""
    todo = np.flatnonzero(wall & rows.ok)
    if len(todo) == 0:
        return None
    if tz_name is None:
        _reject_naive(todo, column, rows)
        return None
    return todo, zone(tz_name)


def localize_starts(us: np.ndarray, wall: np.ndarray, cols: Columns, tz_name: str | None, column: str, rows: RowChecks) -> None:
    """Turn the wall-clock entries of ``us`` (interval starts) into UTC epoch microseconds in place,
    per asset in file order; a start in a DST gap, or in the repeated hour when file order does
    not resolve it, is rejected naming ``column``. Without a timezone every wall-clock entry is
    rejected."""
    placing = _walls_to_place(wall, rows, tz_name, column)
    if placing is None:
        return
    todo, tz = placing
    for idx in _asset_groups(todo, cols):
        resolved, errors = _start_reading(us[idx], tz, 0)
        for p, reason in errors.items():
            rows.reject(int(idx[p]), column, reason)
        us[idx] = resolved


def localize_ends(
    us: np.ndarray, wall: np.ndarray, cols: Columns, tz_name: str | None, column: str, rows: RowChecks, interval_us: int
) -> None:
    """Turn interval-end labels (``us``: UTC epoch microseconds, or wall-clock ones where ``wall``)
    into UTC epoch microseconds of interval starts, in place.

    Labels with a UTC offset, and wall-clock labels of intervals shorter than a day, are placed
    in time first and the interval is subtracted in elapsed time, so that the hour ending 03:00
    on a fall-back day starts at the repeated 02:00, whichever of the two it is. Wall-clock
    labels are placed per asset in file order: the first of two equal labels is the summer
    instant (:func:`~digitaltwin.domain.timestamps.localize_walls`). Some utility files label
    an interval with its start's wall-clock time plus the interval instead (New York's hour
    01:00-02:00 is "hour ending 02:00" in both EDT and EST, a label that names one instant
    only); for an asset whose labels read as ends leave rows unplaced or two rows on one
    instant, the labels are read that way (start = label minus the interval on the wall
    clock) when that leaves fewer such rows. Whole-day intervals are local days: their start is
    the label minus the days on the wall clock.

    Raises nothing: rows that cannot be placed are rejected naming ``column``.
    """
    us[~wall] -= interval_us
    placing = _walls_to_place(wall, rows, tz_name, column)
    if placing is None:
        return
    todo, tz = placing
    whole_days = interval_us % _US_PER_DAY == 0
    for idx in _asset_groups(todo, cols):
        labels = us[idx]
        if whole_days:
            starts, errors = _start_reading(labels - interval_us, tz, interval_us)
        else:
            starts, errors = _end_reading(labels, tz, interval_us)
            faults = _faults(starts, errors)
            if faults:
                other, other_errors = _start_reading(labels - interval_us, tz, interval_us)
                if _faults(other, other_errors) < faults:
                    starts, errors = other, other_errors
        for p, reason in errors.items():
            rows.reject(int(idx[p]), column, reason)
        us[idx] = starts


def reject_implausible(us: np.ndarray, column: str, rows: RowChecks) -> None:
    now = datetime.now(UTC)
    low, high = to_epoch_us(PLAUSIBLE_FLOOR), to_epoch_us(now + FUTURE_TOLERANCE)
    for i in np.flatnonzero(rows.ok & ((us < low) | (us > high))).tolist():
        try:
            check_plausible(from_epoch_us(int(us[i])), field=column, now=now)
        except ValidationError as exc:
            rows.reject(i, column, exc.message)
