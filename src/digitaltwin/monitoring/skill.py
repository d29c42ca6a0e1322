"""Forecast skill of stored forecasts against actuals, and the forecast-drift detector.

Every issued forecast point (a model's or an external one) is scored against the asset's
actual energy of the same interval once that interval has data. Per forecast source,
rolling window (7 and 30 days of target intervals ending at ``end``) and lead-time bucket:

* ``mae`` = mean |f - a| (kWh per interval);
* ``rmse`` = sqrt(mean (f - a)^2); ``cv_rmse`` = rmse / mean(a), the coefficient of variation
  of the RMSE of ASHRAE Guideline 14-2014 (section 4.3.3; a fraction, None when mean(a) is 0);
* ``bias`` = mean(f - a) (kWh; > 0 over-forecasts) and ``nmbe`` = sum(f - a) / sum(a), the
  normalised mean bias error of the same guideline (a fraction);
* ``coverage`` = share of actuals inside [q_low, q_high], the outermost quantile pair stored
  with the forecast (0.1 and 0.9 give a nominal 80 % interval), over points that have one.

Lead time is the target interval's start minus the forecast's issue time; buckets are
``0-1h``, ``1-6h``, ``6-12h``, ``12-24h``, ``24-48h``, ``48h+`` and ``all``.

Drift: when the 7-day MAE of a model's forecasts exceeds ``factor`` x the MAE of that model's
own backtest (its manifest's ``mae``), a ``forecast_drift`` detection is active; it stays active
until the ratio falls below ``factor * clear_ratio`` (level hysteresis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from digitaltwin.domain.errors import ValidationError
from digitaltwin.monitoring.alarms import Detection, Severity, evidence

DRIFT_TYPE = "forecast_drift"
#: Rolling windows scored, by name.
WINDOWS: dict[str, timedelta] = {"7d": timedelta(days=7), "30d": timedelta(days=30)}
#: Lead-time buckets: (name, lower bound h inclusive, upper bound h exclusive).
LEAD_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("0-1h", -math.inf, 1), ("1-6h", 1, 6), ("6-12h", 6, 12), ("12-24h", 12, 24), ("24-48h", 24, 48), ("48h+", 48, math.inf),
)


@dataclass(frozen=True, slots=True)
class SkillRow:
    """Scores of one source, window and lead bucket (None where undefined: no points, zero mean)."""

    source: str
    window: str
    lead: str
    n: int
    mae: float | None
    rmse: float | None
    cv_rmse: float | None
    bias: float | None
    nmbe: float | None
    coverage: float | None
    interval: tuple[float, float] | None


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _scores(source: str, window: str, lead: str, f: np.ndarray, a: np.ndarray, lo: np.ndarray, hi: np.ndarray,
            interval: tuple[float, float] | None) -> SkillRow:
    n = int(f.size)
    if n == 0:
        return SkillRow(source, window, lead, 0, None, None, None, None, None, None, interval)
    e = f - a
    rmse = float(np.sqrt(np.mean(e * e)))
    mean_a, sum_a = float(np.mean(a)), float(np.sum(a))
    has = ~np.isnan(lo) & ~np.isnan(hi)
    coverage = float(np.mean((a[has] >= lo[has]) & (a[has] <= hi[has]))) if has.any() else None
    return SkillRow(
        source, window, lead, n, float(np.mean(np.abs(e))), rmse, _finite(rmse / mean_a) if mean_a else None,
        float(np.mean(e)), _finite(float(np.sum(e)) / sum_a) if sum_a else None, coverage, interval,
    )


def skill_table(points: pd.DataFrame, actual: pd.Series, *, end: datetime) -> list[SkillRow]:
    """Score forecast points against actuals.

    Args:
        points: one row per forecast point, columns ``source`` (str), ``ts`` (UTC interval start),
            ``lead_time_s`` (float), ``value`` (kWh), ``q_low``, ``q_high`` (kWh or NaN) and
            ``q_low_level``, ``q_high_level`` (levels or NaN).
        actual: kWh per interval indexed by UTC interval start (NaN where unknown).
        end: the windows end here (exclusive), UTC.

    Returns:
        Rows sorted by source, window (7d first) and lead bucket, ``all`` last; a source has rows
        only for the windows and buckets holding scored points, plus its ``all`` rows.
    """
    if points.empty:
        return []
    frame = points.copy()
    frame["actual"] = actual.reindex(pd.DatetimeIndex(frame["ts"])).to_numpy(dtype=float)
    frame = frame[np.isfinite(frame["actual"]) & np.isfinite(frame["value"].astype(float))]
    rows: list[SkillRow] = []
    end_ts = pd.Timestamp(end)
    for source, of_source in frame.groupby("source", sort=True):
        levels = of_source[["q_low_level", "q_high_level"]].dropna()
        interval = (float(levels.iloc[-1, 0]), float(levels.iloc[-1, 1])) if len(levels) else None
        for window, length in WINDOWS.items():
            inside = of_source[(of_source["ts"] >= end_ts - length) & (of_source["ts"] < end_ts)]
            lead_h = inside["lead_time_s"].to_numpy(dtype=float) / 3600.0
            arrays = [inside[c].to_numpy(dtype=float) for c in ("value", "actual", "q_low", "q_high")]
            for name, low, high in LEAD_BUCKETS:
                mask = (lead_h >= low) & (lead_h < high)
                if mask.any():
                    rows.append(_scores(str(source), window, name, *(x[mask] for x in arrays), interval))
            rows.append(_scores(str(source), window, "all", *arrays, interval))
    return rows


@dataclass(frozen=True, slots=True)
class DriftSettings:
    """``factor`` (> 1): rolling MAE over backtest MAE that raises; ``clear_ratio`` (0, 1]: the
    alarm clears below ``factor * clear_ratio``; ``min_points``: scored points needed to decide.

    Raises:
        ValidationError: naming the field.
    """

    factor: float = 1.5
    clear_ratio: float = 0.8
    min_points: int = 24

    def __post_init__(self) -> None:
        if not (isinstance(self.factor, (int, float)) and math.isfinite(self.factor) and self.factor > 1):
            raise ValidationError("factor must be a number > 1", field="factor")
        if not (isinstance(self.clear_ratio, (int, float)) and 0 < self.clear_ratio <= 1):
            raise ValidationError("clear_ratio must be in (0, 1]", field="clear_ratio")
        if not (isinstance(self.min_points, int) and self.min_points >= 1):
            raise ValidationError("min_points must be an integer >= 1", field="min_points")


def drift_detection(asset_id: str, *, source: str, row: SkillRow, backtest_mae: float, is_open: bool,
                    start: datetime, end: datetime, settings: DriftSettings = DriftSettings()) -> Detection | None:
    """The forecast-drift detection of one model source from its 7-day ``all`` skill row.

    Returns:
        None when there are fewer than ``min_points`` scored points or no usable backtest MAE
        (nothing can be decided); otherwise a detection, active when the ratio exceeds
        ``factor`` (or, while ``is_open``, ``factor * clear_ratio``). Severity is ``warning``,
        ``critical`` at twice ``factor``; ``score`` is the ratio.
    """
    if row.n < settings.min_points or row.mae is None or not (math.isfinite(backtest_mae) and backtest_mae > 0):
        return None
    ratio = row.mae / backtest_mae
    threshold = settings.factor * (settings.clear_ratio if is_open else 1.0)
    return Detection(
        asset_id=asset_id, type=DRIFT_TYPE,
        severity=Severity.CRITICAL if ratio >= 2 * settings.factor else Severity.WARNING,
        start=start, end=end, score=ratio,
        evidence=evidence(row.mae, 0.0, settings.factor * backtest_mae, source=source, backtest_mae=backtest_mae,
                          ratio=round(ratio, 3), window=row.window, points=row.n),
        active=ratio > threshold,
    )
