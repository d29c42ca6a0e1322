"""The registry of forecasting algorithms by name."""

from __future__ import annotations

from digitaltwin.forecasting.base import Forecaster
from digitaltwin.forecasting.errors import UnknownAlgorithmError
from digitaltwin.forecasting.lightgbm_forecaster import LightGBMForecaster
from digitaltwin.forecasting.seasonal_naive import DailySeasonalNaiveForecaster, WeeklySeasonalNaiveForecaster

#: Forecaster classes by their ``name``.
ALGORITHMS: dict[str, type[Forecaster]] = {
    cls.name: cls for cls in (DailySeasonalNaiveForecaster, WeeklySeasonalNaiveForecaster, LightGBMForecaster)
}


def make_forecaster(name: str) -> Forecaster:
    """A new, unfitted forecaster of the algorithm ``name`` with default settings.

    Raises:
        UnknownAlgorithmError: ``name`` is not in :data:`ALGORITHMS`.
    """
    try:
        cls = ALGORITHMS[name]
    except KeyError:
        raise UnknownAlgorithmError(name, sorted(ALGORITHMS)) from None
    return cls()
