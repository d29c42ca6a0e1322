"""Direct multi-step regression on a feature table: the shared part of LightGBM, XGBoost, ridge and random forest.

One regressor predicts every step ``1..horizon_steps`` after an origin from the
features of :mod:`.features` (every lag >= ``horizon_steps``, so a row only uses
values known at the origin). Subclasses supply the regressor and its native
file format; this class builds the features, the training rows and the checks.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from digitaltwin.forecasting.base import FitContext, Forecaster
from digitaltwin.forecasting.errors import InsufficientHistoryError
from digitaltwin.forecasting.features import FeaturePlan, make_features, make_features_tail
from digitaltwin.forecasting.series import samples_per_day, series_name


class DirectRegressionForecaster(Forecaster):
    """A regressor on lag, rolling, local-calendar, holiday and exogenous features.

    Rows whose target is ``NaN`` are skipped in training; feature ``NaN`` (gaps,
    unknown weather) is left to the regressor (tree models) or imputed (ridge).

    Args:
        min_train_rows: fewest usable training rows accepted; ``None`` means one
            day of samples (96 for 15-min data, at least 24).
        recency_halflife_days: when set, training rows are weighted ``0.5 ** (age / halflife)``
            with ``age`` in days before the last training row, so recent behaviour counts more.
    """

    limited_horizon: ClassVar[bool] = True
    uses_exog: ClassVar[bool] = True

    def __init__(self, *, min_train_rows: int | None = None, recency_halflife_days: float | None = None) -> None:
        super().__init__()
        self.min_train_rows = min_train_rows
        self.recency_halflife_days = recency_halflife_days
        self._plan: FeaturePlan | None = None

    # ----------------------------------------------------------- regressor API
    @abc.abstractmethod
    def _fit_matrix(self, x: np.ndarray, y: np.ndarray, weight: np.ndarray | None, names: list[str]) -> None:
        """Fit the regressor on rows ``x`` (n x features, may hold NaN) and targets ``y``."""

    @abc.abstractmethod
    def _predict_matrix(self, x: np.ndarray) -> np.ndarray:
        """Predict one value per row of ``x``."""

    @abc.abstractmethod
    def _model_files(self) -> tuple[dict[str, bytes], dict[str, Any]]:
        """The fitted regressor in its native format, plus JSON-able hyper-parameters."""

    @abc.abstractmethod
    def _load_model(self, files: dict[str, bytes], params: dict[str, Any]) -> None:
        """Inverse of :meth:`_model_files` on a fresh instance; ValueError on mismatch."""

    # ------------------------------------------------------------ Forecaster
    def _plan_for(self, context: FitContext) -> FeaturePlan:
        if self._plan is not None and self._plan.horizon_steps == context.horizon_steps:
            return self._plan
        return FeaturePlan.for_horizon(
            step=context.step,
            horizon_steps=context.horizon_steps,
            holidays=context.country is not None,
            exog=context.exog,
        )

    def _required_history(self, context: FitContext) -> int:
        return self._plan_for(context).required_history

    @property
    def feature_names(self) -> list[str]:
        return self._plan_for(self.context).feature_names if self.is_fitted else []

    def _fit(self, y: pd.Series, context: FitContext, exog: pd.DataFrame | None) -> None:
        plan = self._plan_for(context)
        min_rows = self.min_train_rows or max(24, samples_per_day(context.step))
        features = make_features(y, plan, timezone=context.timezone, country=context.country, exog=exog)
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
        weight = None
        if self.recency_halflife_days:
            age_days = (y.index[-1] - y.index[usable]).total_seconds().to_numpy() / 86_400
            weight = 0.5 ** (age_days / self.recency_halflife_days)
        self._plan = plan
        self._fit_matrix(features.to_numpy()[usable], y.to_numpy()[usable], weight, plan.feature_names)

    def _predict(self, history: pd.Series, steps: int, exog: pd.DataFrame | None) -> np.ndarray:
        """Predict from the features of the ``steps`` future rows only (:func:`make_features_tail`).

        The frame is the last ``required_history`` samples of ``history`` followed by ``steps``
        ``NaN`` slots (``exog``'s last rows aligned with it), the frame the full-table path
        :func:`make_features` was given for prediction, so the rows are the same.
        """
        context = self.context
        plan = self._plan_for(context)
        values = history.to_numpy(dtype=float)[-plan.required_history :]
        start = history.index[len(history) - len(values)]
        frame = np.concatenate((values, np.full(steps, np.nan)))
        columns = None
        if exog is not None:
            part = exog.iloc[-len(frame) :]
            columns = {str(name): part[name].to_numpy(dtype=float) for name in plan.exog if name in part.columns}
        features = make_features_tail(
            frame, plan, start=start, step=context.step, rows=steps, timezone=context.timezone,
            country=context.country, exog=columns,
        )
        return np.asarray(self._predict_matrix(features), dtype=float)

    def _to_files(self) -> tuple[dict[str, bytes], dict[str, Any]]:
        files, params = self._model_files()
        params = {
            **params,
            "plan": self._plan_for(self.context).to_dict(),
            "min_train_rows": self.min_train_rows,
            "recency_halflife_days": self.recency_halflife_days,
        }
        return files, params

    @classmethod
    def _from_files(cls, files: dict[str, bytes], params: dict[str, Any], context: FitContext) -> Forecaster:
        plan = FeaturePlan.from_dict(params["plan"])
        if plan.horizon_steps != context.horizon_steps or plan.holidays != (context.country is not None):
            raise ValueError(f"{cls.name} feature plan does not match the fit context")
        if plan.exog != context.exog:
            raise ValueError(f"{cls.name} exogenous columns do not match the fit context")
        forecaster = cls(
            min_train_rows=params.get("min_train_rows"),
            recency_halflife_days=params.get("recency_halflife_days"),
        )
        forecaster._plan = plan
        forecaster._load_model(files, params)
        return forecaster
