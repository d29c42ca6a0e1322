"""Rule detectors: stuck meters, zeros in busy hours, spikes, data gaps, stale devices, meter events.

Each rule returns a boolean mask over the intervals (or events directly, for gaps, staleness and
meter events); :mod:`.detector` turns masks into events. Durations come in hours and are converted
with the series' own cadence, so the same settings hold for 15-minute and hourly meters.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import numpy as np
import pandas as pd

from digitaltwin.monitoring.events import AnomalyEvent, AnomalyType, Severity, runs


def flatline(values: np.ndarray, *, min_intervals: int, tolerance: float = 1e-6) -> np.ndarray:
    """Mask of runs of at least ``min_intervals`` readings equal within ``tolerance`` (a stuck or frozen meter).

    Two consecutive readings are equal when they differ by at most ``tolerance`` times the larger
    magnitude (or 1e-12 absolute, for zeros). NaN breaks a run. Every interval of a long enough run,
    its first one included, is flagged.

    Args:
        values: readings on a regular grid, shape ``(T,)``.
        min_intervals: shortest run flagged (>= 2).
        tolerance: relative tolerance.
    """
    v = np.asarray(values, dtype=float)
    mask = np.zeros(v.size, dtype=bool)
    if v.size < 2:
        return mask
    scale = np.maximum(np.maximum(np.abs(v[1:]), np.abs(v[:-1])) * tolerance, 1e-12)
    with np.errstate(invalid="ignore"):
        same = np.abs(np.diff(v)) <= scale  # NaN compares False
    for a, b in runs(same):  # same[i]: v[i] == v[i + 1], so the run of readings is [a, b + 1)
        if b + 1 - a >= max(2, min_intervals):
            mask[a : b + 1] = True
    return mask


def zero_in_busy_hours(values: np.ndarray, expected: np.ndarray, *, zero_fraction: float, busy_fraction: float,
                       typical: float | None = None) -> np.ndarray:
    """Mask of near-zero readings where consumption is normally high.

    A reading is near zero when it is at most ``zero_fraction`` of the expected value; the hour is
    busy when the expected value is at least ``busy_fraction`` of the median expected value of the
    whole series (so a building's quiet nights are not "busy"). NaN expectations never flag.

    Args:
        values: readings, shape ``(T,)``.
        expected: expected value per interval (e.g. the profile median), shape ``(T,)``.
        typical: :func:`typical_expected` of the whole series, when ``values`` is a part of it
            (default: computed from ``expected``).
    """
    v = np.asarray(values, dtype=float)
    e = np.asarray(expected, dtype=float)
    if typical is None:
        typical = typical_expected(e)
    if typical is None:
        return np.zeros(v.size, dtype=bool)
    with np.errstate(invalid="ignore"):
        busy = (e > 0) & (e >= busy_fraction * typical)
        return busy & (v <= zero_fraction * e)


def typical_expected(expected: np.ndarray) -> float | None:
    """The median expected value of a series (the busy-hours reference), None when it has none."""
    e = np.asarray(expected, dtype=float)
    return float(np.nanmedian(e)) if np.isfinite(e).any() else None


def spike(values: np.ndarray, *, z: float, spread: float | None = None) -> np.ndarray:
    """Mask of single-interval spikes: a reading above both neighbours by ``z`` robust spreads.

    The spread is ``1.4826 x`` the median absolute interval-to-interval change of the series (at
    least 1e-9; :func:`change_spread`, given as ``spread`` when ``values`` is a part of the
    series). The first and last readings have one neighbour and are never flagged, so the
    rule needs one interval after the spike before it can decide.
    """
    v = np.asarray(values, dtype=float)
    mask = np.zeros(v.size, dtype=bool)
    if v.size < 3:
        return mask
    if spread is None:
        spread = change_spread(v)
    with np.errstate(invalid="ignore"):
        mask[1:-1] = (v[1:-1] - np.fmax(v[:-2], v[2:])) > z * spread
    return mask


def change_spread(values: np.ndarray) -> float:
    """``1.4826 x`` the median absolute change between consecutive readings, at least 1e-9."""
    diffs = np.diff(np.asarray(values, dtype=float))
    return max(float(np.nanmedian(np.abs(diffs))) * 1.4826, 1e-9) if np.isfinite(diffs).any() else 1e-9


def gaps(index: pd.DatetimeIndex, values: np.ndarray, *, step: pd.Timedelta, stale_intervals: int) -> list[AnomalyEvent]:
    """Data gaps: runs of missing readings on the series' grid shorter than ``stale_intervals``.

    Longer runs are reported by :func:`stale` when they reach the end of the data, and as
    critical gaps when the device came back; a gap inside the data is a ``data_gap`` either way.

    Args:
        index: the full regular grid (interval starts, UTC).
        values: readings on it, NaN where missing.
        step: the cadence.
        stale_intervals: from this many missing intervals on, a gap is critical.
    """
    missing = ~np.isfinite(np.asarray(values, dtype=float))
    out = []
    for a, b in runs(missing):
        if b == len(index):  # reaches the end: a stale device, not a closed gap
            continue
        count = b - a
        severity = Severity.CRITICAL if count >= stale_intervals else Severity.WARNING
        out.append(
            AnomalyEvent(
                AnomalyType.DATA_GAP, severity, index[a], index[b - 1] + step, float("inf"),
                detail=f"{count} expected interval(s) of {step} without a reading",
            )
        )
    return out


def stale(last_reading: pd.Timestamp | None, now: pd.Timestamp, *, step: pd.Timedelta, stale_intervals: int) -> AnomalyEvent | None:
    """A stale-device event when no reading arrived for ``stale_intervals`` expected intervals.

    Args:
        last_reading: start of the last interval with a reading (UTC), ``None`` when there is none.
        now: the current time (UTC).
        step: the series' cadence; the interval of ``last_reading`` is complete at ``last_reading + step``.
        stale_intervals: missing intervals tolerated before the device is stale.

    Returns:
        The event spanning from the first missing interval to ``now``, or ``None`` when not stale.
    """
    if last_reading is None:
        return None
    first_missing = last_reading + step
    overdue = int((now - first_missing) // step)  # whole intervals that should have been reported by now
    if overdue < stale_intervals:
        return None
    return AnomalyEvent(
        AnomalyType.STALE_DEVICE, Severity.CRITICAL, first_missing, now, float("inf"),
        detail=f"no reading for {overdue} expected interval(s) of {step} (tolerated: {stale_intervals - 1})",
    )


class MeterEventLike(Protocol):
    """A meter event of the energy accounting (counter reset, rollover, replacement, glitch, quarantined value)."""

    @property
    def kind(self) -> object: ...  # an enum whose ``value`` (or a string) is one of :data:`METER_TYPES`' keys
    @property
    def start_s(self) -> float: ...  # epoch seconds
    @property
    def end_s(self) -> float: ...
    @property
    def reason(self) -> str: ...


#: Meter event kinds and the anomaly type and severity they become: resets and rollovers are
#: expected behaviour of counters (recorded), replacements and glitches need a look, quarantined
#: values were kept out of the energy totals.
METER_TYPES: dict[str, tuple[AnomalyType, Severity]] = {
    "reset": (AnomalyType.METER_RESET, Severity.INFO),
    "rollover": (AnomalyType.METER_ROLLOVER, Severity.INFO),
    "replacement": (AnomalyType.METER_REPLACEMENT, Severity.WARNING),
    "glitch": (AnomalyType.METER_GLITCH, Severity.WARNING),
    "quarantined": (AnomalyType.QUARANTINED_VALUE, Severity.WARNING),
}


def meter_events(events: Iterable[MeterEventLike]) -> list[AnomalyEvent]:
    """Anomaly events for the meter events of the energy accounting.

    Raises:
        ValueError: an event kind outside :data:`METER_TYPES`.
    """
    out = []
    for event in events:
        kind = str(getattr(event.kind, "value", event.kind))
        if kind not in METER_TYPES:
            raise ValueError(f"unknown meter event kind {kind!r}")
        anomaly_type, severity = METER_TYPES[kind]
        start = pd.Timestamp(event.start_s, unit="s", tz="UTC")
        end = pd.Timestamp(max(event.end_s, event.start_s), unit="s", tz="UTC")
        if end <= start:
            end = start + pd.Timedelta(seconds=1)
        out.append(AnomalyEvent(anomaly_type, severity, start, end, float("inf"), detail=str(event.reason)))
    return out
