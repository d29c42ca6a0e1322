"""Energy KPIs of one asset or site over a period, from energy on a grid of equal cells.

The input is energy per cell (kWh, NaN where no data covers the cell) with the hours each
cell is covered, on a grid of 15-minute cells of the site's local calendar (see
:mod:`digitaltwin.services.kpis`). Definitions:

* ``energy_kwh``: the sum of the cells' energy.
* ``peak_demand_kw`` / ``peak_ts``: the highest cell mean power (energy over its covered hours),
  i.e. the 15-minute demand that billing demand charges use, and the start (UTC) of that cell;
  for hourly data it is the hourly mean, which the data cannot resolve further.
* ``load_factor``: mean power over the covered hours divided by the peak demand, 0..1
  (the utility definition: average load / peak load over the same period).
* ``base_load_kw``: the :data:`BASE_LOAD_PERCENTILE` (2.5th) percentile of the cell mean
  power of cells starting in the local night window :data:`NIGHT_HOURS` (00:00-06:00).
  2.5th percentile: the "near-base load" of Price, P. N. (2010), *Methods for Analyzing
  Electric Load Shape and its Variability*, LBNL-3713E (a low percentile rather than the
  minimum, so one bad interval does not set it); restricting it to night hours is this
  product's choice, so daytime outages do not count as base load.
* ``completeness``: covered hours / expected hours of the period (up to now); for interval
  series that is intervals present / intervals expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np

#: Percentile of night-time power that is the base load (Price 2010, LBNL-3713E "near-base load").
BASE_LOAD_PERCENTILE = 2.5
#: Local hours [start, end) whose cells count for the base load.
NIGHT_HOURS = (0, 6)


@dataclass(frozen=True, slots=True)
class LoadKpis:
    """KPIs of a load profile; floats None where undefined (no data, zero peak)."""

    energy_kwh: float | None
    peak_demand_kw: float | None
    peak_ts: datetime | None
    load_factor: float | None
    base_load_kw: float | None
    completeness: float


def _none(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def local_hours(cell_starts_s: np.ndarray, tz: ZoneInfo) -> np.ndarray:
    """Local wall-clock hour (0-23) of each UTC epoch second, following the zone's DST rules."""
    if cell_starts_s.size == 0:
        return np.empty(0, dtype=np.int64)
    # The offset changes at most a few times a year: look it up per distinct UTC hour, not per cell.
    hours_utc = np.floor(cell_starts_s / 3600.0).astype(np.int64)
    distinct, inverse = np.unique(hours_utc, return_inverse=True)
    offsets = np.array([datetime.fromtimestamp(h * 3600, tz).utcoffset().total_seconds() for h in distinct.tolist()])
    local_s = cell_starts_s + offsets[inverse]
    return (np.floor(local_s / 3600.0).astype(np.int64)) % 24


def load_kpis(
    energy_kwh: np.ndarray,
    covered_hours: np.ndarray,
    edges_s: np.ndarray,
    *,
    tz: ZoneInfo,
    expected_hours: float,
) -> LoadKpis:
    """The KPIs of the module docstring from cells with edges ``edges_s`` (epoch seconds).

    Args:
        energy_kwh: energy per cell, NaN where no data.
        covered_hours: hours of each cell covered by data.
        edges_s: ``n + 1`` cell edges.
        tz: the site's zone (night window).
        expected_hours: hours of the period that data should cover (for ``completeness``).
    """
    has = ~np.isnan(energy_kwh) & (covered_hours > 0)
    covered = float(np.sum(covered_hours[has]))
    completeness = min(covered / expected_hours, 1.0) if expected_hours > 0 else 0.0
    if not has.any():
        return LoadKpis(None, None, None, None, None, completeness)
    total = float(np.sum(energy_kwh[has]))
    power = np.full(energy_kwh.shape, np.nan)
    power[has] = energy_kwh[has] / covered_hours[has]
    k = int(np.nanargmax(power))
    peak = float(power[k])
    load_factor = (total / covered) / peak if peak > 0 else None
    night = has & np.isin(local_hours(edges_s[:-1], tz), np.arange(*NIGHT_HOURS))
    base = float(np.percentile(power[night], BASE_LOAD_PERCENTILE)) if night.any() else None

    return LoadKpis(
        energy_kwh=total,
        peak_demand_kw=peak,
        peak_ts=datetime.fromtimestamp(float(edges_s[k]), UTC),
        load_factor=_none(load_factor) if load_factor is not None else None,
        base_load_kw=base,
        completeness=completeness,
    )


def per_quantity(energy_kwh: float | None, quantity: float | None) -> float | None:
    """``energy_kwh / quantity`` (kWh per m2 or per unit produced); None when either is missing or the quantity is not positive."""
    if energy_kwh is None or quantity is None or not np.isfinite(quantity) or quantity <= 0:
        return None
    return energy_kwh / quantity
