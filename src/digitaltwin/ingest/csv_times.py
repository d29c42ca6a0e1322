"""Placing the timestamps of CSV rows in time: instant labels or date and hour-number columns
(see :mod:`digitaltwin.ingest.csv_import` for the rules), in epoch microseconds, whole columns
at once. Used by :mod:`digitaltwin.ingest.csv_import`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

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
_HOUR_NUMBER = r"\d{1,2}"


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


def instant_starts(cols: Columns, mapping: ColumnMapping, rows: RowChecks) -> tuple[np.ndarray, np.ndarray]:
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


def localize_starts(
    us: np.ndarray, wall: np.ndarray, cols: Columns, tz_name: str | None, column: str, rows: RowChecks, gap_shift_us: int
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


def reject_implausible(us: np.ndarray, column: str, rows: RowChecks) -> None:
    now = datetime.now(UTC)
    low, high = to_epoch_us(PLAUSIBLE_FLOOR), to_epoch_us(now + FUTURE_TOLERANCE)
    for i in np.flatnonzero(rows.ok & ((us < low) | (us > high))).tolist():
        try:
            check_plausible(from_epoch_us(int(us[i])), field=column, now=now)
        except ValidationError as exc:
            rows.reject(i, column, exc.message)
