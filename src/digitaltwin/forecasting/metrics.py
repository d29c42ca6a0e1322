"""Forecast accuracy metrics.

All functions take equal-length arrays of actual and predicted values (same
unit, e.g. kWh per interval), drop the pairs where either value is ``NaN`` and
return ``NaN`` when no pair is left. Relative metrics follow ASHRAE Guideline 14
(2014), "Measurement of Energy, Demand, and Water Savings", with ``p = 0``
model parameters as fits a forecast, and are returned as fractions
(0.12 = 12 %); they are ``NaN`` when the mean of the actual values is 0.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def _pairs(actual: ArrayLike, predicted: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(actual, dtype=float).ravel()
    p = np.asarray(predicted, dtype=float).ravel()
    if a.shape != p.shape:
        raise ValueError(f"actual and predicted differ in length: {a.size} vs {p.size}")
    keep = ~(np.isnan(a) | np.isnan(p))
    return a[keep], p[keep]


def mae(actual: ArrayLike, predicted: ArrayLike) -> float:
    """Mean absolute error, in the unit of the inputs.

    Raises:
        ValueError: the arrays differ in length.
    """
    a, p = _pairs(actual, predicted)
    return float(np.mean(np.abs(a - p))) if a.size else float("nan")


def rmse(actual: ArrayLike, predicted: ArrayLike) -> float:
    """Root mean squared error, in the unit of the inputs.

    Raises:
        ValueError: the arrays differ in length.
    """
    a, p = _pairs(actual, predicted)
    return float(np.sqrt(np.mean((a - p) ** 2))) if a.size else float("nan")


def cv_rmse(actual: ArrayLike, predicted: ArrayLike) -> float:
    """Coefficient of variation of the RMSE (ASHRAE Guideline 14): ``RMSE / mean(actual)``.

    Returns:
        A fraction; ``NaN`` when ``mean(actual) == 0`` or no pair is left.

    Raises:
        ValueError: the arrays differ in length.
    """
    a, p = _pairs(actual, predicted)
    if a.size == 0 or np.mean(a) == 0:
        return float("nan")
    return float(np.sqrt(np.mean((a - p) ** 2)) / np.mean(a))


def nmbe(actual: ArrayLike, predicted: ArrayLike) -> float:
    """Normalised mean bias error (ASHRAE Guideline 14 sign convention).

    ``NMBE = sum(actual - predicted) / ((n - p) * mean(actual))`` with ``p = 0``.
    Positive values mean the forecast is too LOW (under-prediction).

    Returns:
        A fraction; ``NaN`` when ``mean(actual) == 0`` or no pair is left.

    Raises:
        ValueError: the arrays differ in length.
    """
    a, p = _pairs(actual, predicted)
    if a.size == 0 or np.mean(a) == 0:
        return float("nan")
    return float(np.sum(a - p) / (a.size * np.mean(a)))
