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
import pandas as pd
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


def mape(actual: ArrayLike, predicted: ArrayLike) -> float:
    """Mean absolute percentage error, ``mean(|a - p| / |a|)``, as a fraction.

    Defined only when no actual value is 0: ``NaN`` otherwise (and with no pair left).

    Raises:
        ValueError: the arrays differ in length.
    """
    a, p = _pairs(actual, predicted)
    if a.size == 0 or (a == 0).any():
        return float("nan")
    return float(np.mean(np.abs(a - p) / np.abs(a)))


def mase(actual: ArrayLike, predicted: ArrayLike, *, scale: float) -> float:
    """Mean absolute scaled error (Hyndman and Koehler, "Another look at measures of forecast accuracy", 2006).

    Args:
        scale: MAE of the in-sample seasonal naive forecast on the training data
            (see :func:`seasonal_scale`), in the unit of the inputs.

    Returns:
        ``MAE / scale``; below 1 beats the in-sample seasonal naive. ``NaN`` when ``scale`` is 0 or NaN.

    Raises:
        ValueError: the arrays differ in length.
    """
    if not np.isfinite(scale) or scale <= 0:
        return float("nan")
    return mae(actual, predicted) / scale


def seasonal_scale(y: ArrayLike, *, season: int) -> float:
    """Mean of ``|y[t] - y[t - season]|`` over the pairs without ``NaN``: the denominator of :func:`mase`."""
    values = np.asarray(y, dtype=float).ravel()
    if values.size <= season:
        return float("nan")
    diff = np.abs(values[season:] - values[:-season])
    diff = diff[~np.isnan(diff)]
    return float(diff.mean()) if diff.size else float("nan")


def pinball(actual: ArrayLike, quantiles: ArrayLike, levels: list[float]) -> float:
    """Pinball (quantile) loss averaged over levels and points (Koenker and Bassett, 1978).

    Args:
        actual: shape ``(n,)``.
        quantiles: shape ``(n, len(levels))``; column ``j`` is the forecast of level ``levels[j]``.
        levels: quantile levels in (0, 1).

    Returns:
        ``mean over j, i of max(q_j (a_i - f_ij), (q_j - 1)(a_i - f_ij))`` in the unit of the inputs;
        ``NaN`` without levels or complete rows.
    """
    a = np.asarray(actual, dtype=float).ravel()
    f = np.asarray(quantiles, dtype=float).reshape(a.size, len(levels)) if levels else np.empty((a.size, 0))
    keep = ~np.isnan(a) & ~np.isnan(f).any(axis=1)
    if not levels or not keep.any():
        return float("nan")
    diff = a[keep, None] - f[keep]
    q = np.asarray(levels, dtype=float)[None, :]
    return float(np.mean(np.maximum(q * diff, (q - 1) * diff)))


def coverage(actual: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> float:
    """Share of actual values inside ``[lower, upper]`` (a fraction; 0.8 is ideal for a 10-90 % interval)."""
    a = np.asarray(actual, dtype=float).ravel()
    lo = np.asarray(lower, dtype=float).ravel()
    hi = np.asarray(upper, dtype=float).ravel()
    keep = ~(np.isnan(a) | np.isnan(lo) | np.isnan(hi))
    if not keep.any():
        return float("nan")
    return float(np.mean((a[keep] >= lo[keep]) & (a[keep] <= hi[keep])))


def peak_error(actual: ArrayLike, predicted: ArrayLike, groups: ArrayLike) -> float:
    """Mean over groups (forecast origins) of ``|max(actual) - max(predicted)|``: the error on each day's peak.

    Args:
        groups: one label per point (e.g. the origin); pairs with ``NaN`` are dropped first.

    Returns:
        In the unit of the inputs; ``NaN`` with no complete pair.
    """
    a = np.asarray(actual, dtype=float).ravel()
    p = np.asarray(predicted, dtype=float).ravel()
    g = np.asarray(groups).ravel()
    keep = ~(np.isnan(a) | np.isnan(p))
    if not keep.any():
        return float("nan")
    frame = pd.DataFrame({"a": a[keep], "p": p[keep], "g": g[keep]}).groupby("g").max()
    return float(np.mean(np.abs(frame["a"] - frame["p"])))
