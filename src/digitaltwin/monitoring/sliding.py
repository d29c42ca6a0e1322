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

from digitaltwin.monitoring import rules
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
    return weekly_slots(index, timezone, step_s).astype(np.int16)  # below 7 x 1,440 slots a week: kept small


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
        flagged run that ends there), as ``detect`` on the window reports them.

        Only a tail of the window is scored, with the window-wide statistics of the rules (the
        spread of the changes for spikes, the typical expected value for busy hours). The tail
        starts at the first reading of the run of equal readings reaching into it (a flatline is
        judged on its whole run), so every interval from ``b`` on scores as in the whole window,
        and the persistence of every interval from ``b + n - 1`` on (it looks ``n - 1`` back). When
        the flagged run ending at the last interval does not start inside that exact part, the
        tail grows fourfold, up to the whole window.
        """
        s, actual = self.settings, self.values
        size = actual.size
        if size < 2:
            return []
        n = s.persistence.n
        spread = rules.change_spread(actual)
        typical = rules.typical_expected(self.profile.median)
        length = 4 * n
        while True:
            b = max(0, size - length)
            c = self._run_start(b - 1) if b > 0 else 0
            part = slice(c, size)
            profile = Expectation(*(x[part] for x in (self.profile.median, self.profile.low, self.profile.high, self.profile.floor)))
            values = actual[part]
            rule = rule_codes(values, profile, s, self.step_s, {}, None, spread=spread, typical=typical)
            no_model = np.full(values.size, np.nan)
            combined, _, flagged = combine(values, surprise(profile.z(values)), no_model, rule, s)
            exact_from = 0 if c == 0 else (b - c) + n - 1  # first index of the part whose flag is the window's
            if not flagged[-1]:
                return []
            quiet = np.flatnonzero(~flagged)
            if c == 0 or (quiet.size and int(quiet[-1]) >= exact_from):
                a = int(quiet[-1]) + 1 if quiet.size else 0  # the flagged run ending at the last interval
                break
            length *= 4
        run = slice(a, values.size)
        low, high = Expectation(*(x[run] for x in (profile.median, profile.low, profile.high, profile.floor))).bounds(z_threshold(s))
        first = self.start_s + self.step_s * (c + a)
        index = pd.DatetimeIndex(pd.to_datetime(first + self.step_s * np.arange(values.size - a, dtype=np.int64), unit="s", utc=True))
        scored = Scored(index, values[run], profile.median[run], low, high, combined[run], rule[run], no_model[run])
        return [run_event(scored, 0, values.size - a, pd.Timedelta(seconds=self.step_s), s)]

    def _run_start(self, i: int) -> int:
        """First index of the run of equal readings (as :func:`.rules.flatline` compares them) that holds ``i``."""
        v, tolerance = self.values, self.settings.rules.flatline_tolerance
        while i > 0:
            a, b = v[i - 1], v[i]
            if not abs(b - a) <= max(max(abs(b), abs(a)) * tolerance, 1e-12):  # NaN never equal
                break
            i -= 1
        return i
