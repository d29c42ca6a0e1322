"""Feature construction for direct multi-step regression models.

One model predicts every step ``1..horizon_steps`` ahead of an origin, so every
lag used is at least ``horizon_steps``: the features of any target in the
horizon only need values known at the origin. Calendar features are computed
in the site's local time. Exogenous series (weather) are read at the target's
own time, as a forecast of them would be, and one day back.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
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
#: Days of same-time-of-day values summarised by the profile features (one of each weekday).
PROFILE_DAYS = 7
PROFILE_FEATURES = ("profile_mean", "profile_median", "profile_daytype_mean")
HOUR_OF_WEEK_FEATURE = "hour_of_week"
_NS_PER_DAY = 86_400 * 10**9


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
        profile_lags: lags (whole days, each >= ``horizon_steps``) of the same-time-of-day
            values summarised by ``profile_mean``, ``profile_median`` (robust to an outage day)
            and ``profile_daytype_mean`` (only days of the target's type: working day, or
            weekend/holiday); empty in plans saved before these features existed.
        hour_of_week: whether the local ``hour_of_week`` (0..167) feature is present.
        exog_window: when > 0, each exogenous column also gives ``exog_<name>_lag_<w>``
            (``w`` steps earlier), ``exog_<name>_diff_<w>`` (change since then) and
            ``exog_<name>_mean_<w>`` (mean of the ``w`` steps up to the target): heating and
            cooling respond to the last day's weather, not only the current hour's.
    """

    horizon_steps: int
    lags: tuple[int, ...]
    mean_windows: tuple[int, ...]
    max_windows: tuple[int, ...]
    holidays: bool
    exog: tuple[str, ...] = ()
    profile_lags: tuple[int, ...] = ()
    hour_of_week: bool = False
    exog_window: int = 0

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
        ``h = 96`` this gives lags 96, 192, 288, 672, 1344. The profile features summarise
        the :data:`PROFILE_DAYS` most recent whole-day lags >= ``h``, and exogenous columns
        get their one-day lag, change and trailing mean (``exog_window = D``).

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
        first_day = -(-horizon_steps // day)
        return cls(
            horizon_steps=horizon_steps,
            lags=tuple(usable),
            mean_windows=tuple(sorted(mean_windows)),
            max_windows=(day, week),
            holidays=holidays,
            exog=tuple(exog),
            profile_lags=tuple((first_day + k) * day for k in range(PROFILE_DAYS)),
            hour_of_week=True,
            exog_window=day if exog else 0,
        )

    @property
    def feature_names(self) -> list[str]:
        """Column names of :func:`make_features`, in order."""
        names = [f"lag_{lag}" for lag in self.lags]
        names += [f"mean_{w}" for w in self.mean_windows] + [f"max_{w}" for w in self.max_windows]
        if self.profile_lags:
            names += list(PROFILE_FEATURES)
        names += list(CALENDAR_FEATURES)
        if self.hour_of_week:
            names.append(HOUR_OF_WEEK_FEATURE)
        if self.holidays:
            names.append(HOLIDAY_FEATURE)
        names += [f"exog_{c}" for c in self.exog]
        if self.exog_window:
            w = self.exog_window
            names += [f"exog_{c}_{kind}_{w}" for c in self.exog for kind in ("lag", "diff", "mean")]
        return names

    @property
    def required_history(self) -> int:
        """Samples before a target needed for all its lag and window features."""
        widest = max(self.mean_windows + self.max_windows)
        return max(max(self.lags + self.profile_lags), self.horizon_steps + widest - 1, self.exog_window)

    def to_dict(self) -> dict[str, Any]:
        return {
            "horizon_steps": self.horizon_steps,
            "lags": list(self.lags),
            "mean_windows": list(self.mean_windows),
            "max_windows": list(self.max_windows),
            "holidays": self.holidays,
            "exog": list(self.exog),
            "profile_lags": list(self.profile_lags),
            "hour_of_week": self.hour_of_week,
            "exog_window": self.exog_window,
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
            profile_lags=tuple(int(v) for v in params.get("profile_lags", ())),
            hour_of_week=bool(params.get("hour_of_week", False)),
            exog_window=int(params.get("exog_window", 0)),
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
    if plan.hour_of_week:
        columns[HOUR_OF_WEEK_FEATURE] = (dow * 24 + local.hour.to_numpy()).astype(float)
    if plan.holidays:
        columns[HOLIDAY_FEATURE] = holiday_flags(local, country)
    if plan.profile_lags:
        off = dow >= 5
        if plan.holidays:
            off = off | (columns[HOLIDAY_FEATURE] > 0)
        columns.update(_profile(y.to_numpy(dtype=float), plan.profile_lags, off))
    for name in plan.exog:
        if exog is None or name not in exog.columns:
            raise ValueError(f"exogenous column {name!r} is missing")
        values = exog[name].astype(float)
        columns[f"exog_{name}"] = values.to_numpy()
        if plan.exog_window:
            w = plan.exog_window
            earlier = values.shift(w).to_numpy()
            columns[f"exog_{name}_lag_{w}"] = earlier
            columns[f"exog_{name}_diff_{w}"] = values.to_numpy() - earlier
            columns[f"exog_{name}_mean_{w}"] = values.rolling(w, min_periods=max(1, w // 2)).mean().to_numpy()
    return pd.DataFrame(columns, index=y.index)[plan.feature_names]


def make_features_tail(
    y: np.ndarray,
    plan: FeaturePlan,
    *,
    start: pd.Timestamp,
    step: pd.Timedelta,
    rows: int,
    timezone: str,
    country: str | None,
    exog: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """The last ``rows`` rows of :func:`make_features`, computed for those rows only (the prediction path).

    Gives the same values as ``make_features(series, ...).to_numpy()[-rows:]`` for the series
    of ``y`` on the grid ``start + k * step`` (checked by ``tests/unit/test_forecasting_features_tail.py``):
    lags, rolling maxima, the profile and the calendar are read or computed for the ``rows``
    rows (and, for the profile's day type, the stamps its lags reach) straight from the
    arrays, without a DataFrame over the whole window. The rolling means (of the target and
    of exogenous columns) still run pandas' rolling mean over the whole of ``y``: its running
    compensated sum depends on where the window starts, so only the same call gives the same bits.

    Args:
        y: target on its regular UTC grid, shape ``(n,)`` (``NaN`` for gaps and future slots).
        plan: the features to build.
        start: UTC stamp of ``y[0]``.
        step: grid step.
        rows: rows wanted, the last ``rows`` of ``y`` (``1 <= rows <= n``).
        timezone: IANA zone of the site, for calendar features.
        country: ISO country for ``is_holiday`` (needed when ``plan.holidays``).
        exog: column name -> values aligned with ``y``, shape ``(n,)`` (needed when ``plan.exog``).

    Returns:
        Float array of shape ``(rows, len(plan.feature_names))``, columns in that order
        (``NaN`` where a lag or window reaches before ``y[0]``).

    Raises:
        ValueError: ``rows`` out of range, an exogenous column missing, or ``country`` unknown
            to the ``holidays`` package or missing when required.
    """
    y = np.asarray(y, dtype=float)
    n = y.size
    if not 1 <= rows <= n:
        raise ValueError(f"rows must be in [1, {n}], got {rows}")
    h = plan.horizon_steps
    first = n - rows  # position of the first wanted row in y
    columns: dict[str, np.ndarray] = {}
    for lag in plan.lags:
        columns[f"lag_{lag}"] = _at(y, np.arange(first - lag, n - lag))
    if plan.mean_windows:
        known = pd.Series(_at(y, np.arange(-h, n - h)))  # y.shift(h)
        for w in plan.mean_windows:
            columns[f"mean_{w}"] = known.rolling(w, min_periods=max(1, w // 2)).mean().to_numpy()[first:]
    for w in plan.max_windows:
        columns[f"max_{w}"] = _window_max(y, first - h, n - h, w, max(1, w // 2))
    # One conversion to local wall-clock time for every stamp needed: the rows, the stamps the
    # profile lags reach (their day type), and the frame's ends (the years of the holiday calendar).
    positions = [np.arange(first, n), np.array([0, n - 1])]
    back = np.arange(first, n)[None, :] - np.asarray(plan.profile_lags, dtype=np.int64)[:, None]  # (lags, rows)
    if plan.profile_lags:
        positions.append(back.ravel())
    stamps = int(pd.Timestamp(start).value) + int(pd.Timedelta(step).value) * np.concatenate(positions)
    all_days, all_seconds = _local_days_and_seconds(stamps, timezone)
    days, seconds = all_days[:rows], all_seconds[:rows]
    hour = seconds // 3600
    dow = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0 as in pandas
    columns["quarter_hour_of_day"] = ((hour * 60 + (seconds % 3600) // 60) // 15).astype(float)
    columns["day_of_week"] = dow.astype(float)
    columns["is_weekend"] = (dow >= 5).astype(float)
    columns["month"] = (days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12 + 1).astype(float)
    if plan.hour_of_week:
        columns[HOUR_OF_WEEK_FEATURE] = (dow * 24 + hour).astype(float)
    if plan.holidays:
        if country is None:
            raise ValueError("a country is needed for the is_holiday feature")
        years = all_days[rows : rows + 2].astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
        holiday = np.isin(all_days, _holiday_day_numbers(country, int(years[0]), int(years[1])))
        columns[HOLIDAY_FEATURE] = holiday[:rows].astype(float)
    if plan.profile_lags:
        off = dow >= 5
        back_days = all_days[rows + 2 :].reshape(back.shape)
        back_off = (back_days + 3) % 7 >= 5
        if plan.holidays:
            off = off | holiday[:rows]
            back_off = back_off | holiday[rows + 2 :].reshape(back.shape)
        same = np.where(back >= 0, back_off == off[None, :], False)
        columns.update(_profile_summary(_at(y, back), same, median=nanmedian_columns))
    for name in plan.exog:
        if exog is None or name not in exog:
            raise ValueError(f"exogenous column {name!r} is missing")
        values = np.asarray(exog[name], dtype=float)
        columns[f"exog_{name}"] = values[first:]
        if plan.exog_window:
            w = plan.exog_window
            earlier = _at(values, np.arange(first - w, n - w))
            columns[f"exog_{name}_lag_{w}"] = earlier
            columns[f"exog_{name}_diff_{w}"] = values[first:] - earlier
            trailing = pd.Series(values).rolling(w, min_periods=max(1, w // 2)).mean().to_numpy()
            columns[f"exog_{name}_mean_{w}"] = trailing[first:]
    return np.column_stack([columns[name] for name in plan.feature_names])


def _at(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``values[positions]`` with ``NaN`` where a position is negative (before the series)."""
    out = values[np.maximum(positions, 0)]
    return np.where(positions >= 0, out, np.nan)


def _window_max(values: np.ndarray, first: int, stop: int, width: int, min_periods: int) -> np.ndarray:
    """Max of ``values[i - width + 1 : i + 1]`` for ``i`` in ``[first, stop)``, NaN-skipping.

    As pandas' ``rolling(width, min_periods).max()`` (a maximum is exact, so any order gives
    the same value): ``NaN`` where the window holds fewer than ``min_periods`` values or
    ``i < 0``; a window reaching before the series is cut at its start.
    """
    pad = max(0, width - 1 - first)
    padded = np.concatenate((np.full(pad, np.nan), values[max(0, first - width + 1) : max(0, stop)]))
    windows = np.lib.stride_tricks.sliding_window_view(padded, width)[: stop - first]
    valid = np.count_nonzero(~np.isnan(windows), axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        peak = np.fmax.reduce(windows, axis=1)
    return np.where(valid >= min_periods, peak, np.nan)


def _local_days_and_seconds(stamps_ns: np.ndarray, timezone: str) -> tuple[np.ndarray, np.ndarray]:
    """Local day number (days since 1970-01-01) and second of the local day of UTC stamps (epoch ns) in ``timezone``.

    The wall-clock time is pandas' ``tz_convert`` (the conversion :func:`make_features` makes);
    day, hour, minute, weekday and month follow from it in integers.
    """
    wall = pd.DatetimeIndex(stamps_ns, tz="UTC").tz_convert(timezone).tz_localize(None).asi8
    days = wall // _NS_PER_DAY
    return days, (wall - days * _NS_PER_DAY) // 10**9


@functools.lru_cache(maxsize=64)
def _holiday_day_numbers(country: str, first_year: int, last_year: int) -> np.ndarray:
    """:func:`_holiday_days` as day numbers since 1970-01-01 (int64, read-only)."""
    out = _holiday_days(country, first_year, last_year).to_numpy().astype("datetime64[D]").astype(np.int64)
    out.setflags(write=False)
    return out


def _profile(values: np.ndarray, lags: tuple[int, ...], off: np.ndarray) -> dict[str, np.ndarray]:
    """Mean, median and same-day-type mean of ``values`` at ``lags`` steps back (NaN-aware).

    Args:
        values: target on its grid, shape ``(n,)``.
        lags: whole-day lags in steps.
        off: ``(n,)`` booleans, ``True`` on weekends and holidays (the day type).

    Returns:
        The :data:`PROFILE_FEATURES` columns, each ``(n,)``; ``NaN`` where no lagged value exists.
    """
    n = values.size
    past = np.full((len(lags), n), np.nan)
    same = np.zeros((len(lags), n), dtype=bool)
    for i, lag in enumerate(lags):
        if lag < n:
            past[i, lag:] = values[:-lag]
            same[i, lag:] = off[:-lag] == off[lag:]
    return _profile_summary(past, same)


def _profile_summary(
    past: np.ndarray, same: np.ndarray, *, median: Callable[..., np.ndarray] = np.nanmedian
) -> dict[str, np.ndarray]:
    """The :data:`PROFILE_FEATURES` of lagged values ``past`` ``(lags, n)`` and their day-type match ``same``.

    ``median`` is called as ``median(past, axis=0)``: :func:`numpy.nanmedian`, or
    :func:`nanmedian_columns` (the same values, faster on a few columns).
    """
    typed = np.where(same, past, np.nan)
    with warnings.catch_warnings():  # all-NaN columns (start of the series, gaps) give NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return {
            "profile_mean": np.nanmean(past, axis=0),
            "profile_median": median(past, axis=0),
            "profile_daytype_mean": np.nanmean(typed, axis=0),
        }


def nanmedian_columns(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """:func:`numpy.nanmedian` down the columns of a 2-D array, bit for bit, without its masked-array detour.

    NumPy's median of ``k`` valid values is ``(low + high) / 2`` of the middle two of the
    sorted values (the middle one twice when ``k`` is odd; ``numpy.ma.median``), which is
    what is computed here; ``NaN`` where a column holds no valid value.

    Args:
        values: shape ``(k, n)``.
        axis: must be 0 (the signature of :func:`numpy.nanmedian`).

    Returns:
        Shape ``(n,)``.
    """
    if axis != 0 or values.ndim != 2:
        raise ValueError("nanmedian_columns reduces the first axis of a 2-D array")
    if values.shape[0] == 0:
        return np.full(values.shape[1], np.nan)
    ordered = np.sort(values, axis=0)  # NaN sort last
    count = np.count_nonzero(~np.isnan(values), axis=0)
    high = count // 2
    low = np.where(count % 2 == 1, high, high - 1)
    columns = np.arange(values.shape[1])
    last = values.shape[0] - 1
    middle = (ordered[np.clip(low, 0, last), columns] + ordered[np.clip(high, 0, last), columns]) / 2
    return np.where(count > 0, middle, np.nan)


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
    days = _holiday_days(country, int(local.year.min()), int(local.year.max()))
    return local.tz_localize(None).normalize().isin(days).astype(float)


@functools.lru_cache(maxsize=64)
def _holiday_days(country: str, first_year: int, last_year: int) -> pd.DatetimeIndex:
    """Sorted dates of ``country``'s public holidays from ``first_year`` to ``last_year``.

    Cached (read-only index): the calendar of a country and years is fixed by the installed
    ``holidays`` package, and building it takes longer than a served prediction's features.
    """
    try:
        calendar = holidays.country_holidays(country, years=range(first_year, last_year + 1))
    except NotImplementedError as exc:
        raise ValueError(f"country {country!r} is unknown to the holidays package") from exc
    return pd.DatetimeIndex(sorted(pd.Timestamp(d) for d in calendar))
