"""Energy per bucket from power samples, interval energy or cumulative counters.

Every series kind is first turned into *segments*: half-open time spans
``[a, b)`` each carrying an amount of energy (kWh) spread evenly over it.

* instantaneous power (kW): sample-and-hold (left Riemann sum): sample ``i``
  holds until the next sample, but at most ``max_hold`` (beyond that the series
  has a gap), and never past the query end.
* interval energy (kWh): ``[ts, ts + interval)`` carries the value.
* cumulative counter (kWh): ``[ts_{i-1}, ts_i)`` carries the increase; a
  drop of more than 10 % is a meter reset and the new reading counts from zero,
  a smaller dip is noise, as Home Assistant's ``total_increasing`` treats them;
  glitches, rollovers, replacements and implausible increases follow
  :mod:`digitaltwin.analytics.meter`.
  A span longer than :data:`COUNTER_MAX_SPAN_SECONDS` (48 h) is a gap, as a power
  sample held past ``max_hold`` is: its increase goes to no bucket, and the next
  span counts from the reading that closes the gap.

Buckets then take each segment whole when it lies inside them, or the share of
its energy proportional to the overlap when it crosses bucket edges. Per bucket:

* ``energy_kwh``: energy in the bucket, None when no segment covers it;
* ``mean_power_kw``: ``energy_kwh`` divided by the covered hours, so a 23-hour
  DST day of 1 kWh per hour has a mean of 1.0 kW, not 23/24 kW;
* ``peak_power_kw``: the highest segment mean power starting in the bucket
  (for 15-min interval energy, 4 x the largest interval's kWh);
* ``sample_count``: readings stamped in the bucket; for interval series
  ``expected_count`` and ``missing_count`` give completeness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from digitaltwin.analytics.meter import (  # noqa: F401 - RESET_DROP_FRACTION: re-exported, documented here
    COUNTER_MAX_SPAN_SECONDS,
    RESET_DROP_FRACTION,
    CounterRules,
    Metered,
    counter_arithmetic,
    quarantine_power,
)
from digitaltwin.analytics.segments import Segments, empty_segments
from digitaltwin.domain.units import SeriesKind

#: Interval assumed for interval-energy series that neither declare one nor have two readings.
DEFAULT_INTERVAL_SECONDS = 900


def power_segments(ts_s: np.ndarray, power_kw: np.ndarray, *, max_hold_s: float, until_s: float) -> Segments:
    """Sample-and-hold segments of power samples (epoch seconds, kW), sorted by time."""
    if ts_s.size == 0:
        return empty_segments()
    nxt = np.append(ts_s[1:], np.inf)
    end = np.minimum(np.minimum(nxt, ts_s + max_hold_s), max(until_s, ts_s[-1]))
    keep = end > ts_s
    start, end, kw = ts_s[keep], end[keep], power_kw[keep]
    return Segments(start, end, kw * (end - start) / 3600.0)


def interval_length_s(ts_s: np.ndarray, interval_s: float | None) -> float:
    """Length (seconds) of each interval of interval-energy readings stamped at ``ts_s`` (epoch seconds).

    The declared ``interval_s`` when given, else the median spacing of the readings, or
    :data:`DEFAULT_INTERVAL_SECONDS` with fewer than two.
    """
    if interval_s:
        return float(interval_s)
    return float(np.median(np.diff(ts_s))) if ts_s.size > 1 else float(DEFAULT_INTERVAL_SECONDS)


def interval_segments(ts_s: np.ndarray, energy_kwh: np.ndarray, *, interval_s: float | None) -> Segments:
    """Segments of interval energy stamped at interval starts (epoch seconds, kWh).

    Without ``interval_s`` the median spacing of the readings is used, or
    :data:`DEFAULT_INTERVAL_SECONDS` with a single reading. An interval that
    would overlap the next reading is cut at it.
    """
    if ts_s.size == 0:
        return empty_segments()
    interval_s = interval_length_s(ts_s, interval_s)
    end = np.minimum(ts_s + interval_s, np.append(ts_s[1:], np.inf))
    # A cut interval keeps its whole energy: the value is the reading's, only its span shrinks.
    return Segments(ts_s, end, energy_kwh)


def counter_segments(ts_s: np.ndarray, total_kwh: np.ndarray, *, max_span_s: float = COUNTER_MAX_SPAN_SECONDS) -> Segments:
    """Segments between consecutive counter readings (epoch seconds, kWh register values).

    The increase is measured from the highest value since the last reset, so a small
    dip (less than :data:`RESET_DROP_FRACTION`) adds nothing and is not counted twice
    when the register recovers; a larger drop is a reset and the new reading counts
    from zero, unless the register comes back within a few readings (a glitch: see
    :func:`digitaltwin.analytics.meter.counter_arithmetic`, which also applies a declared
    modulus, power limit and meter replacements).

    A span longer than ``max_span_s`` is a gap: no segment covers it, so its increase
    goes to no bucket and the buckets it covers show missing data, as those of a power
    series past its hold do. The baseline still moves on: the next span counts from the
    reading that closes the gap (whatever that value, so neither a reset nor a dip over a
    gap carries into later spans).

    Why a maximum, and why 48 hours (:data:`COUNTER_MAX_SPAN_SECONDS`): the increase
    between two register reads is measured energy, but its timing inside the span is
    unknown; spreading it evenly is the flat-line estimate meter-data-management systems
    use, and they bound it by a longest span to interpolate (e.g. Itron MDM's "max range
    to interpolate"), leaving longer gaps unfilled. Without a bound one stray old reading
    spread decades of register over every month in between. 48 hours keeps daily register
    reads whole (the coarsest cadence of automated meter reading), also over a 25-hour DST
    day and when a read comes up to a day late; a longer span (a stray old reading, a
    meter offline over a weekend, weekly manual readings) would spread days of flat,
    invented load into the daily profile and the forecasting target, so it is a gap. The
    power hold (``POWER_MAX_HOLD_SECONDS``, 1 hour) is not reused: an hourly counter read
    one second late would lose a whole hour of measured energy, where a power sample held
    one second too short loses one second.

    Args:
        ts_s: reading times, epoch seconds, ascending, shape ``(n,)``.
        total_kwh: register values in kWh, shape ``(n,)``.
        max_span_s: longest span whose increase is spread, seconds.

    Returns:
        At most ``n - 1`` segments, one per span not longer than ``max_span_s``.
    """
    return counter_arithmetic(ts_s, total_kwh, CounterRules(max_span_s=max_span_s)).segments


def segments_for(
    kind: SeriesKind,
    ts_s: np.ndarray,
    values: np.ndarray,
    *,
    interval_s: float | None,
    max_hold_s: float,
    until_s: float,
    counter_max_span_s: float = COUNTER_MAX_SPAN_SECONDS,
) -> Segments:
    """Dispatch on the series kind (see module docstring).

    ``max_hold_s`` and ``until_s`` apply to power, ``interval_s`` to interval energy and
    ``counter_max_span_s`` to counters (all in seconds).
    """
    if kind is SeriesKind.INSTANTANEOUS:
        return power_segments(ts_s, values, max_hold_s=max_hold_s, until_s=until_s)
    if kind is SeriesKind.INTERVAL:
        return interval_segments(ts_s, values, interval_s=interval_s)
    return counter_segments(ts_s, values, max_span_s=counter_max_span_s)


def metered_for(
    kind: SeriesKind,
    ts_s: np.ndarray,
    values: np.ndarray,
    *,
    rules: CounterRules,
    interval_s: float | None,
    max_hold_s: float,
    until_s: float,
) -> Metered:
    """:func:`segments_for` with the meter policies of ``rules`` and the events they raise.

    Counters go through :func:`~digitaltwin.analytics.meter.counter_arithmetic` (glitch,
    rollover, reset, replacement, quarantine; ``rules.max_span_s`` is the longest span); power
    samples and intervals whose energy implies more than the power limit allows are dropped by
    :func:`~digitaltwin.analytics.meter.quarantine_power` (their span becomes a gap).
    """
    if kind is SeriesKind.CUMULATIVE:
        return counter_arithmetic(ts_s, values, rules)
    seg = segments_for(kind, ts_s, values, interval_s=interval_s, max_hold_s=max_hold_s, until_s=until_s)
    resolution = 0.0 if kind is SeriesKind.INSTANTANEOUS else rules.resolution_kwh
    return quarantine_power(seg, power_limit_kw=rules.power_limit_kw, resolution_kwh=resolution)


def _spread(seg: Segments, edges_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energy (kWh) and covered seconds per bucket: whole segments are added as they are
    (exact sums), only segments crossing a bucket edge are split by overlap."""
    n = edges_s.size - 1
    energy = np.zeros(n)
    covered = np.zeros(n)
    if seg.start_s.size == 0 or n <= 0:
        return energy, covered
    duration = seg.end_s - seg.start_s
    first = np.searchsorted(edges_s, seg.start_s, side="right") - 1
    last = np.searchsorted(edges_s, seg.end_s, side="left") - 1
    inside = (first == last) & (first >= 0) & (first < n)
    np.add.at(energy, first[inside], seg.energy_kwh[inside])
    np.add.at(covered, first[inside], duration[inside])
    for k in np.nonzero(~inside & (last >= 0) & (first < n))[0]:
        a, b = seg.start_s[k], seg.end_s[k]
        rate = seg.energy_kwh[k] / (b - a)
        for i in range(max(first[k], 0), min(last[k], n - 1) + 1):
            overlap = min(b, edges_s[i + 1]) - max(a, edges_s[i])
            if overlap > 0:
                energy[i] += rate * overlap
                covered[i] += overlap
    return energy, covered


@dataclass(frozen=True, slots=True)
class BucketTotals:
    """Per-bucket aggregates, arrays of length ``n`` for ``n + 1`` edges; NaN where undefined."""

    energy_kwh: np.ndarray
    covered_hours: np.ndarray
    mean_power_kw: np.ndarray
    peak_power_kw: np.ndarray
    sample_count: np.ndarray


def aggregate(seg: Segments, edges_s: np.ndarray, sample_ts_s: np.ndarray) -> BucketTotals:
    """Distribute segments over buckets with edges ``edges_s`` (epoch seconds, ascending).

    Args:
        seg: non-overlapping segments sorted by start.
        edges_s: ``n + 1`` bucket edges.
        sample_ts_s: timestamps of the readings, for ``sample_count``.
    """
    n = edges_s.size - 1
    energy, covered_s = _spread(seg, edges_s)
    covered_h = covered_s / 3600.0
    has = covered_s > 1e-9
    energy = np.where(has, energy, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(has, energy / np.where(has, covered_h, 1.0), np.nan)
    peak = np.full(n, -np.inf)
    if seg.start_s.size:
        idx = np.searchsorted(edges_s, seg.start_s, side="right") - 1
        ok = (idx >= 0) & (idx < n)
        np.maximum.at(peak, idx[ok], seg.mean_power_kw[ok])
    peak = np.where(np.isfinite(peak), peak, np.nan)
    counts = np.diff(np.searchsorted(sample_ts_s, edges_s, side="left"))
    return BucketTotals(energy, covered_h, mean, peak, counts)
