"""Checks on a target series before training and predicting: valid data, completeness, flatliners.

Policy for flat series (OpenSTEF's flatliner check, see the field case
``cases/forecasting/flat-series.md``): the last :data:`FLATLINER_WINDOW` (24 h)
of history is a *flatliner* when it holds at least :data:`FLATLINER_MIN_VALID`
non-missing values and they are all equal (within :data:`FLAT_TOLERANCE`). The
forecast is then that flat level (the median of the window) for every step,
with every quantile equal to it, and the response says ``flatliner=true``. The
window is 24 h, not 6 h, because PV and night-idle loads legitimately read 0
for up to half a day (OpenSTEF widened its window from 6 h to 24 h for this).
A window with no valid value at all is not flat but missing: it raises
:class:`InsufficientValidDataError` instead of forecasting ``NaN``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from digitaltwin.forecasting.errors import InsufficientValidDataError
from digitaltwin.forecasting.series import series_name

#: Span of recent history examined by :func:`flat_level`.
FLATLINER_WINDOW = pd.Timedelta(hours=24)
#: Fewest non-missing values in that window for it to count as flat.
FLATLINER_MIN_VALID = 2
#: Absolute tolerance (target unit) within which values count as equal.
FLAT_TOLERANCE = 1e-9
#: Share of the history a model reads that must be non-missing (0.5 = half).
MIN_COMPLETENESS = 0.5


def check_valid_data(y: pd.Series, *, required: int = 1, window: int | None = None) -> int:
    """Check that the last ``window`` samples of ``y`` hold at least ``required`` valid (non-NaN) values.

    Args:
        y: target on its grid (``NaN`` = missing).
        required: non-missing samples needed (>= 1).
        window: samples at the end of ``y`` to look at; ``None`` = all of ``y``.

    Returns:
        The number of valid samples in the window.

    Raises:
        InsufficientValidDataError: fewer than ``required`` valid samples; it names the series,
            the valid count and the window length.
    """
    part = y if window is None else y.iloc[-window:]
    valid = int(part.notna().sum())
    if valid < required:
        raise InsufficientValidDataError(available=valid, required=required, series=series_name(y), window=len(part))
    return valid


def check_completeness(y: pd.Series, *, window: int) -> None:
    """Require :data:`MIN_COMPLETENESS` of the last ``window`` samples to be valid.

    Raises:
        InsufficientValidDataError: too many gaps in the history a model reads.
    """
    required = max(1, math.ceil(MIN_COMPLETENESS * min(window, len(y))))
    check_valid_data(y, required=required, window=window)


def flat_level(y: pd.Series, step: pd.Timedelta) -> float | None:
    """The level of a flatliner at the end of ``y``, or ``None`` when the series is not flat.

    Args:
        y: target on its grid (``NaN`` = missing), at least one valid value expected.
        step: grid step of ``y``.

    Returns:
        The median of the valid values of the last 24 h when they are all equal
        and there are at least :data:`FLATLINER_MIN_VALID` of them; ``None`` otherwise
        (including when ``y`` spans less than 24 h).
    """
    steps = int(FLATLINER_WINDOW / step)
    if len(y) < steps:
        return None
    window = y.to_numpy(dtype=float)[-steps:]
    window = window[~np.isnan(window)]
    if window.size < FLATLINER_MIN_VALID or float(window.max() - window.min()) > FLAT_TOLERANCE:
        return None
    return float(np.median(window))
