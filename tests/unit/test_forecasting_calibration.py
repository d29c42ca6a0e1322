"""Split-conformal calibration: residual quantiles scaled by the local hour of day."""

from __future__ import annotations

import numpy as np

from digitaltwin.forecasting.calibration import Calibration


def noisy_hours(days: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point 100 every hour; the actual is 5x noisier from 08:00 to 11:59 than at other hours."""
    rng = np.random.default_rng(seed)
    hours = np.tile(np.arange(24), days)
    spread = np.where((hours >= 8) & (hours < 12), 10.0, 2.0)
    predicted = np.full(hours.size, 100.0)
    return predicted, predicted + rng.normal(0, 1, hours.size) * spread, hours


def covered(calibration: Calibration, predicted: np.ndarray, actual: np.ndarray, hours: np.ndarray | None) -> np.ndarray:
    table = calibration.quantiles(predicted, [0.1, 0.9], hours=hours)
    return (actual >= table[:, 0]) & (actual <= table[:, 1])


def test_hour_scales_give_each_hour_its_own_width() -> None:
    predicted, actual, hours = noisy_hours(56, seed=0)
    scaled = Calibration.from_residuals(predicted, actual, hours)
    assert scaled is not None and len(scaled.hour_scales) == 24
    assert scaled.hour_scales[9] > 3 * scaled.hour_scales[3]
    test_predicted, test_actual, test_hours = noisy_hours(200, seed=1)
    busy = (test_hours >= 8) & (test_hours < 12)
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

