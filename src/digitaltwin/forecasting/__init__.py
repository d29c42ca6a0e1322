"""Forecasting of energy series: features, one module per algorithm, backtesting, metrics.

Public entry points: :func:`make_forecaster` / :data:`ALGORITHMS`, the
:class:`Forecaster` interface, :func:`backtest` and :func:`daily_origins`, the
metrics and the typed errors.
"""

from digitaltwin.forecasting.algorithms import ALGORITHMS, make_forecaster
from digitaltwin.forecasting.backtest import BacktestResult, backtest, daily_origins
from digitaltwin.forecasting.base import Forecaster
from digitaltwin.forecasting.errors import (
    ForecastError,
    InsufficientHistoryError,
    NotFittedError,
    UnknownAlgorithmError,
)
from digitaltwin.forecasting.metrics import cv_rmse, mae, nmbe, rmse

__all__ = [
    "ALGORITHMS",
    "BacktestResult",
    "ForecastError",
    "Forecaster",
    "InsufficientHistoryError",
    "NotFittedError",
    "UnknownAlgorithmError",
    "backtest",
    "cv_rmse",
    "daily_origins",
    "mae",
    "make_forecaster",
    "nmbe",
    "rmse",
]
