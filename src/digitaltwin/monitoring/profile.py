"""The seasonal profile baseline: robust hour-of-week statistics of the trailing weeks.

For each interval, the values of the same local weekly slot (day of week and time of day at the
series' cadence) in the previous ``weeks`` weeks give a median and a spread of ``1.4826 x MAD``
(the normal-consistent median absolute deviation: Rousseeuw and Croux, JASA 1993), at least
``scale_floor_fraction`` of the median. Only past weeks are used, so the score of an interval
never depends on later data. This is the fallback where no forecaster exists yet or history is
short, and a second opinion beside the model where one does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from digitaltwin.monitoring.settings import ProfileSettings
from digitaltwin.monitoring.tails import z_from_quantiles

#: Multiplier making the MAD a consistent estimator of a normal law's standard deviation.
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Expectation:
    """What a detector expected of each interval, arrays of shape ``(T,)`` in the target unit.

    Attributes:
        median: expected value (NaN where the detector has no expectation).
        low, high: the 15.87 % and 84.13 % quantiles (one standard unit either side).
        floor: smallest spread used to standardise residuals.
    """

    median: np.ndarray
    low: np.ndarray
    high: np.ndarray
    floor: np.ndarray

    def z(self, actual: np.ndarray) -> np.ndarray:
        """Standardised residuals of ``actual`` (see :func:`.tails.z_from_quantiles`)."""
        return z_from_quantiles(actual, self.median, self.low, self.high, self.floor)

    def bounds(self, z: float) -> tuple[np.ndarray, np.ndarray]:
        """The range ``[median - z * down, median + z * up]`` outside which ``|z|`` is exceeded."""
        up = np.fmax(self.high - self.median, self.floor)
        down = np.fmax(self.median - self.low, self.floor)
        return self.median - z * down, self.median + z * up

    @classmethod
    def empty(cls, size: int) -> Expectation:
        nan = np.full(size, np.nan)
        return cls(nan, nan.copy(), nan.copy(), nan.copy())


def weekly_slots(index: pd.DatetimeIndex, timezone: str, step_seconds: int) -> np.ndarray:
    """Local weekly slot of each stamp: ``day_of_week * per_day + seconds_of_day // step``.

    Args:
        index: tz-aware interval starts.
        timezone: IANA zone of the site (slots follow the local calendar, DST included).
        step_seconds: the series' cadence.
    """
    local = index.tz_convert(timezone)
    seconds = local.hour * 3600 + local.minute * 60 + local.second
    per_day = 86_400 // step_seconds
    return np.asarray(local.day_of_week * per_day + seconds // step_seconds, dtype=int)


def profile_expectation(values: np.ndarray, slots: np.ndarray, settings: ProfileSettings) -> Expectation:
    """Trailing robust profile per weekly slot (see the module docstring).

    Args:
        values: readings on a regular grid, shape ``(T,)``; NaN for missing ones (ignored).
        slots: weekly slot of each reading (:func:`weekly_slots`), shape ``(T,)``.
        settings: weeks of history and floors.

    Returns:
        An :class:`Expectation`; NaN where a slot has fewer than ``min_weeks`` past valid values.
    """
    values = np.asarray(values, dtype=float)
    out = Expectation.empty(values.size)
    weeks = settings.weeks
    for slot in np.unique(slots):
        where = np.flatnonzero(slots == slot)
        v = values[where]
        past = sliding_window_view(np.concatenate([np.full(weeks, np.nan), v[:-1]]), weeks)  # row j: the weeks before j
        counts = np.sum(np.isfinite(past), axis=1)
        ok = counts >= settings.min_weeks
        if not ok.any():
            continue
        rows = past[ok]
        median = nanmedian_rows(rows)
        mad = nanmedian_rows(np.abs(rows - median[:, None])) * MAD_TO_SIGMA
        idx = where[ok]
        out.median[idx] = median
        out.low[idx] = median - mad
        out.high[idx] = median + mad
        out.floor[idx] = np.maximum(settings.scale_floor_fraction * np.abs(median), 1e-9)
    return out


def nanmedian_rows(rows: np.ndarray) -> np.ndarray:
    """Median of the non-NaN values of each row, shape ``(n, w) -> (n,)``; every row needs one.

    The result of ``np.nanmedian(rows, axis=1)``, bit for bit: numpy sorts small rows (NaN last)
    and takes ``(low + high) / 2`` of the middle pair (the middle value twice for an odd count),
    which this does without the masked arrays numpy builds for it (ten times slower on the
    eight-week rows of a profile).
    """
    ordered = np.sort(rows, axis=1)
    counts = np.count_nonzero(~np.isnan(rows), axis=1)
    high = counts // 2
    low = np.where(counts % 2 == 1, high, high - 1)
    at = np.arange(rows.shape[0])
    return (ordered[at, low] + ordered[at, high]) / 2.0
