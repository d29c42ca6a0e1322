"""Split-conformal calibration: mean-centred residual quantiles, finite-sample levels, spreads by 3-hour block."""

from __future__ import annotations

import numpy as np
import pytest

from digitaltwin.forecasting.calibration import (
    HOUR_BLOCK,
    Calibration,
    conformal_levels,
)


def noisy_hours(days: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point 100 every hour; the actual is 5x noisier from 09:00 to 14:59 (two 3-hour blocks) than at other hours."""
    rng = np.random.default_rng(seed)
    hours = np.tile(np.arange(24), days)
    spread = np.where((hours >= 9) & (hours < 15), 10.0, 2.0)
    predicted = np.full(hours.size, 100.0)
    return predicted, predicted + rng.normal(0, 1, hours.size) * spread, hours


def covered(calibration: Calibration, predicted: np.ndarray, actual: np.ndarray, hours: np.ndarray | None) -> np.ndarray:
    table = calibration.quantiles(predicted, [0.1, 0.9], hours=hours)
    return (actual >= table[:, 0]) & (actual <= table[:, 1])


def test_hour_scales_give_each_block_of_hours_its_own_width() -> None:
    predicted, actual, hours = noisy_hours(56, seed=0)
    scaled = Calibration.from_residuals(predicted, actual, hours)
    assert scaled is not None and len(scaled.hour_scales) == 24
    assert scaled.hour_scales[9] > 3 * scaled.hour_scales[3]
    test_predicted, test_actual, test_hours = noisy_hours(200, seed=1)
    busy = (test_hours >= 9) & (test_hours < 15)
    hits = covered(scaled, test_predicted, test_actual, test_hours)
    assert 0.75 <= hits[busy].mean() <= 0.85 and 0.75 <= hits[~busy].mean() <= 0.85
    pooled = Calibration.from_residuals(predicted, actual)  # one width: the busy hours are under-covered
    assert pooled is not None and pooled.hour_scales == ()
    assert covered(pooled, test_predicted, test_actual, None)[busy].mean() < 0.6


def test_hour_scales_survive_a_round_trip_and_old_calibrations_have_none() -> None:
    predicted, actual, hours = noisy_hours(28, seed=2)
    scaled = Calibration.from_residuals(predicted, actual, hours)
    assert scaled is not None and Calibration.from_dict(scaled.to_dict()) == scaled
    old = {k: v for k, v in scaled.to_dict().items() if k != "hour_scales"}
    assert Calibration.from_dict(old).hour_scales == ()
    table = scaled.quantiles(predicted[:24], [0.1, 0.5, 0.9], hours=None)  # no hours: the mean spread
    assert np.isfinite(table).all() and (np.diff(table, axis=1) >= 0).all()



def test_hours_of_one_block_share_a_spread() -> None:
    predicted, actual, hours = noisy_hours(42, seed=3)
    scales = np.asarray(Calibration.from_residuals(predicted, actual, hours).hour_scales)
    blocks = scales.reshape(24 // HOUR_BLOCK, HOUR_BLOCK)
    assert (blocks == blocks[:, :1]).all()  # 0-2, 3-5, ... each one value
    assert len(set(blocks[:, 0])) == 24 // HOUR_BLOCK  # but the blocks differ


def test_skewed_errors_are_covered_on_both_sides_despite_a_holdout_bias() -> None:
    """Point = conditional mean, errors lognormal (mean 0, median < 0); the holdout model was 30 too high."""
    rng = np.random.default_rng(4)

    def errors(size: int) -> np.ndarray:
        draw = rng.lognormal(0.0, 1.0, size) * 20
        return draw - 20 * np.exp(0.5)  # mean 0

    point = np.full(1008, 200.0)
    calibration = Calibration.from_residuals(point - 30, point + errors(1008))
    assert calibration is not None
    test_point = np.full(50_000, 200.0)
    actual = test_point + errors(50_000)
    table = calibration.quantiles(test_point, [0.1, 0.9])
    below, above = (actual < table[:, 0]).mean(), (actual > table[:, 1]).mean()
    # Centred on the median (13 below the mean) the interval would sit 13 too high: 48 % of actuals below it.
    assert 0.07 <= below <= 0.13 and 0.07 <= above <= 0.13


def test_finite_sample_levels_keep_coverage_with_few_residuals() -> None:
    """Over many small calibrations (30 residuals) the 80 % interval covers at least 80 % on average."""
    rng = np.random.default_rng(5)
    hits = []
    for _ in range(2000):
        calibration = Calibration.from_residuals(np.zeros(30), rng.normal(0, 1, 30))
        table = calibration.quantiles(np.zeros(20), [0.1, 0.9])
        actual = rng.normal(0, 1, 20)
        hits.append(((actual >= table[:, 0]) & (actual <= table[:, 1])).mean())
    assert 0.80 <= np.mean(hits) <= 0.84
    assert conformal_levels(np.array([0.1, 0.5, 0.9]), 30) == pytest.approx([1 - 0.9 * 31 / 30, 0.5, 0.9 * 31 / 30])
    assert conformal_levels(np.array([0.01, 0.99]), 10).tolist() == [0.0, 1.0]  # clipped to the extremes
