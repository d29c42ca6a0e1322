"""Demand: mean power per metering interval or demand window, peaks, and tiered demand charges.

Demand is the mean power over each metering interval (kWh / hours), or over blocks of the
tariff's ``demand_window_minutes`` aligned to the clock; a block with missing intervals counts
the energy it has. Tiers apply to the peak kW: each tier's kW between its lower and upper bound
at its rate (URDB demand structures; SAM Utilityrate5).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from digitaltwin.accounting.tariff import Tariff, Tier, TouDemand

_INF = float("inf")


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(float(epoch_s), tz=UTC)


def tier_amount(demand_kw: float, tiers: Sequence[Tier]) -> float:
    """Charge of ``demand_kw`` over ``tiers`` (rate per kW of each tier's band)."""
    amount, lower = 0.0, 0.0
    for tier in tiers:
        upper = _INF if tier.max is None else tier.max
        amount += max(min(demand_kw, upper) - lower, 0.0) * tier.rate
        if demand_kw <= upper:
            break
        lower = upper
    return amount


def demand_series(tariff: Tariff, start_s: np.ndarray, import_kwh: np.ndarray, interval_s: int, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Demand (kW) per block and the index of each block's first interval (NaN where no data)."""
    imp = np.where(ok, import_kwh, np.nan)
    window_s = tariff.demand_window_minutes * 60 if tariff.demand_window_minutes else interval_s
    if window_s <= interval_s:
        return imp / (interval_s / 3600.0), np.arange(imp.size)
    block = start_s // window_s
    _, first, inverse = np.unique(block, return_index=True, return_inverse=True)
    sums = np.bincount(inverse, np.nan_to_num(imp), minlength=first.size)
    counted = np.bincount(inverse, ok.astype(float), minlength=first.size)
    kw = np.where(counted > 0, sums / (window_s / 3600.0), np.nan)
    return kw, first


def peak_of(kw: np.ndarray, mask: np.ndarray) -> tuple[float, int] | None:
    """(peak kW, its index) among ``kw[mask]``, or None without data."""
    values = np.where(mask & np.isfinite(kw), kw, -np.inf)
    if values.size == 0 or not np.isfinite(values.max()):
        return None
    i = int(np.argmax(values))
    return float(values[i]), i


def tou_peaks(demand: TouDemand, kw: np.ndarray, period: np.ndarray, starts: np.ndarray) -> list[tuple[int, float, datetime, float]]:
    """(period, peak kW, start of the peak's block (UTC), tiered charge) of each period with data."""
    out = []
    for p, dp in enumerate(demand.periods):
        found = peak_of(kw, period == p)
        if found is not None:
            peak, i = found
            out.append((p, peak, _utc(starts[i]), tier_amount(peak, dp.tiers)))
    return out
