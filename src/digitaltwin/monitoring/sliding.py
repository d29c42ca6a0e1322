"""The newest interval of a trailing window, scored without rescoring the whole window.

:meth:`~digitaltwin.monitoring.detector.ConsumptionDetector.detect` scores every interval of a
series. An online detector runs each time an interval closes and needs only the events covering
that newest interval, scored over the trailing window that ends with it. Most of ``detect``'s
cost is the profile (:func:`~digitaltwin.monitoring.profile.profile_expectation`: a robust median
and MAD per weekly slot, 168 slots for an hourly series); the rules, the combination and the
persistence are a few vectorised passes over the window.

:class:`SlidingWindow` keeps the window's values, their local weekly slots and the profile. When
the window moves (its start and end move on, and values from some instant on are replaced by
fresh ones: the closed interval and whatever late readings changed), only the slots whose
values changed or left the window get their profile recomputed: the profile of an interval
depends only on the values of its own slot inside the window, so every other slot's profile is
the one already known. The rules, :func:`~digitaltwin.monitoring.detector.combine` and the
persistence then run on the window's arrays with the functions ``detect`` uses, and only the
event of the flagged run that covers the newest interval is built
(:func:`~digitaltwin.monitoring.detector.run_event`).

The result is that of ``detect`` on the same window, restricted to the events covering the
newest interval: the same functions on the same arrays (tested against ``detect`` on a real
building, tests/integration/test_incremental_anomalies.py). The model-based score is not
supported (it refits forecasters over the window: the online path runs without it, as
:class:`digitaltwin.services.anomaly_alarms.ConsumptionAnomalies` does).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from digitaltwin.monitoring.detector import Scored, combine, rule_codes, run_event, z_threshold
from digitaltwin.monitoring.events import AnomalyEvent
from digitaltwin.monitoring.profile import Expectation, profile_expectation, weekly_slots
from digitaltwin.monitoring.settings import DetectorSettings
from digitaltwin.monitoring.tails import surprise


#: Intervals past the window's end whose weekly slots are computed ahead, so moving on by one
#: interval rarely converts stamps to local time (a pandas call costs the same for 1 stamp or 168).
_SLOTS_AHEAD = 168


def _slots(start_s: int, count: int, step_s: int, timezone: str) -> np.ndarray:
    index = pd.DatetimeIndex(pd.to_datetime(start_s + step_s * np.arange(count, dtype=np.int64), unit="s", utc=True))
    return weekly_slots(index, timezone, step_s)


class SlidingWindow:
    """A series' trailing window on a regular grid and its profile (see the module docstring).

    Args:
        start_s: epoch seconds of the window's first interval start (a multiple of ``step_s``).
        values: the readings of each interval, shape ``(T,)``, NaN where missing (target unit).
        step_s: the grid's cadence in seconds (it divides a day).
        timezone: IANA zone of the site (weekly slots in local time).
        settings: detector settings; the model must be disabled.

    Raises:
        ValueError: the model is enabled, or a start off the grid.
    """

    def __init__(self, start_s: int, values: np.ndarray, *, step_s: int, timezone: str, settings: DetectorSettings) -> None:
        if settings.model.enabled:
            raise ValueError("the sliding window scores without the model: disable it in the settings")
        if start_s % step_s:
            raise ValueError(f"window start {start_s} is off the {step_s} s grid")
        self.step_s, self.timezone, self.settings = step_s, timezone, settings
        self.start_s = int(start_s)
        self.values = np.array(values, dtype=float)
        self.slots = _slots(self.start_s, self.values.size, step_s, timezone)
        self._ahead_s, self._ahead = self.end_s, np.empty(0, dtype=self.slots.dtype)  # slots from _ahead_s on
        self.profile = profile_expectation(self.values, self.slots, settings.profile)

    @property
    def end_s(self) -> int:
        """Epoch seconds of the end of the window's last interval."""
        return self.start_s + self.step_s * self.values.size

    def move(self, start_s: int, from_s: int, fresh: np.ndarray) -> int:
        """Move the window to start at ``start_s``, with ``fresh`` as the values of the intervals from
        ``from_s`` on (so it ends at ``from_s + len(fresh) * step_s``); values before ``from_s`` are
        kept. Returns how many weekly slots had their profile recomputed.

        Raises:
            ValueError: ``start_s`` before the current start, ``from_s`` outside ``[start_s, end_s]``,
                an end before the current one, or a move off the grid (rebuild the window instead).
        """
        step = self.step_s
        fresh = np.asarray(fresh, dtype=float)
        if (start_s < self.start_s or not start_s <= from_s <= self.end_s or from_s + step * fresh.size < self.end_s
                or (start_s - self.start_s) % step or (from_s - start_s) % step):
            raise ValueError("the window can only move forward, keeping a prefix of its values")
        dropped = (start_s - self.start_s) // step
        kept_to = (from_s - self.start_s) // step  # old positions [dropped, kept_to) keep their values
        overlap_to = self.values.size  # old positions [kept_to, overlap_to) get fresh values
        values = np.concatenate([self.values[dropped:kept_to], fresh])
        new_count = max(0, values.size - (overlap_to - dropped))
        slots = np.concatenate([self.slots[dropped:], self._slots_from_end(new_count)])[: values.size]
        # Slots whose values inside the window changed: those that lost an interval at the start,
        # those whose fresh values differ from the known ones (NaN equal to NaN), and those of the
        # intervals new at the end.
        old_tail = self.values[kept_to:overlap_to]
        new_tail = fresh[: old_tail.size]
        changed = ~((old_tail == new_tail) | (np.isnan(old_tail) & np.isnan(new_tail)))
        dirty = np.unique(np.concatenate([
            self.slots[:dropped], self.slots[kept_to:overlap_to][changed], slots[values.size - new_count:],
        ]))
        pad = np.full(new_count, np.nan)
        profile = Expectation(*(np.concatenate([a[dropped:], pad])[: values.size] for a in (
            self.profile.median, self.profile.low, self.profile.high, self.profile.floor)))
        for slot in dirty.tolist():
            where = np.flatnonzero(slots == slot)
            part = profile_expectation(values[where], slots[where], self.settings.profile)
            profile.median[where], profile.low[where], profile.high[where], profile.floor[where] = part.median, part.low, part.high, part.floor
        self.start_s, self.values, self.slots, self.profile = int(start_s), values, slots, profile
        return int(dirty.size)

    def _slots_from_end(self, count: int) -> np.ndarray:
        """Weekly slots of the ``count`` intervals from the window's end on (computed ahead, kept until used)."""
        offset = (self.end_s - self._ahead_s) // self.step_s
        if offset < 0 or offset + count > self._ahead.size:
            self._ahead_s, self._ahead = self.end_s, _slots(self.end_s, count + _SLOTS_AHEAD, self.step_s, self.timezone)
            offset = 0
        return self._ahead[offset : offset + count]

    def newest_events(self) -> list[AnomalyEvent]:
        """The residual and rule events covering the window's last interval (none or one: the
        flagged run that ends there), as ``detect`` on the window reports them."""
        s, actual = self.settings, self.values
        if actual.size < 2:
            return []
        rule = rule_codes(actual, self.profile, s, self.step_s, {}, None)
        no_model = np.full(actual.size, np.nan)
        combined, _, flagged = combine(actual, surprise(self.profile.z(actual)), no_model, rule, s)
        if not flagged[-1]:
            return []
        quiet = np.flatnonzero(~flagged)
        a = int(quiet[-1]) + 1 if quiet.size else 0  # the flagged run ending at the last interval
        part = slice(a, actual.size)
        profile = Expectation(*(x[part] for x in (self.profile.median, self.profile.low, self.profile.high, self.profile.floor)))
        low, high = profile.bounds(z_threshold(s))
        index = pd.DatetimeIndex(pd.to_datetime(self.start_s + self.step_s * np.arange(a, actual.size, dtype=np.int64), unit="s", utc=True))
        scored = Scored(index, actual[part], profile.median, low, high, combined[part], rule[part], no_model[part])
        return [run_event(scored, 0, actual.size - a, pd.Timedelta(seconds=self.step_s), s)]
