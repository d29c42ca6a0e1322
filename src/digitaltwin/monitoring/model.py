"""The model-based detector: actuals against a forecaster's calibrated distribution, refitted causally.

The series is cut into consecutive blocks of ``horizon_days`` days (counted in intervals from the
first stamp). Every ``refit_every_days`` a fresh forecaster of the product (``make_forecaster``) is
fitted on the data *before* the block, with its split-conformal calibration
(:mod:`digitaltwin.forecasting.calibration`), and each block is then predicted in one go from the
history just before it (a week ahead by default, see :class:`.settings.ModelSettings`). The calibrated 15.87 %, 50 % and 84.13 % quantiles standardise the
residual (:mod:`.tails`). No interval is ever scored by a model that saw it or anything later.

With ``exclude_flagged``, intervals whose surprise (this detector's, or the caller's ``prior``
from the profile and the rules) already reached the threshold are NaN in the data the later
refits and predictions see: the forecaster skips NaN targets in training and tree models treat
NaN lags as missing, so an outage is neither learnt as normal nor used as the lag of tomorrow.
Where no model could be fitted yet (short history, too few valid values) the expectation is NaN
and the profile baseline takes over.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from digitaltwin.forecasting import ForecastError, make_forecaster
from digitaltwin.forecasting.base import Forecaster, local_hours
from digitaltwin.monitoring.profile import Expectation
from digitaltwin.monitoring.settings import ModelSettings
from digitaltwin.monitoring.tails import surprise

logger = logging.getLogger(__name__)

#: Quantile levels read from the calibration: one standard unit either side of the median.
LEVELS = [0.1587, 0.5, 0.8413]


def model_expectation(
    y: pd.Series,
    *,
    timezone: str,
    settings: ModelSettings,
    threshold: float,
    prior: np.ndarray | None = None,
    floor: np.ndarray | None = None,
) -> tuple[Expectation, int]:
    """Rolling causal expectation of ``y``, block by block (see the module docstring).

    Args:
        y: readings on a regular UTC grid (:func:`digitaltwin.forecasting.series.to_grid`), NaN for gaps.
        timezone: IANA zone of the site (calendar features, local hours of the calibration).
        settings: refit cadence, history needed, exclusion.
        threshold: surprise at or above which an interval is excluded from later refits.
        prior: surprise of the other detectors per interval (causal), shape ``(T,)``; NaN ignored.
        floor: smallest spread per interval (target unit), shape ``(T,)``; default 1e-9.

    Returns:
        ``(expectation, fits)``: NaN where no calibrated model covered the interval, and the number
        of models fitted.
    """
    t = len(y)
    out = Expectation.empty(t)
    if floor is not None:
        out.floor[:] = floor
    step_s = int((y.index[1] - y.index[0]).total_seconds()) if t > 1 else 3600
    per_day = 86_400 // step_s
    block = settings.horizon_days * per_day
    first = settings.min_history_days * per_day
    masked = y.to_numpy(dtype=float).copy()
    prior_s = np.zeros(t) if prior is None else np.nan_to_num(np.asarray(prior, dtype=float), nan=0.0)
    model: Forecaster | None = None
    fitted_at = -(10**9)
    fits = 0
    for start in range(first, t, block):
        stop = min(start + block, t)
        if model is None or start - fitted_at >= settings.refit_every_days * per_day:
            # refit on schedule, and at every block while no calibrated model exists yet (the
            # calibration's holdout needs about six weeks on top of the training data)
            candidate = make_forecaster(settings.algorithm)
            train = pd.Series(masked[:start], index=y.index[:start], name=y.name)
            try:
                candidate.fit(train, horizon_steps=block, timezone=timezone)
                fits += 1
                if candidate.calibration is not None:
                    model, fitted_at = candidate, start
            except (ForecastError, ValueError) as exc:  # too little valid data so far: the profile takes over
                logger.info("anomaly model not fitted at %s: %s", y.index[start], exc)
        if model is None:
            continue
        history = pd.Series(masked[:start], index=y.index[:start], name=y.name).iloc[-model.required_history() :]
        try:
            point = model.predict(history, steps=block).to_numpy()[: stop - start]
        except (ForecastError, ValueError) as exc:
            logger.info("anomaly model could not predict %s: %s", y.index[start], exc)
            continue
        calibration = model.calibration
        assert calibration is not None
        table = calibration.quantiles(point, LEVELS, hours=local_hours(y.index[start:stop], timezone))
        if model.context.nonnegative:
            table = np.maximum(table, 0.0)
        out.low[start:stop], out.median[start:stop], out.high[start:stop] = table[:, 0], table[:, 1], table[:, 2]
        if settings.exclude_flagged:
            own = surprise(_block_z(out, masked, start, stop))
            flagged = np.maximum(np.nan_to_num(own, nan=0.0), prior_s[start:stop]) >= threshold
            masked[start:stop][flagged] = np.nan
    return out, fits


def _block_z(expectation: Expectation, values: np.ndarray, start: int, stop: int) -> np.ndarray:
    part = Expectation(
        expectation.median[start:stop], expectation.low[start:stop], expectation.high[start:stop], expectation.floor[start:stop]
    )
    return part.z(values[start:stop])
