"""Surprise scores: a deviation in robust standard units turned into a tail probability.

Every scoring detector reports ``surprise = -log10(p)`` where ``p`` is the two-sided tail
probability of its standardised residual ``z`` under a normal law: ``p = 2 * Phi(-|z|)``,
computed in log space (``scipy.special.log_ndtr``) so extreme deviations keep distinct, ordered
scores instead of all rounding to ``p = 0``. A surprise of 3 is a 1-in-1,000 deviation. Because
every detector scores on this one scale, their scores combine by minimum (agreement) or maximum
(either one), see :mod:`.detector`.

The normal law is a convention for the tails, not a claim that residuals are normal: the spreads
that standardise ``z`` are robust (MAD, or the forecaster's calibrated conformal quantiles), so
inside the calibrated range the level matches the empirical quantile.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import log_ndtr

#: ``1 / ln(10)``: natural to decimal logarithm.
_LOG10_E = 1.0 / math.log(10.0)


def surprise(z: np.ndarray) -> np.ndarray:
    """``-log10`` of the two-sided normal tail probability of ``z``; NaN stays NaN.

    Args:
        z: standardised residuals, any shape.

    Returns:
        Non-negative floats, same shape: 0 at ``z = 0``, 3.0 near ``|z| = 3.29``, 15.3 at ``|z| = 8``.
    """
    z = np.asarray(z, dtype=float)
    with np.errstate(invalid="ignore"):
        log_p = math.log(2.0) + log_ndtr(-np.abs(z))
    return np.maximum(-log_p * _LOG10_E, 0.0)


def z_from_quantiles(actual: np.ndarray, median: np.ndarray, low: np.ndarray, high: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """Standardised residual against an asymmetric expected distribution.

    Above the median the residual is divided by ``high - median``, below it by ``median - low``,
    where ``low``/``high`` are the 15.87 % and 84.13 % quantiles (one standard unit each side);
    each spread is at least ``floor`` (NaN: no floor). All arrays share one shape; NaN anywhere gives NaN.
    """
    actual, median = np.asarray(actual, dtype=float), np.asarray(median, dtype=float)
    up = np.fmax(np.asarray(high, dtype=float) - median, floor)  # fmax: a NaN floor means no floor
    down = np.fmax(median - np.asarray(low, dtype=float), floor)
    residual = actual - median
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(residual >= 0, residual / up, residual / down)
