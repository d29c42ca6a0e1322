"""Rolling-origin backtests: train on the past of each origin, score the next horizon."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from digitaltwin.forecasting.algorithms import canonical_name, make_forecaster
from digitaltwin.forecasting.base import Forecaster, check_levels
from digitaltwin.forecasting.errors import InsufficientHistoryError
from digitaltwin.forecasting.metrics import (
    coverage,
    cv_rmse,
    mae,
    mape,
    mase,
    nmbe,
    peak_error,
    pinball,
    rmse,
    seasonal_scale,
)
from digitaltwin.forecasting.series import as_utc_series, check_timezone, infer_step, samples_per_day, to_grid

FORECAST_COLUMNS = ["origin", "ts", "algorithm", "actual", "predicted"]
METRIC_COLUMNS = ["mae", "rmse", "cv_rmse", "nmbe", "mape", "mase", "pinball", "coverage_80", "peak_error", "n"]
#: Quantile levels of every backtest (the 80 % interval is 0.1 to 0.9).
DEFAULT_LEVELS = (0.1, 0.5, 0.9)


def quantile_column(level: float) -> str:
    """Column of the forecasts table holding the quantile ``level`` (``0.1`` -> ``"q0.1"``)."""
    return f"q{level:g}"


@dataclass
class BacktestResult:
    """Outcome of :func:`backtest`.

    Attributes:
        forecasts: one row per (origin, ts, algorithm) with columns ``origin``,
            ``ts`` (interval start, UTC), ``algorithm``, ``actual``, ``predicted`` and one
            ``q<level>`` column per quantile level (unit of the target; ``actual`` is ``NaN``
            past the data, a quantile is ``NaN`` when the model had no calibration).
        metrics: indexed by algorithm, columns of :data:`METRIC_COLUMNS`, pooled over all
            kept origins: ``mae``, ``rmse``, ``peak_error``, ``pinball`` in the target unit;
            ``cv_rmse``, ``nmbe``, ``mape``, ``coverage_80`` as fractions; ``mase`` unitless;
            ``n`` scored pairs (see :mod:`.metrics`).
        levels: the quantile levels.
        skipped_origins: origins left out for every algorithm because at least one
            lacked history; ``skip_reasons`` gives the reason per origin.
    """

    forecasts: pd.DataFrame
    metrics: pd.DataFrame
    levels: list[float] = field(default_factory=lambda: list(DEFAULT_LEVELS))
    skipped_origins: list[pd.Timestamp] = field(default_factory=list)
    skip_reasons: dict[pd.Timestamp, str] = field(default_factory=dict)


def backtest(
    y: pd.Series,
    *,
    algorithms: list[str],
    origins: list[pd.Timestamp],
    horizon_steps: int,
    timezone: str,
    country: str | None = None,
    retrain_every: int = 1,
    min_train_samples: int | None = None,
    exog: pd.DataFrame | None = None,
    levels: Sequence[float] = DEFAULT_LEVELS,
    checkpoint: Callable[[float], None] | None = None,
) -> BacktestResult:
    """Rolling-origin evaluation of several algorithms on one target series.

    For each origin (in time order) every algorithm is trained only on ``y``
    strictly before the origin, retrained every ``retrain_every`` kept origins
    (the last fitted model is reused in between, still predicting from the
    latest history), and forecasts ``horizon_steps`` intervals starting at the
    origin with :meth:`Forecaster.forecast` (so the flat-series policy applies as
    when serving). An origin is skipped for all algorithms when any of them lacks
    history (or, with ``min_train_samples``, when fewer non-missing samples
    precede it), so every algorithm is scored on the same intervals.

    Args:
        y: target series (see :mod:`.series`), e.g. kWh per 15-min interval.
        algorithms: names from :data:`~digitaltwin.forecasting.algorithms.ALGORITHMS` (aliases accepted).
        origins: tz-aware timestamps on the grid of ``y``; the first forecast interval starts there.
        horizon_steps: intervals predicted per origin (>= 1).
        timezone: IANA zone of the site.
        country: ISO country code for holidays, or ``None``.
        retrain_every: refit after this many kept origins (>= 1).
        min_train_samples: optional floor on non-missing training samples.
        exog: exogenous series for the algorithms that read them (values at and after an
            origin stand in for a weather forecast).
        levels: quantile levels to forecast and score.
        checkpoint: called before each algorithm's work at each origin (so between fits) with the
            fraction of that work done (0..1); it may raise to stop the backtest (a job's
            cancellation, see :mod:`digitaltwin.jobs`), and the exception propagates.

    Returns:
        A :class:`BacktestResult`; MASE is scaled by the daily seasonal naive MAE on the data before the first origin.

    Raises:
        UnknownAlgorithmError: an unknown algorithm name.
        ValueError: no algorithm, bad ``retrain_every`` or levels, naive or off-grid origins.
    """
    if not algorithms:
        raise ValueError("at least one algorithm is needed")
    if retrain_every < 1:
        raise ValueError(f"retrain_every must be >= 1, got {retrain_every}")
    check_timezone(timezone)
    levels = check_levels(levels)
    names = [canonical_name(a) for a in algorithms]
    models: dict[str, Forecaster | None] = {name: None for name in names}
    y = as_utc_series(y)
    step = infer_step(y.index)
    y = to_grid(y, step)
    ordered = sorted(_check_origin(o, y.index[0], step) for o in origins)

    rows: list[pd.DataFrame] = []
    skipped: dict[pd.Timestamp, str] = {}
    since_fit = {name: 0 for name in names}
    for position, origin in enumerate(ordered):
        train = y[y.index < origin]
        if min_train_samples is not None and int(train.notna().sum()) < min_train_samples:
            skipped[origin] = f"{int(train.notna().sum())} training samples < min_train_samples={min_train_samples}"
            continue
        try:
            outputs = {}
            for rank, name in enumerate(names):
                if checkpoint is not None:
                    checkpoint((position + rank / len(names)) / len(ordered))
                model = models[name]
                if model is None or since_fit[name] >= retrain_every:
                    model = make_forecaster(name)
                    model.fit(train, horizon_steps=horizon_steps, timezone=timezone, country=country, exog=exog)
                    models[name], since_fit[name] = model, 0
                calibrated = model.calibration is not None
                outputs[name] = model.forecast(
                    train, steps=horizon_steps, quantiles=levels if calibrated else (), exog=exog
                )
        except InsufficientHistoryError as exc:
            skipped[origin] = str(exc)
            continue
        for name, result in outputs.items():
            since_fit[name] += 1
            index = result.values.index
            frame = pd.DataFrame(
                {
                    "origin": origin,
                    "ts": index,
                    "algorithm": name,
                    "actual": y.reindex(index).to_numpy(),
                    "predicted": result.values.to_numpy(),
                }
            )
            for level in levels:
                column = result.quantiles[level] if level in result.quantiles.columns else np.nan
                frame[quantile_column(level)] = np.asarray(column, dtype=float) if np.ndim(column) else np.nan
            rows.append(frame)
    columns = FORECAST_COLUMNS + [quantile_column(q) for q in levels]
    forecasts = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)
    scale = seasonal_scale(y[y.index < ordered[0]].to_numpy(), season=samples_per_day(step)) if ordered else np.nan
    return BacktestResult(
        forecasts=forecasts,
        metrics=score(forecasts, names, levels=levels, scale=scale),
        levels=levels,
        skipped_origins=list(skipped),
        skip_reasons=skipped,
    )


def score(
    forecasts: pd.DataFrame,
    algorithms: list[str],
    *,
    levels: Sequence[float] = DEFAULT_LEVELS,
    scale: float = float("nan"),
) -> pd.DataFrame:
    """Metrics per algorithm over a forecasts table (columns as in :class:`BacktestResult`).

    Args:
        levels: quantile levels present as ``q<level>`` columns; pinball over all of them,
            80 % coverage from ``q0.1`` and ``q0.9`` when both are present.
        scale: MASE denominator (see :func:`.metrics.seasonal_scale`).
    """
    levels = list(levels)
    table = pd.DataFrame(index=pd.Index(algorithms, name="algorithm"), columns=METRIC_COLUMNS, dtype=float)
    for name in algorithms:
        part = forecasts[forecasts["algorithm"] == name]
        a, p = part["actual"].to_numpy(dtype=float), part["predicted"].to_numpy(dtype=float)
        n = int((~(np.isnan(a) | np.isnan(p))).sum())
        q = part[[quantile_column(level) for level in levels]].to_numpy(dtype=float) if levels else np.empty((len(a), 0))
        cover = float("nan")
        if 0.1 in levels and 0.9 in levels:
            cover = coverage(a, part[quantile_column(0.1)].to_numpy(dtype=float), part[quantile_column(0.9)].to_numpy(dtype=float))
        table.loc[name] = [
            mae(a, p),
            rmse(a, p),
            cv_rmse(a, p),
            nmbe(a, p),
            mape(a, p),
            mase(a, p, scale=scale),
            pinball(a, q, levels),
            cover,
            peak_error(a, p, part["origin"].to_numpy()),
            n,
        ]
    table["n"] = table["n"].astype(int)
    return table


def daily_origins(y: pd.Series, *, timezone: str, start: date, end: date) -> list[pd.Timestamp]:
    """Every local midnight from ``start`` to ``end`` (inclusive) as UTC timestamps.

    Midnights outside the span of ``y`` (before its first or after its last
    stamp) are dropped. Where a midnight does not exist (a daylight-saving jump
    at 00:00) the first instant after the gap is used; where it occurs twice,
    the first. Where a midnight falls between two stamps of the grid (hourly data
    on UTC hours at a site of UTC+05:30, say) the next stamp is the origin, so the
    day's forecast is issued at the first interval start of the local day.

    Args:
        y: the target series (fixes the span and the grid).
        timezone: IANA zone of the site.
        start: first local date.
        end: last local date.

    Returns:
        Sorted tz-aware UTC timestamps.

    Raises:
        ValueError: ``timezone`` is not an IANA zone.
    """
    check_timezone(timezone)
    y = as_utc_series(y)
    naive = pd.date_range(pd.Timestamp(start), pd.Timestamp(end), freq="D")
    local = naive.tz_localize(timezone, ambiguous=np.ones(len(naive), dtype=bool), nonexistent="shift_forward")
    utc = local.tz_convert("UTC")
    if len(y) == 0:
        return []
    if len(y) >= 2:
        step = infer_step(y.index)
        # the next stamp of the grid at or after each midnight (the midnight itself when on it)
        utc = y.index[0] - ((y.index[0] - utc) // step) * step
    kept = utc[(utc >= y.index[0]) & (utc <= y.index[-1])]
    return list(pd.DatetimeIndex(kept).unique())


def _check_origin(origin: pd.Timestamp, first: pd.Timestamp, step: pd.Timedelta) -> pd.Timestamp:
    origin = pd.Timestamp(origin)
    if origin.tzinfo is None:
        raise ValueError(f"origin {origin} is naive; origins must be tz-aware")
    origin = origin.tz_convert("UTC")
    if (origin - first) % step != pd.Timedelta(0):
        raise ValueError(f"origin {origin} is not on the {step} grid of the series")
    return origin
