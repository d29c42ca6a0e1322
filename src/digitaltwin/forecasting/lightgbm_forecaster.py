"""Direct multi-step LightGBM regressor on lag, rolling and local-calendar features."""

from __future__ import annotations

from typing import Any, ClassVar

import lightgbm as lgb
import numpy as np
import pandas as pd

from digitaltwin.forecasting.base import FitContext, Forecaster
from digitaltwin.forecasting.errors import InsufficientHistoryError
from digitaltwin.forecasting.features import FeaturePlan, make_features
from digitaltwin.forecasting.series import samples_per_day, series_name


class LightGBMForecaster(Forecaster):
    """One LightGBM model predicting every step of the horizon directly.

    Features are chosen by :meth:`FeaturePlan.for_horizon` (all lags >=
    ``horizon_steps``) plus quarter-hour of day, day of week, weekend, month and,
    when a country is given, public holiday, all in the site's local time.
    Rows whose target is ``NaN`` are skipped in training. Training is
    deterministic (fixed seed, ``deterministic=True``, fixed thread count).

    Args:
        num_boost_round: boosting iterations.
        learning_rate: shrinkage.
        num_leaves: leaves per tree.
        min_data_in_leaf: minimum training rows per leaf.
        num_threads: CPU threads for training and prediction.
        seed: random seed.
        min_train_rows: fewest usable training rows accepted; ``None`` means one
            day of samples (96 for 15-min data, at least 24).
    """

    name = "lightgbm"
    artifact_filename: ClassVar[str] = "model.txt"
    limited_horizon: ClassVar[bool] = True

    def __init__(
        self,
        *,
        num_boost_round: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_data_in_leaf: int = 20,
        num_threads: int = 2,
        seed: int = 0,
        min_train_rows: int | None = None,
    ) -> None:
        super().__init__()
        self.num_boost_round = num_boost_round
        self.min_train_rows = min_train_rows
        self.num_threads = num_threads
        self.lgb_params: dict[str, Any] = {
            "objective": "regression",
            "learning_rate": learning_rate,
            "num_leaves": num_leaves,
            "min_data_in_leaf": min_data_in_leaf,
            "seed": seed,
            "deterministic": True,
            "force_col_wise": True,
            "num_threads": num_threads,
            "verbosity": -1,
        }
        self._plan: FeaturePlan | None = None
        self._booster: lgb.Booster | None = None

    def _required_history(self, context: FitContext) -> int:
        return self._plan_for(context).required_history

    def _plan_for(self, context: FitContext) -> FeaturePlan:
        if self._plan is not None and self._plan.horizon_steps == context.horizon_steps:
            return self._plan
        return FeaturePlan.for_horizon(
            step=context.step, horizon_steps=context.horizon_steps, holidays=context.country is not None
        )

    def _fit(self, y: pd.Series, context: FitContext) -> None:
        plan = self._plan_for(context)
        min_rows = self.min_train_rows or max(24, samples_per_day(context.step))
        features = make_features(y, plan, timezone=context.timezone, country=context.country)
        usable = np.zeros(len(y), dtype=bool)
        usable[plan.required_history :] = True
        usable &= y.notna().to_numpy()
        if usable.sum() < min_rows:
            raise InsufficientHistoryError(
                available=len(y),
                required=plan.required_history + min_rows,
                series=series_name(y),
                purpose=f"training history ({int(usable.sum())} usable rows, {min_rows} needed)",
            )
        dataset = lgb.Dataset(
            features.to_numpy()[usable],
            label=y.to_numpy()[usable],
            feature_name=plan.feature_names,
            free_raw_data=True,
        )
        self._booster = lgb.train(self.lgb_params, dataset, num_boost_round=self.num_boost_round)
        self._plan = plan

    def _predict(self, history: pd.Series, steps: int) -> np.ndarray:
        context = self.context
        plan = self._plan_for(context)
        tail = history.iloc[-plan.required_history :]
        future = pd.date_range(tail.index[-1] + context.step, periods=steps, freq=context.step)
        extended = pd.concat([tail, pd.Series(np.nan, index=future, name=tail.name)])
        features = make_features(extended, plan, timezone=context.timezone, country=context.country)
        assert self._booster is not None
        return np.asarray(self._booster.predict(features.to_numpy()[-steps:], num_threads=self.num_threads))

    @property
    def feature_names(self) -> list[str]:
        """Feature names of the fitted model."""
        return self._plan_for(self.context).feature_names

    def to_artifact(self) -> tuple[bytes, dict[str, Any]]:
        """LightGBM text model (``Booster.model_to_string``) and the feature plan.

        Returns:
            ``(model text as UTF-8 bytes, params)``; params hold ``feature_names``,
            the plan (lags, windows), the fit context (horizon_steps, step_seconds,
            timezone, country) and the training parameters.
        """
        context = self.context
        assert self._booster is not None
        params = {
            "algorithm": self.name,
            "feature_names": self.feature_names,
            **self._plan_for(context).to_dict(),
            **context.to_dict(),
            "lightgbm_params": dict(self.lgb_params),
            "num_boost_round": self.num_boost_round,
        }
        return self._booster.model_to_string().encode("utf-8"), params

    @classmethod
    def from_artifact(cls, data: bytes, params: dict[str, Any]) -> LightGBMForecaster:
        """Rebuild from :meth:`to_artifact` output.

        Raises:
            ValueError: the model's feature names differ from ``params["feature_names"]``,
                or the plan and the fit context disagree.
        """
        context = FitContext.from_dict(params)
        plan = FeaturePlan.from_dict(params)
        booster = lgb.Booster(model_str=data.decode("utf-8"))
        if booster.feature_name() != list(params["feature_names"]) or plan.feature_names != booster.feature_name():
            raise ValueError("LightGBM model features do not match the artifact params")
        if plan.horizon_steps != context.horizon_steps or plan.holidays != (context.country is not None):
            raise ValueError("LightGBM feature plan does not match the fit context")
        lgb_params = dict(params.get("lightgbm_params", {}))
        forecaster = cls(num_boost_round=int(params.get("num_boost_round", 0)))
        forecaster.lgb_params.update(lgb_params)
        forecaster.num_threads = int(lgb_params.get("num_threads", forecaster.num_threads))
        forecaster._plan = plan
        forecaster._booster = booster
        forecaster._context = context
        return forecaster
