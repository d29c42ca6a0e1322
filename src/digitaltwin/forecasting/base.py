"""The :class:`Forecaster` interface shared by every algorithm: fit, predict, forecast with quantiles.

A forecaster is fitted once on a target series (see :mod:`.series` for the
contract) and then predicts the next ``steps`` intervals after any later
history. :meth:`Forecaster.forecast` adds what a served forecast needs on top of
:meth:`Forecaster.predict`: the checks of :mod:`.checks` (valid data, flat
series, completeness) and quantiles from the split-conformal calibration of
:mod:`.calibration`, computed at fit time on a holdout at the end of the
training data. Subclasses implement ``_fit``, ``_predict``,
``_required_history`` and the artifact pair ``_to_files``/``_from_files``.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from digitaltwin.forecasting.calibration import LEVEL_MAX, LEVEL_MIN, Calibration, holdout_plan
from digitaltwin.forecasting.checks import check_completeness, check_valid_data, flat_level
from digitaltwin.forecasting.errors import (
    InsufficientHistoryError,
    MissingExogenousError,
    NotCalibratedError,
    NotFittedError,
)
from digitaltwin.forecasting.series import (
    as_utc_series,
    check_timezone,
    future_index,
    infer_step,
    samples_per_day,
    series_name,
    to_grid,
)


@dataclass(frozen=True)
class FitContext:
    """What a forecaster was fitted for; stored in every artifact's params.

    Attributes:
        step_seconds: grid step of the target series, in seconds.
        horizon_steps: number of steps the forecaster was fitted to predict.
        timezone: IANA zone of the site (calendar features, local days).
        country: ISO country code for public holidays, or ``None``.
        exog: names of the exogenous columns the model reads (empty: none).
        nonnegative: the training target had no negative value, so forecasts are clipped at 0.
    """

    step_seconds: int
    horizon_steps: int
    timezone: str
    country: str | None
    exog: tuple[str, ...] = ()
    nonnegative: bool = False

    @property
    def step(self) -> pd.Timedelta:
        return pd.Timedelta(seconds=self.step_seconds)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["exog"] = list(self.exog)
        return data

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> FitContext:
        return cls(
            step_seconds=int(params["step_seconds"]),
            horizon_steps=int(params["horizon_steps"]),
            timezone=check_timezone(str(params["timezone"])),
            country=None if params.get("country") is None else str(params["country"]),
            exog=tuple(str(c) for c in params.get("exog", ())),
            nonnegative=bool(params.get("nonnegative", False)),
        )


@dataclass(frozen=True)
class Forecast:
    """A served forecast.

    Attributes:
        values: point forecast, one float per interval (target unit) indexed by UTC interval start.
        quantiles: same index, one column per requested level (float, e.g. ``0.1``), non-decreasing
            across levels; no columns when none were asked for.
        flatliner: the recent history was flat and the forecast is that flat level (see :mod:`.checks`).
    """

    values: pd.Series
    quantiles: pd.DataFrame = field(default_factory=pd.DataFrame)
    flatliner: bool = False


def check_levels(levels: Sequence[float]) -> list[float]:
    """Sorted unique quantile levels, each in ``[0.01, 0.99]``.

    Raises:
        ValueError: a level outside that range or not a number.
    """
    out = []
    for level in levels:
        value = float(level)
        if not (LEVEL_MIN <= value <= LEVEL_MAX):
            raise ValueError(f"quantile level {level!r} is outside [{LEVEL_MIN}, {LEVEL_MAX}]")
        out.append(round(value, 4))
    return sorted(set(out))


class Forecaster(abc.ABC):
    """A fitted model that predicts the next intervals of a target series.

    Class attributes:
        name: registry name of the algorithm (``"lightgbm"`` ...).
        limited_horizon: ``True`` when ``predict`` cannot go beyond the fitted horizon.
        stateless: ``True`` when fitting learns nothing but the grid (seasonal naive,
            persistence), so a model can be fitted on the request's history instead of stored.
        uses_exog: ``True`` when the algorithm reads exogenous series (weather).
    """

    name: ClassVar[str]
    limited_horizon: ClassVar[bool] = False
    stateless: ClassVar[bool] = False
    uses_exog: ClassVar[bool] = False

    def __init__(self) -> None:
        self._context: FitContext | None = None
        self._calibration: Calibration | None = None

    # ------------------------------------------------------------------ public
    @property
    def context(self) -> FitContext:
        """The :class:`FitContext`; raises :class:`NotFittedError` before ``fit``."""
        if self._context is None:
            raise NotFittedError(self.name)
        return self._context

    @property
    def is_fitted(self) -> bool:
        return self._context is not None

    @property
    def horizon_steps(self) -> int:
        """Horizon (steps) the forecaster was fitted for."""
        return self.context.horizon_steps

    @property
    def calibration(self) -> Calibration | None:
        """The interval calibration from fit, or ``None`` (too little history, or ``calibrate=False``)."""
        return self._calibration

    @property
    def feature_names(self) -> list[str]:
        """Names of the model's input features (empty for models without features)."""
        return []

    def fit(
        self,
        y: pd.Series,
        *,
        horizon_steps: int,
        timezone: str,
        country: str | None = None,
        exog: pd.DataFrame | None = None,
        calibrate: bool = True,
    ) -> None:
        """Fit on a target series, then calibrate intervals on a holdout at its end.

        Calibration fits a copy on the history before the holdout (see
        :func:`.calibration.holdout_plan`), so it roughly doubles the training time;
        when the history is too short for it the model is still fitted, without quantiles.

        Args:
            y: target, float values (kWh per interval or kW) on a tz-aware UTC
                ``DatetimeIndex`` of interval starts on a regular grid; ``NaN`` marks gaps.
                The step is the median difference of the index.
            horizon_steps: number of steps ahead the forecaster must predict (>= 1).
            timezone: IANA zone of the site, e.g. ``"Asia/Seoul"``.
            country: ISO code understood by ``holidays.country_holidays``, or ``None``.
            exog: exogenous series (e.g. ``temperature_degC``) on a tz-aware index covering
                ``y``; used by algorithms with ``uses_exog``, ignored by the others.
            calibrate: compute the interval calibration.

        Raises:
            InsufficientValidDataError: fewer than two non-missing values.
            InsufficientHistoryError: ``y`` is too short for this algorithm.
            ValueError: bad horizon, unknown timezone, irregular or naive index.
        """
        if isinstance(horizon_steps, bool) or not isinstance(horizon_steps, (int, np.integer)) or horizon_steps < 1:
            raise ValueError(f"horizon_steps must be an integer >= 1, got {horizon_steps!r}")
        y = as_utc_series(y)
        if len(y) < 2:
            raise InsufficientHistoryError(available=len(y), required=2, series=series_name(y))
        check_valid_data(y, required=2)
        step = infer_step(y.index)
        y = to_grid(y, step)
        columns = tuple(str(c) for c in exog.columns) if (exog is not None and self.uses_exog) else ()
        context = FitContext(
            step_seconds=int(step.total_seconds()),
            horizon_steps=int(horizon_steps),
            timezone=check_timezone(timezone),
            country=country,
            exog=columns,
            nonnegative=bool(np.nanmin(y.to_numpy()) >= 0),
        )
        aligned = _align_exog(exog, y.index, columns) if columns else None
        fresh = copy.deepcopy(self) if calibrate else None
        self._fit(y, context, aligned)
        self._context = context
        self._calibration = self._calibrate(fresh, y, context, aligned) if fresh is not None else None

    def predict(self, history: pd.Series, *, steps: int, exog: pd.DataFrame | None = None) -> pd.Series:
        """Predict the ``steps`` intervals following the last stamp of ``history`` (point forecast).

        Args:
            history: recent target values, same contract and step as in ``fit``.
                It must span at least :meth:`required_history` steps.
            steps: number of intervals to predict (>= 1).
            exog: the exogenous columns the model was fitted with, covering ``history``
                and the ``steps`` intervals after it (``NaN`` where unknown).

        Returns:
            ``steps`` finite floats (same unit as the target; clipped at 0 when the
            training target was non-negative) indexed by the next ``steps`` interval
            starts (UTC) after ``history.index[-1]``.

        Raises:
            NotFittedError: called before ``fit``.
            InsufficientHistoryError: ``history`` spans fewer than :meth:`required_history` steps.
            MissingExogenousError: the model reads exogenous series and ``exog`` lacks them.
            ValueError: ``steps`` < 1, ``steps`` beyond the fitted horizon (for
                algorithms with ``limited_horizon``), or a history off the fitted grid.
        """
        context = self.context
        history, steps = self._check_predict(history, steps)
        return self._predict_checked(history, steps, exog, future_index(history.index[-1], steps, context.step))

    def forecast(
        self,
        history: pd.Series,
        *,
        steps: int,
        quantiles: Sequence[float] = (),
        exog: pd.DataFrame | None = None,
    ) -> Forecast:
        """A served forecast: checks, the flat-series policy, point values and quantiles.

        Order: (1) the history must hold a valid value
        (:class:`InsufficientValidDataError` otherwise); (2) a flat last 24 h gives the flat
        level for every step and quantile (``flatliner=True``, see :mod:`.checks`);
        (3) half of the history the model reads must be valid; (4) :meth:`predict`
        and the calibrated quantiles.

        Args:
            history: as in :meth:`predict`.
            steps: as in :meth:`predict`.
            quantiles: levels in ``[0.01, 0.99]``, e.g. ``(0.1, 0.5, 0.9)``.
            exog: as in :meth:`predict`.

        Raises:
            NotCalibratedError: quantiles asked of a model without calibration.
            ValueError: a level out of range; and everything :meth:`predict` raises.
        """
        context = self.context
        levels = check_levels(quantiles)
        history, steps = self._check_predict(history, steps, check_length=False)
        check_valid_data(history, required=1)
        level = flat_level(history, context.step)
        index = future_index(history.index[-1], steps, context.step)
        if level is not None:
            values = pd.Series(np.full(steps, level), index=index, name=history.name)
            table = pd.DataFrame({q: values.to_numpy() for q in levels}, index=index)
            return Forecast(values, table, flatliner=True)
        self._check_length(history)
        check_completeness(history, window=self.required_history())
        values = self._predict_checked(history, steps, exog, index)  # predict() without checking the history again
        if not levels:
            return Forecast(values, pd.DataFrame(index=index))
        if self._calibration is None:
            raise NotCalibratedError(self.name)
        table = self._calibration.quantiles(values.to_numpy(), levels, hours=local_hours(index, context.timezone))
        if context.nonnegative:
            table = np.maximum(table, 0.0)
        return Forecast(values, pd.DataFrame(table, index=index, columns=levels))

    def required_history(self) -> int:
        """Samples of history ``predict`` needs (on the grid, gaps included).

        Before ``fit`` the step is unknown: algorithms that learn nothing else
        (seasonal naive) then answer for a 15-minute grid, which is an upper bound
        for any coarser grid; the others raise.

        Raises:
            NotFittedError: called before ``fit`` on an algorithm whose need depends on the fit.
        """
        if self._context is None:
            return self._required_history_unfitted()
        return self._required_history(self._context)

    def to_artifact(self) -> tuple[dict[str, bytes], dict[str, Any]]:
        """Serialise the fitted model.

        Returns:
            ``(files, params)``: file name -> bytes in the algorithm's native, non-pickle
            format (LightGBM text, XGBoost UBJ, skops, safetensors, JSON), and the
            JSON-able params :meth:`from_artifact` needs: ``algorithm``, ``context``
            (:class:`FitContext`), ``calibration`` and the algorithm's ``model`` params.

        Raises:
            NotFittedError: called before ``fit``.
        """
        context = self.context
        files, model_params = self._to_files()
        params = {
            "algorithm": self.name,
            "context": context.to_dict(),
            "calibration": self._calibration.to_dict() if self._calibration else None,
            "model": model_params,
            "feature_names": self.feature_names,
        }
        return files, params

    @classmethod
    def from_artifact(cls, files: dict[str, bytes], params: dict[str, Any]) -> Forecaster:
        """Rebuild a fitted forecaster from :meth:`to_artifact` output.

        Raises:
            ValueError: ``files`` and ``params`` do not describe a model of this class.
        """
        name = getattr(cls, "name", None)
        if name is None or params.get("algorithm") != name:
            raise ValueError(f"params describe {params.get('algorithm')!r}, not a {cls.__name__}")
        context = FitContext.from_dict(params["context"])
        forecaster = cls._from_files(files, dict(params.get("model") or {}), context)
        forecaster._context = context
        forecaster._calibration = Calibration.from_dict(params.get("calibration"))
        return forecaster

    # ------------------------------------------------------------ subclasses
    @abc.abstractmethod
    def _fit(self, y: pd.Series, context: FitContext, exog: pd.DataFrame | None) -> None:
        """Fit on ``y`` (on its full UTC grid; ``exog`` aligned to it); raise InsufficientHistoryError if too short."""

    @abc.abstractmethod
    def _predict(self, history: pd.Series, steps: int, exog: pd.DataFrame | None) -> np.ndarray:
        """Return ``steps`` finite values after ``history`` (full grid, >= required_history long).

        ``exog`` (when the model reads it) covers ``history`` and the ``steps`` future slots.
        """

    @abc.abstractmethod
    def _required_history(self, context: FitContext) -> int:
        """Samples of history needed to predict, for ``context``."""

    def _required_history_unfitted(self) -> int:
        """Samples of history needed before ``fit``; by default unknown."""
        raise NotFittedError(self.name)

    @abc.abstractmethod
    def _to_files(self) -> tuple[dict[str, bytes], dict[str, Any]]:
        """Native-format files and JSON-able model params (without the context)."""

    @classmethod
    @abc.abstractmethod
    def _from_files(cls, files: dict[str, bytes], params: dict[str, Any], context: FitContext) -> Forecaster:
        """Inverse of :meth:`_to_files`; raise ValueError on mismatched input."""

    # Hooks for ensembles: several component forecasts combined into one.
    def _components(self, history: pd.Series, steps: int, exog: pd.DataFrame | None) -> np.ndarray:
        """Component forecasts, shape ``(k, steps)``; one row (the prediction) by default."""
        return np.asarray(self._predict(history, steps, exog), dtype=float)[None, :]

    def _combine(self, components: np.ndarray) -> np.ndarray:
        """Point forecast from the components; the single row by default."""
        return components[0]

    def _learn_from_holdout(self, components: list[np.ndarray], actual: list[np.ndarray]) -> None:
        """Learn from the calibration holdout (ensembles: the skill weights); nothing by default."""

    # ----------------------------------------------------------------- helpers
    def _predict_checked(
        self, history: pd.Series, steps: int, exog: pd.DataFrame | None, index: pd.DatetimeIndex
    ) -> pd.Series:
        """:meth:`predict` on a history that passed :meth:`_check_predict`, indexed by ``index`` (the next ``steps`` stamps)."""
        aligned = self._exog_for(history, steps, exog)
        values = self._point(self._components(history, steps, aligned))
        return pd.Series(values, index=index, name=history.name)

    def _point(self, components: np.ndarray) -> np.ndarray:
        values = np.asarray(self._combine(components), dtype=float)
        if values.ndim != 1 or not np.isfinite(values).all():
            raise AssertionError(f"{self.name} produced {values.shape} values, not finite ones")
        return np.maximum(values, 0.0) if self.context.nonnegative else values

    def _check_predict(self, history: pd.Series, steps: int, *, check_length: bool = True) -> tuple[pd.Series, int]:
        context = self.context
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        if self.limited_horizon and steps > context.horizon_steps:
            raise ValueError(f"{self.name} was fitted for {context.horizon_steps} steps; {steps} asked")
        history = to_grid(as_utc_series(history), context.step)
        if check_length:
            self._check_length(history)
        return history, int(steps)

    def _check_length(self, history: pd.Series) -> None:
        required = self.required_history()
        if len(history) < required:
            raise InsufficientHistoryError(available=len(history), required=required, series=series_name(history))

    def _exog_for(self, history: pd.Series, steps: int, exog: pd.DataFrame | None) -> pd.DataFrame | None:
        columns = self.context.exog
        if not columns:
            return None
        index = history.index.append(future_index(history.index[-1], steps, self.context.step))
        return _align_exog(exog, index, columns)

    def _calibrate(
        self, fresh: Forecaster, y: pd.Series, context: FitContext, exog: pd.DataFrame | None
    ) -> Calibration | None:
        h = context.horizon_steps
        n, spacing = holdout_plan(h, samples_per_day(context.step))
        while True:
            cut = len(y) - (n - 1) * spacing - h
            try:
                if cut < 2 or int(y.iloc[:cut].notna().sum()) < 2:
                    raise InsufficientHistoryError(available=max(cut, 0), required=2, series=series_name(y))
                fresh._fit(y.iloc[:cut], context, None if exog is None else exog.iloc[:cut])
                fresh._context = context
                break
            except InsufficientHistoryError:
                if n < 8:
                    return None
                n //= 2
        components: list[np.ndarray] = []
        actual: list[np.ndarray] = []
        hours: list[np.ndarray] = []
        required = fresh.required_history()
        for i in range(n):
            origin = cut + i * spacing
            if origin < required:
                continue
            history = y.iloc[:origin]
            part = None if exog is None else exog.iloc[: origin + h]
            components.append(fresh._components(history, h, part))
            actual.append(y.iloc[origin : origin + h].to_numpy())
            hours.append(local_hours(y.index[origin : origin + h], context.timezone))
        if not components:
            return None
        self._learn_from_holdout(components, actual)
        predicted = np.concatenate([self._point(c) for c in components])
        return Calibration.from_residuals(predicted, np.concatenate(actual), np.concatenate(hours))


def local_hours(index: pd.DatetimeIndex, timezone: str) -> np.ndarray:
    """Local hour of day (0..23, int) of each UTC stamp of ``index`` in ``timezone``."""
    return np.asarray(pd.DatetimeIndex(index).tz_convert(timezone).hour, dtype=int)


def _align_exog(exog: pd.DataFrame | None, index: pd.DatetimeIndex, columns: tuple[str, ...]) -> pd.DataFrame:
    """Exogenous columns reindexed to ``index`` (``NaN`` where missing).

    Raises:
        MissingExogenousError: ``exog`` is ``None`` or lacks one of ``columns``.
        ValueError: ``exog`` has naive timestamps.
    """
    given = [] if exog is None else [str(c) for c in exog.columns]
    if exog is None or not set(columns) <= set(given):
        raise MissingExogenousError(list(columns), given)
    if not isinstance(exog.index, pd.DatetimeIndex) or exog.index.tz is None:
        raise ValueError("exogenous series need a tz-aware DatetimeIndex")
    frame = exog.copy()
    frame.columns = given
    frame.index = frame.index.tz_convert("UTC")
    frame = frame[~frame.index.duplicated(keep="last")].sort_index()
    return frame[list(columns)].astype(float).reindex(index)
