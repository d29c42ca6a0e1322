"""The target-series contract: a tz-aware UTC index of interval starts on a regular grid.

A target series ``y`` is a ``pandas.Series`` of floats (energy per interval in
kWh, or mean power in kW) whose ``DatetimeIndex`` holds the UTC *start* of each
interval. ``NaN`` marks a gap. The helpers here check that contract, infer the
grid step and put a series onto its full grid.
"""

from __future__ import annotations

import zoneinfo

import numpy as np
import pandas as pd

SECONDS_PER_DAY = 86_400


def series_name(y: pd.Series) -> str:
    """Name of ``y`` for messages: ``y.name`` as text, ``"y"`` when unnamed."""
    return "y" if y.name is None else str(y.name)


def check_timezone(timezone: str) -> str:
    """Return ``timezone`` after checking that it is a known IANA zone.

    Raises:
        ValueError: unknown zone name.
    """
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValueError(f"unknown IANA timezone {timezone!r}") from exc
    return timezone


def as_utc_series(y: pd.Series) -> pd.Series:
    """Check the index of ``y`` and return a float64 copy indexed in UTC.

    Args:
        y: series with a tz-aware ``DatetimeIndex`` (any zone; converted to UTC).

    Returns:
        The same values as float64, index converted to UTC.

    Raises:
        TypeError: the index is not a ``DatetimeIndex``.
        ValueError: naive timestamps, or an index that is not strictly increasing.
    """
    if not isinstance(y.index, pd.DatetimeIndex):
        raise TypeError(f"series {series_name(y)!r} needs a DatetimeIndex, got {type(y.index).__name__}")
    if y.index.tz is None:
        raise ValueError(f"series {series_name(y)!r} has naive timestamps; they must be tz-aware (UTC)")
    if not y.index.is_monotonic_increasing or not y.index.is_unique:
        raise ValueError(f"series {series_name(y)!r}: timestamps must be strictly increasing")
    out = pd.Series(np.asarray(y.to_numpy(dtype=float, na_value=np.nan), dtype=float), index=y.index.tz_convert("UTC"))
    out.name = y.name
    return out


def infer_step(index: pd.Index) -> pd.Timedelta:
    """Infer the grid step of an index as the median difference of consecutive stamps.

    Args:
        index: strictly increasing timestamps, at least two.

    Returns:
        The step, a whole number of seconds that divides one day (e.g. 15 min, 1 h).

    Raises:
        TypeError: not a ``DatetimeIndex``.
        ValueError: fewer than two timestamps, or a step that does not divide a day.
    """
    if not isinstance(index, pd.DatetimeIndex):
        raise TypeError(f"expected a DatetimeIndex, got {type(index).__name__}")
    if len(index) < 2:
        raise ValueError("cannot infer the step of a series with fewer than two timestamps")
    step = pd.Timedelta(pd.Series(index[1:] - index[:-1]).median())
    seconds = step.total_seconds()
    if seconds <= 0 or seconds != int(seconds) or SECONDS_PER_DAY % int(seconds) != 0:
        raise ValueError(f"step {step} does not divide one day; resample the series first")
    return pd.Timedelta(seconds=int(seconds))


def to_grid(y: pd.Series, step: pd.Timedelta) -> pd.Series:
    """Put a UTC series onto its full regular grid, with ``NaN`` in missing slots.

    Args:
        y: output of :func:`as_utc_series`.
        step: grid step.

    Returns:
        ``y`` reindexed from its first to its last stamp every ``step``.

    Raises:
        ValueError: a timestamp off the grid (not a whole number of steps from the first),
            or no two consecutive stamps one ``step`` apart (data at another resolution).
    """
    if len(y) == 0:
        return y
    unit = pd.Timedelta(1, unit=y.index.unit)
    unit_step, rest = divmod(pd.Timedelta(step).value, unit.value)
    if rest == 0 and unit_step > 0:  # the same checks in integers of the index's unit: no Timedelta arithmetic per call
        stamps = y.index.asi8
        if ((stamps - stamps[0]) % unit_step).any():
            raise ValueError(f"series {series_name(y)!r} has timestamps off its {step} grid")
        if len(y) >= 2 and (smallest := int(np.diff(stamps).min())) != unit_step:
            raise ValueError(f"series {series_name(y)!r} has step {smallest * unit}, expected {step}")
    else:
        offsets = y.index - y.index[0]
        if (offsets % step != pd.Timedelta(0)).any():
            raise ValueError(f"series {series_name(y)!r} has timestamps off its {step} grid")
        if len(y) >= 2:
            smallest = (y.index[1:] - y.index[:-1]).min()
            if smallest != step:
                raise ValueError(f"series {series_name(y)!r} has step {smallest}, expected {step}")
    grid = pd.date_range(y.index[0], y.index[-1], freq=step)
    out = y.reindex(grid)
    out.name = y.name
    return out


def future_index(last: pd.Timestamp, steps: int, step: pd.Timedelta) -> pd.DatetimeIndex:
    """The ``steps`` interval starts following ``last`` (UTC)."""
    return pd.date_range(last + step, periods=steps, freq=step)


def samples_per_day(step: pd.Timedelta) -> int:
    """Number of grid steps in 24 hours."""
    return SECONDS_PER_DAY // int(step.total_seconds())
