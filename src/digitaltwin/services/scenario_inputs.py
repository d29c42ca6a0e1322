"""Inputs of a what-if scenario: plan prices from a tariff, weather for added PV, forecasts as available.

* :func:`plan_prices`: per-interval import and export prices and the monthly demand rate a
  battery plan is priced with, derived from the tariff the scenario is billed under. Energy
  prices are those of :func:`~digitaltwin.accounting.cost.interval_costs` (each interval's
  time-of-use first tier or the dynamic price plus markup; the export credit of the tier or the
  feed-in price, nothing without an export rule). The demand rate is a simplification: the
  first tier of the flat (monthly) demand charge of the month plus the highest first-tier rate
  of the time-of-use demand periods, applied to the plan's all-hours peak. Tiers, ratchets,
  coincident windows, fixed and minimum charges and taxes are left to the bill itself, which
  prices the realised result exactly.
* :func:`weather_on_grid`: a weather asset's ``irradiance`` (GHI, W/m2) and ``temperature``
  (degC) series on the intervals of the replay.
* :func:`backtest_forecast`: the load forecasts that were available at each local midnight
  (trained only on data before it), from :func:`~digitaltwin.forecasting.backtest.backtest`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from digitaltwin.accounting.bill import MeterIntervals
from digitaltwin.accounting.cost import interval_costs
from digitaltwin.accounting.tariff import Tariff
from digitaltwin.domain.errors import NotFoundError, ValidationError
from digitaltwin.forecasting.errors import ForecastError
from digitaltwin.storage.repository import Repository

#: Quantities a weather asset must carry for added PV.
IRRADIANCE, TEMPERATURE = "irradiance", "temperature"
#: Longest a weather reading holds (its declared interval, else the series' median spacing, at most this).
MAX_HOLD_S = 3 * 3600


@dataclass(frozen=True, slots=True)
class PlanPrices:
    """Prices of a battery plan per interval (currency per kWh) and the demand rate per local month (per kW)."""

    import_price: np.ndarray
    export_price: np.ndarray
    demand_rate_by_month: dict[int, float]  # key: local year * 12 + month - 1


def plan_prices(tariff: Tariff, start_s: np.ndarray, interval_s: int, tz: ZoneInfo, dynamic_price: np.ndarray | None) -> PlanPrices:
    """Import/export price per interval and the monthly demand rate of ``tariff`` (see the module docstring).

    Args:
        start_s: interval starts (epoch seconds), shape ``(n,)``.
        dynamic_price: the tariff's dynamic price per interval (None for time-of-use tariffs).
    """
    ones, zeros = np.ones(start_s.size), np.zeros(start_s.size)
    buy = interval_costs(tariff, MeterIntervals(start_s, ones, zeros, interval_s, dynamic_price), tz)
    sell = -interval_costs(tariff, MeterIntervals(start_s, zeros, ones, interval_s, dynamic_price), tz)
    local = pd.to_datetime(start_s, unit="s", utc=True).tz_convert(tz)
    months = np.unique(np.asarray(local.year * 12 + local.month - 1))
    tou = max((p.tiers[0].rate for p in tariff.tou_demand.periods if p.tiers), default=0.0) if tariff.tou_demand else 0.0
    rates: dict[int, float] = {}
    for key in months.tolist():
        flat = 0.0
        if tariff.flat_demand_periods and tariff.flat_demand_months is not None:
            period = tariff.flat_demand_periods[tariff.flat_demand_months[key % 12]]
            flat = period.tiers[0].rate if period.tiers else 0.0
        rates[int(key)] = float(flat + tou)
    # A missing dynamic price would leave the plan without a price: plan those intervals at the period mean.
    for arr in (buy, sell):
        if not np.isfinite(arr).all():
            arr[~np.isfinite(arr)] = float(np.nanmean(arr)) if np.isfinite(arr).any() else 0.0
    return PlanPrices(buy, sell, rates)


def weather_on_grid(repo: Repository, asset_id: str, starts: pd.DatetimeIndex, step_s: int) -> tuple[np.ndarray, np.ndarray]:
    """GHI (W/m2) and air temperature (degC) of weather asset ``asset_id`` on the interval starts ``starts``.

    Each reading holds over its own interval (the series' declared interval, else its median
    spacing, at most three hours); readings finer than the step are averaged over it. NaN where nothing covers an interval.

    Raises:
        NotFoundError: unknown asset (naming ``pv.weather_asset_id``).
        ValidationError: naming ``pv.weather_asset_id`` when the asset lacks either series.
    """
    try:
        repo.get_asset(asset_id)
    except NotFoundError as exc:
        raise NotFoundError(exc.message, field="pv.weather_asset_id") from exc
    out = []
    start, end = starts[0].to_pydatetime(), (starts[-1] + pd.Timedelta(seconds=step_s)).to_pydatetime()
    for quantity in (IRRADIANCE, TEMPERATURE):
        info = repo.find_series(asset_id, quantity)
        if info is None:
            raise ValidationError(f"weather asset {asset_id!r} has no {quantity} series", field="pv.weather_asset_id")
        ts, values = repo.series_arrays(info.id, start=start - pd.Timedelta(seconds=MAX_HOLD_S).to_pytimedelta(), end=end)
        if ts.size == 0:
            out.append(np.full(starts.size, np.nan))
            continue
        spacing = float(np.median(np.diff(ts))) if ts.size > 1 else step_s
        hold_s = int(min(max(info.interval_seconds or spacing, step_s), MAX_HOLD_S))
        series = pd.Series(values, index=pd.to_datetime(ts, unit="s", utc=True))
        binned = series.groupby(series.index.floor(f"{step_s}s")).mean()
        grid = binned.reindex(starts.union(binned.index))
        if hold_s > step_s:  # an hourly reading holds over the quarter hours of its hour
            grid = grid.ffill(limit=hold_s // step_s - 1)
        grid = grid.reindex(starts)
        out.append(grid.to_numpy(dtype=float))
    return out[0], out[1]


@dataclass(frozen=True)
class DayForecasts:
    """Expected and upper-quantile load (kW) per interval from the daily forecasts, NaN where none was made."""

    expected: pd.Series
    upper: pd.Series
    days_without_forecast: int


def backtest_forecast(
    load_kw: pd.Series, *, algorithm: str, timezone: str, country: str | None, first_day: date, last_day: date,
    quantile: float = 0.9, retrain_every_days: int = 7,
) -> DayForecasts:
    """The day-ahead forecast issued at every local midnight from ``first_day`` to ``last_day``, each trained only
    on ``load_kw`` before it (refit every ``retrain_every_days`` days, the fitted model predicting from the
    latest history in between).

    A day whose forecast could not be made (too little history before it) is filled with the previous
    day's actual load (a persistence forecast) and counted in ``days_without_forecast``.

    Raises:
        ValidationError: naming ``forecast_algorithm`` for an unknown algorithm.
    """
    from digitaltwin.forecasting.backtest import backtest, daily_origins, quantile_column

    step = int((load_kw.index[1] - load_kw.index[0]).total_seconds())
    per_day = 86400 // step
    origins = daily_origins(load_kw, timezone=timezone, start=first_day, end=last_day)
    level = round(float(quantile), 3)
    try:
        result = backtest(load_kw, algorithms=[algorithm], origins=origins, horizon_steps=per_day + per_day // 24,
                          timezone=timezone, country=country, retrain_every=retrain_every_days, levels=(0.5, level))
    except (ForecastError, ValueError) as exc:
        raise ValidationError(str(exc), field="battery.forecast_algorithm") from exc
    expected = pd.Series(np.nan, index=load_kw.index)
    upper = pd.Series(np.nan, index=load_kw.index)
    table = result.forecasts
    if len(table):
        # keep, for each interval, the forecast of the latest origin at or before it (its own day's)
        table = table.sort_values(["ts", "origin"]).drop_duplicates("ts", keep="last")
        ts = pd.DatetimeIndex(table["ts"])
        keep = ts.isin(load_kw.index)
        expected.loc[ts[keep]] = table["predicted"].to_numpy(dtype=float)[keep]
        upper.loc[ts[keep]] = table[quantile_column(level)].to_numpy(dtype=float)[keep]
    persistence = load_kw.shift(per_day)
    local_day = load_kw.index.tz_convert(timezone).normalize()
    missing_days = 0
    for day in pd.unique(local_day[(local_day.date >= first_day) & (local_day.date <= last_day)]):
        rows = local_day == day
        if not np.isfinite(expected[rows].to_numpy()).any():
            missing_days += 1
            expected[rows] = persistence[rows]
    return DayForecasts(expected, upper, missing_days)


def as_utc_index(start_s: np.ndarray) -> pd.DatetimeIndex:
    """Epoch seconds as a UTC DatetimeIndex."""
    return pd.DatetimeIndex(pd.to_datetime(start_s, unit="s", utc=True))


def local_months(start_s: np.ndarray, tz: ZoneInfo) -> np.ndarray:
    """Local month key (year * 12 + month - 1) of each interval start."""
    local = pd.to_datetime(start_s, unit="s", utc=True).tz_convert(tz)
    return np.asarray(local.year * 12 + local.month - 1)

