"""Feature construction for direct multi-step regression models.

One model predicts every step ``1..horizon_steps`` ahead of an origin, so every
lag used is at least ``horizon_steps``: the features of any target in the
horizon only need values known at the origin. Calendar features are computed
in the site's local time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import holidays
import numpy as np
import pandas as pd

from digitaltwin.forecasting.series import samples_per_day

#: Horizons at or below this many seconds get the recent lags and short rolling means.
SHORT_HORIZON_SECONDS = 3_600

CALENDAR_FEATURES = ("quarter_hour_of_day", "day_of_week", "is_weekend", "month")
HOLIDAY_FEATURE = "is_holiday"


@dataclass(frozen=True)
class FeaturePlan:
    """Which lag and rolling features a model uses.

    Attributes:
        horizon_steps: steps ahead the model predicts; the smallest lag allowed.
        lags: lags in steps, each >= ``horizon_steps``.
        mean_windows: rolling-mean window lengths (steps), windows ending at lag ``horizon_steps``.
        max_windows: rolling-max window lengths (steps), same alignment.
        holidays: whether the ``is_holiday`` feature is present.
        exog: exogenous columns (e.g. ``temperature``) used at the target's own time
            as ``exog_<name>``: a weather forecast, or the observation standing in for one.
    """

    horizon_steps: int
    lags: tuple[int, ...]
    mean_windows: tuple[int, ...]
    max_windows: tuple[int, ...]
    holidays: bool
    exog: tuple[str, ...] = ()

    @classmethod
    def for_horizon(
        cls, *, step: pd.Timedelta, horizon_steps: int, holidays: bool, exog: tuple[str, ...] = ()
    ) -> FeaturePlan:
        """Choose lags and windows for a resolution and horizon.

        With ``D`` steps per day and ``W = 7 D`` per week: lags ``D, 2D, 3D, W, 2W``
        (those >= ``horizon_steps``) plus ``horizon_steps`` itself, and rolling
        mean and max over the last day and week. For a horizon up to one hour the
        four most recent usable lags (``h .. h+3``; ``1..4`` for ``h = 1``) and rolling
        means over the last hour and four hours are added. For 15-min data and
        ``h = 96`` this gives lags 96, 192, 288, 672, 1344.

        Args:
            step: grid step of the series.
            horizon_steps: steps ahead (>= 1).
            holidays: include the public-holiday feature.
            exog: exogenous column names.
        """
        day = samples_per_day(step)
        week = 7 * day
        lags = {horizon_steps, day, 2 * day, 3 * day, week, 2 * week}
        mean_windows = {day, week}
        if horizon_steps * step.total_seconds() <= SHORT_HORIZON_SECONDS:
            lags.update(range(horizon_steps, horizon_steps + 4))
            hour = max(1, int(SHORT_HORIZON_SECONDS // step.total_seconds()))
            mean_windows.update(w for w in (hour, 4 * hour) if w > 1)
        usable = sorted(lag for lag in lags if lag >= horizon_steps)
        if len(usable) < 3:  # horizon beyond two weeks: whole weeks back from the horizon
            first = -(-horizon_steps // week) * week
            usable = sorted(set(usable) | {first, first + week})
        return cls(
            horizon_steps=horizon_steps,
            lags=tuple(usable),
            mean_windows=tuple(sorted(mean_windows)),
            max_windows=(day, week),
            holidays=holidays,
            exog=tuple(exog),
        )

    @property
    def feature_names(self) -> list[str]:
        """Column names of :func:`make_features`, in order."""
        names = [f"lag_{lag}" for lag in self.lags]
        names += [f"mean_{w}" for w in self.mean_windows] + [f"max_{w}" for w in self.max_windows]
        names += list(CALENDAR_FEATURES)
        if self.holidays:
            names.append(HOLIDAY_FEATURE)
        names += [f"exog_{c}" for c in self.exog]
        return names

    @property
    def required_history(self) -> int:
        """Samples before a target needed for all its lag and window features."""
        widest = max(self.mean_windows + self.max_windows)
        return max(max(self.lags), self.horizon_steps + widest - 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "horizon_steps": self.horizon_steps,
            "lags": list(self.lags),
            "mean_windows": list(self.mean_windows),
            "max_windows": list(self.max_windows),
            "holidays": self.holidays,
            "exog": list(self.exog),
        }

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> FeaturePlan:
        return cls(
            horizon_steps=int(params["horizon_steps"]),
            lags=tuple(int(v) for v in params["lags"]),
            mean_windows=tuple(int(v) for v in params["mean_windows"]),
            max_windows=tuple(int(v) for v in params["max_windows"]),
            holidays=bool(params["holidays"]),
            exog=tuple(str(c) for c in params.get("exog", ())),
        )


def make_features(
    y: pd.Series,
    plan: FeaturePlan,
    *,
    timezone: str,
    country: str | None,
    exog: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Build the feature table of every stamp of ``y``.

    Row ``t`` only uses values of ``y`` at ``t - horizon_steps`` or earlier, so
    ``y`` may end with up to ``horizon_steps`` ``NaN`` slots (the future) and the
    rows of those slots are valid inputs for prediction.

    Args:
        y: target on its full UTC grid (``NaN`` for gaps and future slots).
        plan: the features to build.
        timezone: IANA zone of the site, for calendar features.
        country: ISO country for ``is_holiday`` (needed when ``plan.holidays``).
        exog: the columns ``plan.exog`` indexed like ``y`` (needed when ``plan.exog``).

    Returns:
        DataFrame indexed like ``y`` with columns ``plan.feature_names`` (float;
        ``NaN`` where a lag or window reaches before the start of ``y``).

    Raises:
        ValueError: ``country`` unknown to the ``holidays`` package, or missing when required.
    """
    h = plan.horizon_steps
    columns: dict[str, np.ndarray] = {}
    for lag in plan.lags:
        columns[f"lag_{lag}"] = y.shift(lag).to_numpy()
    known = y.shift(h)
    for w in plan.mean_windows:
        columns[f"mean_{w}"] = known.rolling(w, min_periods=max(1, w // 2)).mean().to_numpy()
    for w in plan.max_windows:
        columns[f"max_{w}"] = known.rolling(w, min_periods=max(1, w // 2)).max().to_numpy()
    local = pd.DatetimeIndex(y.index).tz_convert(timezone)
    columns["quarter_hour_of_day"] = ((local.hour * 60 + local.minute) // 15).to_numpy(dtype=float)
    dow = local.day_of_week.to_numpy()
    columns["day_of_week"] = dow.astype(float)
    columns["is_weekend"] = (dow >= 5).astype(float)
    columns["month"] = local.month.to_numpy(dtype=float)
    if plan.holidays:
        columns[HOLIDAY_FEATURE] = holiday_flags(local, country)
    for name in plan.exog:
        if exog is None or name not in exog.columns:
            raise ValueError(f"exogenous column {name!r} is missing")
        columns[f"exog_{name}"] = exog[name].to_numpy(dtype=float)
    return pd.DataFrame(columns, index=y.index)[plan.feature_names]


def holiday_flags(local: pd.DatetimeIndex, country: str | None) -> np.ndarray:
    """1.0 where the local date is a public holiday of ``country``, else 0.0.

    Args:
        local: timestamps in the site's zone.
        country: ISO code understood by ``holidays.country_holidays``.

    Raises:
        ValueError: ``country`` is ``None`` or unknown to ``holidays``.
    """
    if country is None:
        raise ValueError("a country is needed for the is_holiday feature")
    if len(local) == 0:
        return np.zeros(0)
    years = range(int(local.year.min()), int(local.year.max()) + 1)
    try:
        calendar = holidays.country_holidays(country, years=years)
    except NotImplementedError as exc:
        raise ValueError(f"country {country!r} is unknown to the holidays package") from exc
    days = pd.DatetimeIndex(sorted(pd.Timestamp(d) for d in calendar))
    return local.tz_localize(None).normalize().isin(days).astype(float)
