"""Forecasting of energy series: features, one module per algorithm, backtesting, metrics.

Public entry points: :func:`make_forecaster` / :data:`ALGORITHMS` (with the
aliases of :func:`canonical_name`), the :class:`Forecaster` interface and its
:class:`Forecast` output, :func:`backtest` and :func:`daily_origins`, the metrics
and the typed errors.
"""

from digitaltwin.forecasting.algorithms import ALGORITHMS, ALIASES, algorithm_class, canonical_name, make_forecaster
from digitaltwin.forecasting.backtest import BacktestResult, backtest, daily_origins
from digitaltwin.forecasting.base import Forecast, Forecaster
from digitaltwin.forecasting.errors import (
    ForecastError,
    InsufficientHistoryError,
    InsufficientValidDataError,
    MissingExogenousError,
    NotCalibratedError,
    NotFittedError,
    OptionalDependencyError,
    UnknownAlgorithmError,
)
from digitaltwin.forecasting.metrics import coverage, cv_rmse, mae, mape, mase, nmbe, peak_error, pinball, rmse

__all__ = [
    "ALGORITHMS",
    "ALIASES",
    "BacktestResult",
    "Forecast",
    "ForecastError",
    "Forecaster",
    "InsufficientHistoryError",
    "InsufficientValidDataError",
    "MissingExogenousError",
    "NotCalibratedError",
    "NotFittedError",
    "OptionalDependencyError",
    "UnknownAlgorithmError",
    "algorithm_class",
    "backtest",
    "canonical_name",
    "coverage",
    "cv_rmse",
    "daily_origins",
    "mae",
    "make_forecaster",
    "mape",
    "mase",
    "nmbe",
    "peak_error",
    "pinball",
    "rmse",
]
