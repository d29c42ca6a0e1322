"""Parsing instants into timezone-aware UTC, and resolving local wall-clock times.

Rules (field cases under ``cases/time`` and ``cases/payload``):

* Inside the product every instant is a UTC ``datetime``.
* A string needs a UTC offset (RFC 3339) unless the caller names the timezone
  the wall-clock time is in; otherwise it is rejected ("no UTC offset").
* A number is epoch **milliseconds**. Values before :data:`PLAUSIBLE_FLOOR`
  (typically epoch *seconds* sent by mistake, which decode to January 1970)
  and later than :data:`FUTURE_TOLERANCE` past now are rejected, never stored.
* Leap seconds (``23:59:60``) cannot be represented and are rejected by name.
* Local times in a DST fall-back hour are ambiguous; a single value is rejected,
  a file is resolved by its order (:func:`localize_sequence`).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import numpy as np
import pandas as pd

from digitaltwin.domain.errors import ValidationError

#: Earliest accepted instant: readings before 2000 are almost always epoch seconds read as ms.
PLAUSIBLE_FLOOR = datetime(2000, 1, 1, tzinfo=UTC)
#: How far in the future a reading's timestamp may lie (clock skew of devices).
FUTURE_TOLERANCE = timedelta(days=1)

_LEAP_SECOND = re.compile(r"T?\d{2}:\d{2}:60")


@functools.cache
def _iana_names() -> frozenset[str]:
    host_specific = {"localtime", "posixrules", "Factory"}
    return frozenset(
        n for n in available_timezones() if n not in host_specific and not n.startswith(("posix/", "right/"))
    )


def zone(name: str, *, field: str = "timezone") -> ZoneInfo:
    """The IANA timezone ``name`` (``Europe/Berlin``, ``UTC``).

    Host-specific names such as ``localtime`` are refused: a site's calendar
    must not change with the machine that serves it.

    Raises:
        ValidationError: naming ``field`` when the zone is not in the IANA database.
    """
    if not isinstance(name, str) or name not in _iana_names():
        raise ValidationError(f"unknown IANA timezone {name!r}; use a name such as Europe/Berlin", field=field)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"unknown IANA timezone {name!r}", field=field) from None


def check_plausible(ts: datetime, *, field: str = "ts", now: datetime | None = None) -> datetime:
    """Return ``ts`` if it lies between :data:`PLAUSIBLE_FLOOR` and now + :data:`FUTURE_TOLERANCE`.

    Raises:
        ValidationError: naming ``field`` otherwise.
    """
    now = now or datetime.now(UTC)
    if ts < PLAUSIBLE_FLOOR:
        raise ValidationError(
            f"implausible timestamp {ts.isoformat()} (before {PLAUSIBLE_FLOOR.date()}); "
            "epoch values must be milliseconds",
            field=field,
        )
    if ts > now + FUTURE_TOLERANCE:
        raise ValidationError(f"implausible timestamp {ts.isoformat()} (in the future)", field=field)
    return ts


def from_epoch_ms(value: float, *, field: str = "ts") -> datetime:
    """Epoch milliseconds to UTC, checked for plausibility."""
    return check_plausible(_from_epoch_ms_unchecked(value, field=field), field=field)


_EPOCH_MS_TEXT = re.compile(r"^[0-9]{12,14}$")  # ASCII digits: int() also reads other scripts' digits


def parse_instant(
    value: object, *, field: str = "ts", tz: ZoneInfo | None = None, plausible: bool = True
) -> datetime:
    """Parse an RFC 3339 string or epoch milliseconds into a UTC ``datetime``.

    Args:
        value: ``"2024-06-01T12:00:00Z"``, ``"2024-06-01T14:00:00+02:00"``,
            ``1717243200000`` (ms, as a number or a string of digits), or a ``datetime``.
        field: the input field name used in errors.
        tz: timezone of offset-less wall-clock strings; without it they are rejected.
        plausible: check the reading window (:func:`check_plausible`); query
            bounds pass False so that "this month" may end in the future.

    Raises:
        ValidationError: naming ``field`` for a missing offset, a leap second,
            an ambiguous or non-existent local time, or an implausible instant.
    """
    if value is None:
        raise ValidationError("timestamp is missing", field=field)
    if isinstance(value, bool):
        raise ValidationError("timestamp must be a string or a number, not a boolean", field=field)
    if isinstance(value, str) and _EPOCH_MS_TEXT.fullmatch(value.strip()):
        value = int(value.strip())
    if isinstance(value, int | float):
        return from_epoch_ms(value, field=field) if plausible else _from_epoch_ms_unchecked(value, field=field)
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        if _LEAP_SECOND.search(text):
            raise ValidationError(f"leap second in {value!r} cannot be represented", field=field)
        if len(text) > 10 and text[10] == "t":
            text = text[:10] + "T" + text[11:]
        if text.endswith("z"):
            text = text[:-1] + "Z"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            hint = "; in a URL, encode '+' as %2B" if re.search(r" \d{2}:\d{2}$", text) else ""
            raise ValidationError(
                f"unparseable timestamp {value!r}; use RFC 3339 or epoch milliseconds{hint}", field=field
            ) from None
    else:
        raise ValidationError(f"timestamp must be a string or a number, not {type(value).__name__}", field=field)
    if parsed.tzinfo is None:
        if tz is None:
            raise ValidationError(f"timestamp {value!r} has no UTC offset and no timezone was given", field=field)
        parsed = localize(parsed, tz, field=field)
    parsed = parsed.astimezone(UTC)
    return check_plausible(parsed, field=field) if plausible else parsed


def _from_epoch_ms_unchecked(value: float, *, field: str) -> datetime:
    try:
        ms = float(value)  # a JSON integer beyond the float range overflows here
        if not math.isfinite(ms):
            raise ValidationError("timestamp is not a finite number", field=field)
        return datetime.fromtimestamp(ms / 1000.0, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise ValidationError(f"timestamp {str(value)[:40]} is out of range", field=field) from None


def _candidates(naive: datetime, tz: ZoneInfo) -> tuple[datetime, datetime, bool]:
    """Both UTC readings of a wall-clock time (fold 0 and 1) and whether it exists."""
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    exists = first.astimezone(tz).replace(tzinfo=None) == naive or second.astimezone(tz).replace(tzinfo=None) == naive
    return first, second, exists


def localize(naive: datetime, tz: ZoneInfo, *, field: str = "ts") -> datetime:
    """Attach ``tz`` to one wall-clock time, refusing ambiguous and skipped times.

    Raises:
        ValidationError: naming ``field`` when the time falls in a DST gap or
            a repeated (fall-back) hour.
    """
    first, second, exists = _candidates(naive, tz)
    if not exists:
        raise ValidationError(f"local time {naive.isoformat()} does not exist in {tz.key} (DST gap)", field=field)
    if first != second:
        raise ValidationError(
            f"local time {naive.isoformat()} is ambiguous in {tz.key} (repeated DST hour); give a UTC offset",
            field=field,
        )
    return first


def localize_sequence(naive: Sequence[datetime | None], tz: ZoneInfo) -> list[datetime | str | None]:
    """Attach ``tz`` to wall-clock times in file order, resolving the fall-back hour by order.

    The list form of :func:`localize_walls` (see there for the rules).

    Returns:
        One entry per input: a UTC ``datetime``, an error reason (``str``), or ``None`` for ``None``.
    """
    out: list[datetime | str | None] = [None] * len(naive)
    present = [i for i, value in enumerate(naive) if value is not None]
    if not present:
        return out
    walls = np.array([naive[i] for i in present], dtype="datetime64[us]")
    utc_us, errors = localize_walls(walls, tz)
    for p, idx in enumerate(present):
        reason = errors.get(p)
        out[idx] = reason if reason is not None else _EPOCH + timedelta(microseconds=int(utc_us[p]))
    return out


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def localize_walls(walls: np.ndarray, tz: ZoneInfo) -> tuple[np.ndarray, dict[int, str]]:
    """Wall-clock times (``datetime64[us]``, in file order) of zone ``tz`` as UTC epoch microseconds.

    The fall-back hour is resolved by order: a wall-clock time of the repeated hour that
    appears twice in the sequence is the summer instant at its first appearance and the
    winter one at its second, wherever they stand (time order, sorted by wall-clock time,
    or unordered rows). A time that appears once takes its side from a step backwards in
    wall-clock time within its run of consecutive ambiguous times (the switch from summer
    to winter); without one it cannot be resolved and is reported, as is a time that appears
    more than twice. Times in a DST gap are reported. Vectorised with pandas; only
    ambiguous times are looked at one by one.

    Returns:
        (int64 UTC epoch microseconds, undefined where reported; ``{position: reason}``).
    """
    errors: dict[int, str] = {}
    index = pd.DatetimeIndex(walls.astype("datetime64[ns]"))
    plain = index.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    if not plain.isna().any():  # no time of a DST change: one pass
        return plain.asi8 // 1000, errors
    summer = index.tz_localize(tz, ambiguous=np.ones(len(index), dtype=bool), nonexistent="NaT")
    winter = index.tz_localize(tz, ambiguous=np.zeros(len(index), dtype=bool), nonexistent="NaT")
    gap = np.asarray(summer.isna())
    summer_us = summer.asi8 // 1000
    winter_us = winter.asi8 // 1000
    out = summer_us.copy()
    for p in np.flatnonzero(gap).tolist():
        errors[p] = f"local time {_iso(walls[p])} does not exist in {tz.key} (DST gap)"
    ambiguous = np.flatnonzero(~gap & (summer_us != winter_us)).tolist()
    if not ambiguous:
        return out, errors
    counts: dict[object, int] = {}
    for p in ambiguous:
        counts[walls[p]] = counts.get(walls[p], 0) + 1
    seen: dict[object, int] = {}
    singles: list[list[int]] = []  # runs of consecutive ambiguous positions, for times seen once
    previous = -2
    for p in ambiguous:
        wall = walls[p]
        seen[wall] = seen.get(wall, 0) + 1
        if counts[wall] > 2:
            errors[p] = f"local time {_iso(wall)} appears {counts[wall]} times; the repeated hour has only two"
        elif counts[wall] == 2:
            # Both occurrences present: the first is the summer one, whatever the file's sort order.
            out[p] = summer_us[p] if seen[wall] == 1 else winter_us[p]
        if p != previous + 1 or not singles:
            singles.append([])
        singles[-1].append(p)
        previous = p
    for run in singles:
        switch = next((k for k in range(1, len(run)) if walls[run[k]] < walls[run[k - 1]]), None)
        for k, p in enumerate(run):
            if counts[walls[p]] != 1:
                continue
            if switch is not None:
                out[p] = summer_us[p] if k < switch else winter_us[p]
            else:
                errors[p] = f"local time {_iso(walls[p])} is ambiguous in {tz.key} and the file order does not resolve it"
    return out, errors


def _iso(wall: np.datetime64) -> str:
    return pd.Timestamp(wall).to_pydatetime().isoformat()
