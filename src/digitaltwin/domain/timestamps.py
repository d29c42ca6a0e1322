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

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from digitaltwin.domain.errors import ValidationError

#: Earliest accepted instant: readings before 2000 are almost always epoch seconds read as ms.
PLAUSIBLE_FLOOR = datetime(2000, 1, 1, tzinfo=UTC)
#: How far in the future a reading's timestamp may lie (clock skew of devices).
FUTURE_TOLERANCE = timedelta(days=1)

_LEAP_SECOND = re.compile(r"T?\d{2}:\d{2}:60")


def zone(name: str, *, field: str = "timezone") -> ZoneInfo:
    """The IANA timezone ``name``.

    Raises:
        ValidationError: naming ``field`` when the zone does not exist.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
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
    try:
        ms = float(value)  # a JSON integer beyond the float range overflows here
        if not math.isfinite(ms):
            raise ValidationError("timestamp is not a finite number", field=field)
        ts = datetime.fromtimestamp(ms / 1000.0, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise ValidationError(f"timestamp {str(value)[:40]} is out of range", field=field) from None
    return check_plausible(ts, field=field)


def parse_instant(value: object, *, field: str = "ts", tz: ZoneInfo | None = None) -> datetime:
    """Parse an RFC 3339 string or epoch milliseconds into a UTC ``datetime``.

    Args:
        value: ``"2024-06-01T12:00:00Z"``, ``"2024-06-01T14:00:00+02:00"``,
            ``1717243200000`` (ms), or a ``datetime``.
        field: the input field name used in errors.
        tz: timezone of offset-less wall-clock strings; without it they are rejected.

    Raises:
        ValidationError: naming ``field`` for a missing offset, a leap second,
            an ambiguous or non-existent local time, or an implausible instant.
    """
    if isinstance(value, bool) or value is None:
        raise ValidationError("timestamp is missing", field=field)
    if isinstance(value, int | float):
        return from_epoch_ms(value, field=field)
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        if _LEAP_SECOND.search(text):
            raise ValidationError(f"leap second in {value!r} cannot be represented", field=field)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValidationError(f"unparseable timestamp {value!r}; use RFC 3339 or epoch milliseconds", field=field) from None
    else:
        raise ValidationError(f"timestamp must be a string or a number, not {type(value).__name__}", field=field)
    if parsed.tzinfo is None:
        if tz is None:
            raise ValidationError(f"timestamp {value!r} has no UTC offset and no timezone was given", field=field)
        parsed = localize(parsed, tz, field=field)
    return check_plausible(parsed.astimezone(UTC), field=field)


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

    Within each run of consecutive ambiguous times, a step backwards in wall-clock
    time marks the switch from the first (summer) to the second (winter)
    occurrence of the repeated hour. A run without such a step cannot be resolved
    from the file and each of its rows is reported. ``None`` entries (rows that
    failed to parse earlier) are passed through. Vectorised with pandas; only
    ambiguous rows are looked at one by one.

    Returns:
        One entry per input: a UTC ``datetime``, an error reason (``str``), or ``None``.
    """
    n = len(naive)
    out: list[datetime | str | None] = [None] * n
    present = [i for i, value in enumerate(naive) if value is not None]
    if not present:
        return out
    index = pd.DatetimeIndex([naive[i] for i in present])
    summer = index.tz_localize(tz, ambiguous=np.ones(len(index), dtype=bool), nonexistent="NaT")
    winter = index.tz_localize(tz, ambiguous=np.zeros(len(index), dtype=bool), nonexistent="NaT")
    gap = np.asarray(summer.isna())
    ambiguous = ~gap & np.asarray(summer != winter)
    first_utc = summer.tz_convert("UTC").to_pydatetime()
    second_utc = winter.tz_convert("UTC").to_pydatetime()

    run: list[int] = []  # positions in `present`

    def close_run() -> None:
        if not run:
            return
        walls = [naive[present[p]] for p in run]
        switch = next((k for k in range(1, len(run)) if walls[k] <= walls[k - 1]), None)  # type: ignore[operator]
        for pos, p in enumerate(run):
            if switch is None:
                out[present[p]] = (
                    f"local time {walls[pos].isoformat()} is ambiguous in {tz.key} "  # type: ignore[union-attr]
                    "and the file order does not resolve it"
                )
            else:
                out[present[p]] = (first_utc[p] if pos < switch else second_utc[p]).replace(tzinfo=UTC)
        run.clear()

    for p, idx in enumerate(present):
        if gap[p]:
            close_run()
            out[idx] = f"local time {naive[idx].isoformat()} does not exist in {tz.key} (DST gap)"  # type: ignore[union-attr]
        elif ambiguous[p]:
            run.append(p)
        else:
            close_run()
            out[idx] = first_utc[p].replace(tzinfo=UTC)
    close_run()
    return out
