"""scikit-learn regressors (ridge, random forest) stored with skops, never pickle.

skops (https://skops.readthedocs.io) writes a zip of JSON schemas and numpy
arrays and, when loading, refuses every type not on a trusted list. Each class
here names its own explicit list (:attr:`SklearnForecaster.trusted_types`);
before loading, :func:`load_skops` compares the types in the file with that list
and rejects the file naming the unexpected types.
"""

from __future__ import annotations

from abc import abstractmethod

from typing import Any, ClassVar

import numpy as np
import skops.io as sio
from sklearn.ensemble import RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from digitaltwin.forecasting.tabular import DirectRegressionForecaster

MODEL_FILE = "model.skops"


def load_skops(data: bytes, trusted: list[str]) -> Any:
    """Load skops bytes, trusting exactly ``trusted`` beyond skops' own safe defaults.

    Raises:
        ValueError: the file holds a type outside ``trusted`` (named in the message).
    """
    unexpected = sorted(set(sio.get_untrusted_types(data=data)) - set(trusted))
    if unexpected:
        raise ValueError(f"skops file holds untrusted types: {', '.join(unexpected)}")
    return sio.loads(data, trusted=trusted)


class SklearnForecaster(DirectRegressionForecaster):
    """A scikit-learn estimator on the direct-regression features, persisted with skops.

    Subclasses define :meth:`_estimator` and :attr:`trusted_types`.
    """

    artifact_files: ClassVar[tuple[str, ...]] = (MODEL_FILE,)
    #: Types (beyond skops' defaults) a stored model of this class may contain.
    trusted_types: ClassVar[list[str]] = []
    #: The estimator class expected after loading.
    estimator_type: ClassVar[type]

    def __init__(self, *, min_train_rows: int | None = None, recency_halflife_days: float | None = None) -> None:
        super().__init__(min_train_rows=min_train_rows, recency_halflife_days=recency_halflife_days)
        self._model: Any = None

    @abstractmethod
    def _estimator(self) -> Any:
        """A fresh, unfitted scikit-learn estimator of this forecaster."""

    def _design(self, x: np.ndarray) -> np.ndarray:
        """Extra columns derived from the features (none by default)."""
        return x

    def _fit_matrix(self, x: np.ndarray, y: np.ndarray, weight: np.ndarray | None, names: list[str]) -> None:
        model = self._estimator()
        fit_params = {}
        if weight is not None:
            last = model.steps[-1][0] if isinstance(model, Pipeline) else None
            fit_params = {f"{last}__sample_weight" if last else "sample_weight": weight}
        model.fit(self._design(x), y, **fit_params)
        self._model = model

    def _predict_matrix(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._model.predict(self._design(x)))

    def _model_files(self) -> tuple[dict[str, bytes], dict[str, Any]]:
        return {MODEL_FILE: sio.dumps(self._model)}, {"skops_trusted_types": list(self.trusted_types)}

    def _load_model(self, files: dict[str, bytes], params: dict[str, Any]) -> None:
        """Load with the class's trusted-type list (never the list stored in the params)."""
        model = load_skops(files[MODEL_FILE], self.trusted_types)
        if not isinstance(model, self.estimator_type):
            raise ValueError(f"skops file holds a {type(model).__name__}, not a {self.estimator_type.__name__}")
        self._model = model


class RidgeForecaster(SklearnForecaster):
    """Ridge regression (L2-penalised least squares) after mean imputation and scaling.

    Besides the lag and rolling features it reads one-hot hour of day, day of
    week and hour-of-weekend columns, so a linear model can follow the daily profile.

    Args:
        alpha: ridge penalty.
    """

    name = "ridge"
    trusted_types: ClassVar[list[str]] = ["numpy.dtype"]
    estimator_type = Pipeline

    def __init__(self, *, alpha: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha = alpha

    def _estimator(self) -> Any:
        return make_pipeline(SimpleImputer(strategy="mean", keep_empty_features=True), StandardScaler(), Ridge(alpha=self.alpha))

    def _design(self, x: np.ndarray) -> np.ndarray:
        assert self._plan is not None
        names = self._plan.feature_names
        hour = np.nan_to_num(x[:, names.index("quarter_hour_of_day")]).astype(int) // 4
        dow = np.nan_to_num(x[:, names.index("day_of_week")]).astype(int)
        weekend = dow >= 5
        hours = np.eye(24)[np.clip(hour, 0, 23)]
        return np.hstack([x, hours, np.eye(7)[np.clip(dow, 0, 6)], hours * weekend[:, None]])


class RandomForestForecaster(SklearnForecaster):
    """Random forest of regression trees (scikit-learn; missing features handled natively).

    Args:
        n_estimators: trees.
        max_depth: tree depth limit.
        min_samples_leaf: rows per leaf.
        max_samples: share of rows drawn per tree (keeps training fast on a year of 15-min data).
        n_jobs: threads.
        seed: random seed.
    """

    name = "random_forest"
    trusted_types: ClassVar[list[str]] = ["sklearn.tree._tree.Tree"]
    estimator_type = RandomForestRegressor

    def __init__(
        self,
        *,
        n_estimators: int = 100,
        max_depth: int | None = 16,
        min_samples_leaf: int = 5,
        max_samples: float | None = 0.5,
        n_jobs: int = 1,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.estimator_params = {
            "n_estimators": n_estimators,
            "max_depth": max_depth,
            "min_samples_leaf": min_samples_leaf,
            "max_samples": max_samples,
            "n_jobs": n_jobs,
            "random_state": seed,
        }

    def _estimator(self) -> Any:
        return RandomForestRegressor(**self.estimator_params)
