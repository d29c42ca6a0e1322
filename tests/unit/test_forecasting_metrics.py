"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from digitaltwin.forecasting.metrics import cv_rmse, mae, nmbe, rmse

ACTUAL = np.array([10.0, 20.0, 30.0, np.nan, 7.0])
PREDICTED = np.array([12.0, 18.0, 33.0, 5.0, np.nan])
# scored pairs: (10, 12), (20, 18), (30, 33); actual - predicted = -2, 2, -3; mean(actual) = 20


def test_mae() -> None:
    assert mae(ACTUAL, PREDICTED) == pytest.approx(7 / 3)


def test_rmse() -> None:
    assert rmse(ACTUAL, PREDICTED) == pytest.approx(math.sqrt(17 / 3))


def test_cv_rmse_is_rmse_over_mean_actual() -> None:
    assert cv_rmse(ACTUAL, PREDICTED) == pytest.approx(math.sqrt(17 / 3) / 20)


def test_nmbe_uses_ashrae_sign_positive_means_under_prediction() -> None:
    assert nmbe(ACTUAL, PREDICTED) == pytest.approx(-3 / (3 * 20))
    assert nmbe([10.0, 10.0], [8.0, 8.0]) == pytest.approx(0.2)


def test_relative_metrics_are_nan_when_mean_actual_is_zero() -> None:
    assert math.isnan(cv_rmse([0.0, 0.0], [1.0, -1.0]))
    assert math.isnan(nmbe([-1.0, 1.0], [0.0, 0.0]))
    assert mae([0.0, 0.0], [1.0, -1.0]) == 1.0


def test_no_pairs_gives_nan() -> None:
    for metric in (mae, rmse, cv_rmse, nmbe):
        assert math.isnan(metric([np.nan], [1.0]))


def test_length_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="length"):
        mae([1.0, 2.0], [1.0])
