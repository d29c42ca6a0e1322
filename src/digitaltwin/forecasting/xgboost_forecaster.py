"""Direct multi-step XGBoost regressor, stored in XGBoost's Universal Binary JSON (UBJ) format."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import xgboost as xgb

from digitaltwin.forecasting.tabular import DirectRegressionForecaster

MODEL_FILE = "model.ubj"


class XGBoostForecaster(DirectRegressionForecaster):
    """One XGBoost model (``hist`` trees) predicting every step of the horizon directly.

    Missing feature values go down XGBoost's learned default branch. The model
    is saved with ``Booster.save_raw("ubj")``, XGBoost's own portable format.

    Args:
        num_boost_round: boosting iterations.
        learning_rate: shrinkage (``eta``).
        max_depth: tree depth.
        min_child_weight: minimum hessian per leaf.
        subsample: row subsampling per tree.
        objective: XGBoost objective (``"reg:squarederror"``, ``"reg:absoluteerror"`` ...).
        num_threads: CPU threads (1 by default, see the LightGBM forecaster).
        seed: random seed.
        min_train_rows: see the base class.
        recency_halflife_days: see the base class.
    """

    name = "xgboost"
    artifact_files: ClassVar[tuple[str, ...]] = (MODEL_FILE,)

    def __init__(
        self,
        *,
        num_boost_round: int = 300,
        learning_rate: float = 0.05,
        max_depth: int = 6,
        min_child_weight: float = 5.0,
        subsample: float = 1.0,
        objective: str = "reg:squarederror",
        num_threads: int = 1,
        seed: int = 0,
        min_train_rows: int | None = None,
        recency_halflife_days: float | None = None,
    ) -> None:
        super().__init__(min_train_rows=min_train_rows, recency_halflife_days=recency_halflife_days)
        self.num_boost_round = num_boost_round
        self.xgb_params: dict[str, Any] = {
            "objective": objective,
            "eta": learning_rate,
            "max_depth": max_depth,
            "min_child_weight": min_child_weight,
            "subsample": subsample,
            "tree_method": "hist",
            "nthread": num_threads,
            "seed": seed,
            "verbosity": 0,
        }
        self._booster: xgb.Booster | None = None

    def _fit_matrix(self, x: np.ndarray, y: np.ndarray, weight: np.ndarray | None, names: list[str]) -> None:
        matrix = xgb.DMatrix(x, label=y, weight=weight, feature_names=names, missing=np.nan)
        self._booster = xgb.train(self.xgb_params, matrix, num_boost_round=self.num_boost_round)

    def _predict_matrix(self, x: np.ndarray) -> np.ndarray:
        assert self._booster is not None and self._plan is not None
        return np.asarray(self._booster.predict(xgb.DMatrix(x, feature_names=self._plan.feature_names, missing=np.nan)))

    def _model_files(self) -> tuple[dict[str, bytes], dict[str, Any]]:
        assert self._booster is not None
        params = {"xgboost_params": dict(self.xgb_params), "num_boost_round": self.num_boost_round}
        return {MODEL_FILE: bytes(self._booster.save_raw(raw_format="ubj"))}, params

    def _load_model(self, files: dict[str, bytes], params: dict[str, Any]) -> None:
        """Load the UBJ model; ValueError when its features differ from the plan's."""
        booster = xgb.Booster()
        booster.load_model(bytearray(files[MODEL_FILE]))
        assert self._plan is not None
        if list(booster.feature_names or []) != self._plan.feature_names:
            raise ValueError("XGBoost model features do not match the artifact params")
        self.xgb_params.update(dict(params.get("xgboost_params", {})))
        booster.set_param({"nthread": int(self.xgb_params.get("nthread", 1))})
        self.num_boost_round = int(params.get("num_boost_round", self.num_boost_round))
        self._booster = booster
