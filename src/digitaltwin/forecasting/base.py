"""The :class:`Forecaster` interface shared by every algorithm.

A forecaster is fitted once on a target series (see :mod:`.series` for the
contract) and then predicts the next ``steps`` intervals after any later
history. Subclasses implement ``_fit``, ``_predict``, ``_required_history`` and
the artifact pair; the public methods here do the checking common to all.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from digitaltwin.forecasting.errors import InsufficientHistoryError, NotFittedError
from digitaltwin.forecasting.series import (
    as_utc_series,
    check_timezone,
    future_index,
    infer_step,
    series_name,
    to_grid,
)


@dataclass(frozen=True)
class FitContext:
    """What a forecaster was fitted for; part of every artifact's params.

    Attributes:
        step_seconds: grid step of the target series, in seconds.
        horizon_steps: number of steps the forecaster was fitted to predict.
        timezone: IANA zone of the site (calendar features, local days).
        country: ISO country code for public holidays, or ``None``.
    """

    step_seconds: int
    horizon_steps: int
    timezone: str
    country: str | None

    @property
    def step(self) -> pd.Timedelta:
        return pd.Timedelta(seconds=self.step_seconds)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> FitContext:
        return cls(
            step_seconds=int(params["step_seconds"]),
            horizon_steps=int(params["horizon_steps"]),
            timezone=check_timezone(str(params["timezone"])),
            country=None if params.get("country") is None else str(params["country"]),
        )


class Forecaster(abc.ABC):
    """A fitted model that predicts the next intervals of a target series.

    Class attributes:
        name: registry name of the algorithm (``"lightgbm"`` ...).
        artifact_filename: file name the registry stores :meth:`to_artifact` bytes under.
        limited_horizon: ``True`` when ``predict`` cannot go beyond the fitted horizon.
    """

    name: ClassVar[str]
    artifact_filename: ClassVar[str]
    limited_horizon: ClassVar[bool] = False

    def __init__(self) -> None:
        self._context: FitContext | None = None

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

    def fit(self, y: pd.Series, *, horizon_steps: int, timezone: str, country: str | None = None) -> None:
        """Fit on a target series.

        Args:
            y: target, float values (kWh per interval or kW) on a tz-aware UTC
                ``DatetimeIndex`` of interval starts on a regular grid; ``NaN`` marks gaps.
                The step is the median difference of the index.
            horizon_steps: number of steps ahead the forecaster must predict (>= 1).
            timezone: IANA zone of the site, e.g. ``"Asia/Seoul"``.
            country: ISO code understood by ``holidays.country_holidays``, or ``None``.

        Raises:
            InsufficientHistoryError: ``y`` is too short for this algorithm.
            ValueError: bad horizon, unknown timezone, irregular or naive index.
        """
        if isinstance(horizon_steps, bool) or not isinstance(horizon_steps, (int, np.integer)) or horizon_steps < 1:
            raise ValueError(f"horizon_steps must be an integer >= 1, got {horizon_steps!r}")
        y = as_utc_series(y)
        if len(y) < 2:
            raise InsufficientHistoryError(available=len(y), required=2, series=series_name(y))
        step = infer_step(y.index)
        context = FitContext(
            step_seconds=int(step.total_seconds()),
            horizon_steps=int(horizon_steps),
            timezone=check_timezone(timezone),
            country=country,
        )
        self._fit(to_grid(y, step), context)
        self._context = context

    def predict(self, history: pd.Series, *, steps: int) -> pd.Series:
        """Predict the ``steps`` intervals following the last stamp of ``history``.

        Args:
            history: recent target values, same contract and step as in ``fit``.
                It must span at least :meth:`required_history` steps.
            steps: number of intervals to predict (>= 1).

        Returns:
            ``steps`` finite floats (same unit as the target) indexed by the next
            ``steps`` interval starts (UTC) after ``history.index[-1]``.

        Raises:
            NotFittedError: called before ``fit``.
            InsufficientHistoryError: ``history`` spans fewer than :meth:`required_history` steps.
            ValueError: ``steps`` < 1, ``steps`` beyond the fitted horizon (for
                algorithms with ``limited_horizon``), or a history off the fitted grid.
        """
        context = self.context
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        if self.limited_horizon and steps > context.horizon_steps:
            raise ValueError(f"{self.name} was fitted for {context.horizon_steps} steps; {steps} asked")
        history = to_grid(as_utc_series(history), context.step)
        required = self.required_history()
        if len(history) < required:
            raise InsufficientHistoryError(available=len(history), required=required, series=series_name(history))
        values = np.asarray(self._predict(history, int(steps)), dtype=float)
        if values.shape != (steps,) or not np.isfinite(values).all():
            raise AssertionError(f"{self.name} produced {values.shape} values, not {steps} finite ones")
        index = future_index(history.index[-1], int(steps), context.step)
        return pd.Series(values, index=index, name=history.name)

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

    # ------------------------------------------------------------ subclasses
    @abc.abstractmethod
    def _fit(self, y: pd.Series, context: FitContext) -> None:
        """Fit on ``y`` (already on its full UTC grid); raise InsufficientHistoryError if too short."""

    @abc.abstractmethod
    def _predict(self, history: pd.Series, steps: int) -> np.ndarray:
        """Return ``steps`` finite values after ``history`` (on its full grid, >= required_history long)."""

    @abc.abstractmethod
    def _required_history(self, context: FitContext) -> int:
        """Samples of history needed to predict, for ``context``."""

    def _required_history_unfitted(self) -> int:
        """Samples of history needed before ``fit``; by default unknown."""
        raise NotFittedError(self.name)

    @abc.abstractmethod
    def to_artifact(self) -> tuple[bytes, dict[str, Any]]:
        """Serialise the fitted model.

        Returns:
            ``(data, params)``: model bytes in the algorithm's native, non-pickle
            format (see ``artifact_filename``) and JSON-able parameters that
            :meth:`from_artifact` needs, including the :class:`FitContext` fields.

        Raises:
            NotFittedError: called before ``fit``.
        """

    @classmethod
    @abc.abstractmethod
    def from_artifact(cls, data: bytes, params: dict[str, Any]) -> Forecaster:
        """Rebuild a fitted forecaster from :meth:`to_artifact` output.

        Raises:
            ValueError: ``data`` and ``params`` do not describe a model of this class.
        """
