"""The registry of forecasting algorithms by name, with the replaced system's aliases.

Names: ``persistence``, ``seasonal_naive_daily``, ``seasonal_naive_weekly``,
``ridge``, ``random_forest``, ``xgboost``, ``lightgbm``, ``lstm``, ``gru``
(PyTorch, the optional ``torch`` extra), ``ensemble_mean``, ``ensemble_median``
and ``ensemble_weighted``. The replaced system's ``rf`` means ``random_forest``
(its ``lstm``, ``gru`` and ``xgboost`` are the names above).
"""

from __future__ import annotations

import importlib.util

from digitaltwin.forecasting.base import Forecaster
from digitaltwin.forecasting.ensemble import (
    MeanEnsembleForecaster,
    MedianEnsembleForecaster,
    WeightedEnsembleForecaster,
)
from digitaltwin.forecasting.errors import OptionalDependencyError, UnknownAlgorithmError
from digitaltwin.forecasting.lightgbm_forecaster import LightGBMForecaster
from digitaltwin.forecasting.seasonal_naive import (
    DailySeasonalNaiveForecaster,
    PersistenceForecaster,
    WeeklySeasonalNaiveForecaster,
)
from digitaltwin.forecasting.sklearn_forecasters import RandomForestForecaster, RidgeForecaster
from digitaltwin.forecasting.xgboost_forecaster import XGBoostForecaster

#: Forecaster classes by their canonical ``name``.
ALGORITHMS: dict[str, type[Forecaster]] = {
    cls.name: cls
    for cls in (
        PersistenceForecaster,
        DailySeasonalNaiveForecaster,
        WeeklySeasonalNaiveForecaster,
        RidgeForecaster,
        RandomForestForecaster,
        XGBoostForecaster,
        LightGBMForecaster,
        MeanEnsembleForecaster,
        MedianEnsembleForecaster,
        WeightedEnsembleForecaster,
    )
}
#: Algorithms that need PyTorch (the ``torch`` extra); registered when it is installed.
TORCH_ALGORITHMS = ("lstm", "gru")
if importlib.util.find_spec("torch") is not None:  # pragma: no branch - depends on the install
    from digitaltwin.forecasting.rnn_forecaster import GRUForecaster, LSTMForecaster

    ALGORITHMS.update({LSTMForecaster.name: LSTMForecaster, GRUForecaster.name: GRUForecaster})

#: Other names accepted for an algorithm: the replaced system's and common short forms.
ALIASES: dict[str, str] = {"rf": "random_forest", "lgbm": "lightgbm", "xgb": "xgboost", "naive": "persistence"}


def canonical_name(name: str) -> str:
    """The registered name for ``name`` or one of its aliases (case-insensitive).

    Raises:
        OptionalDependencyError: ``lstm``/``gru`` without PyTorch installed.
        UnknownAlgorithmError: any other unknown name.
    """
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key in ALGORITHMS:
        return key
    if key in TORCH_ALGORITHMS:
        raise OptionalDependencyError(key, "torch")
    raise UnknownAlgorithmError(str(name), sorted(set(ALGORITHMS) | set(TORCH_ALGORITHMS)))


def algorithm_class(name: str) -> type[Forecaster]:
    """The forecaster class of ``name`` (aliases accepted); errors as :func:`canonical_name`."""
    return ALGORITHMS[canonical_name(name)]


def make_forecaster(name: str) -> Forecaster:
    """A new, unfitted forecaster of the algorithm ``name`` (aliases accepted) with default settings.

    Raises:
        UnknownAlgorithmError: ``name`` is not registered.
        OptionalDependencyError: the algorithm needs an extra that is not installed.
    """
    return algorithm_class(name)()
