"""Direct multi-step LightGBM regressor, stored as LightGBM's text model format."""

from __future__ import annotations

from typing import Any, ClassVar

import lightgbm as lgb
import numpy as np

from digitaltwin.forecasting.tabular import DirectRegressionForecaster

MODEL_FILE = "model.txt"


class LightGBMForecaster(DirectRegressionForecaster):
    """One LightGBM model predicting every step of the horizon directly.

    Features: see :class:`~digitaltwin.forecasting.tabular.DirectRegressionForecaster`.
    Training is deterministic (fixed seed, ``deterministic=True``, fixed thread count).

    Args:
        num_boost_round: boosting iterations.
        learning_rate: shrinkage.
        num_leaves: leaves per tree.
        min_data_in_leaf: minimum training rows per leaf.
        objective: LightGBM objective; ``"l1"`` (the conditional median) by default: energy
            loads are skewed by idle periods and spikes, and on the steel-plant day-ahead
            benchmark L1 cuts MAE from 11.3 to 9.8 kWh and the bias (NMBE) from -11 % to -2 %
            against L2 (``"regression"``).
        num_threads: CPU threads for training and prediction; 1 by default, as OpenMP threads on
            small tables cost more than they gain on a shared machine (a 9-month hourly fit took
            11 s with 2 threads and 0.6 s with 1 under load); parallelism comes from fleet processes.
        seed: random seed.
        min_train_rows: see the base class.
        recency_halflife_days: see the base class.
    """

    name = "lightgbm"
    artifact_files: ClassVar[tuple[str, ...]] = (MODEL_FILE,)

    def __init__(
        self,
        *,
        num_boost_round: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_data_in_leaf: int = 20,
        objective: str = "l1",
        num_threads: int = 1,
        seed: int = 0,
        min_train_rows: int | None = None,
        recency_halflife_days: float | None = None,
    ) -> None:
        super().__init__(min_train_rows=min_train_rows, recency_halflife_days=recency_halflife_days)
        self.num_boost_round = num_boost_round
        self.num_threads = num_threads
        self.lgb_params: dict[str, Any] = {
            "objective": objective,
            "learning_rate": learning_rate,
            "num_leaves": num_leaves,
            "min_data_in_leaf": min_data_in_leaf,
            "seed": seed,
            "deterministic": True,
            "force_col_wise": True,
            "num_threads": num_threads,
            "verbosity": -1,
        }
        self._booster: lgb.Booster | None = None

    def _fit_matrix(self, x: np.ndarray, y: np.ndarray, weight: np.ndarray | None, names: list[str]) -> None:
        dataset = lgb.Dataset(x, label=y, weight=weight, feature_name=names, free_raw_data=True)
        self._booster = lgb.train(self.lgb_params, dataset, num_boost_round=self.num_boost_round)

    def _predict_matrix(self, x: np.ndarray) -> np.ndarray:
        assert self._booster is not None
        return np.asarray(self._booster.predict(x, num_threads=self.num_threads))

    def _model_files(self) -> tuple[dict[str, bytes], dict[str, Any]]:
        """LightGBM text model (``Booster.model_to_string``) and the training parameters."""
        assert self._booster is not None
        params = {"lightgbm_params": dict(self.lgb_params), "num_boost_round": self.num_boost_round}
        return {MODEL_FILE: self._booster.model_to_string().encode("utf-8")}, params

    def _load_model(self, files: dict[str, bytes], params: dict[str, Any]) -> None:
        """Load the text model; ValueError when its features differ from the plan's."""
        booster = lgb.Booster(model_str=files[MODEL_FILE].decode("utf-8"))
        assert self._plan is not None
        if booster.feature_name() != self._plan.feature_names:
            raise ValueError("LightGBM model features do not match the artifact params")
        self.lgb_params.update(dict(params.get("lightgbm_params", {})))
        self.num_threads = int(self.lgb_params.get("num_threads", self.num_threads))
        self.num_boost_round = int(params.get("num_boost_round", self.num_boost_round))
        self._booster = booster
