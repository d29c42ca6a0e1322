"""Consumption anomalies as alarms: the detectors of :mod:`digitaltwin.monitoring` run as data arrives.

:class:`ConsumptionAnomalies` is an interval detector of the detection runner
(:mod:`digitaltwin.services.detection`): when an hour of an energy-carrying series closes (or late
data touches a closed hour), it scores the asset's hourly energy of the trailing
:data:`HISTORY_WEEKS` weeks (the profile's window, on the site's calendar, with the meter rules of
the energy accounting) with the detectors of :class:`~digitaltwin.monitoring.ConsumptionDetector`
(the robust hour-of-week profile, the rule detectors, k-of-n persistence; the model-based score is
the offline benchmark's, too costly per closed hour) and reports, for each anomaly type, an active
detection when an event covers the hour and an inactive one otherwise, so alarms clear by themselves.

Incremental evaluation. Reading eight weeks of energy and scoring them costs 60-110 ms per closed
hour, a minute or two for 1,000 assets. So each series' window is kept between evaluations
(:class:`~digitaltwin.monitoring.sliding.SlidingWindow`: hourly values, local weekly slots and
the profile), and the next closed hour reads from storage only the hours that can have changed:

* **Frontier.** Readings arrive in time order, so an hour before the one holding the series' last
  reading cannot change any more (power is held only forward, an interval is cut only by the next
  reading), nor, for counters, before the hour of the fifth-from-last reading (a glitch is
  recognised with up to four readings of look-ahead): the frontier of the energy rollups
  (:mod:`digitaltwin.services.energy_rollups`). The sample counts of the kept hours place it. The
  next evaluation reads :func:`~digitaltwin.services.energy.energy_report` from the frontier to the
  new end (usually two hours) and moves the window; only the weekly slots whose values changed or
  left the window get their profile recomputed, and only the run ending at the closed hour is
  built into an event. The result is that of the full computation (tested against it on a real
  building over hundreds of closed hours with late data, gaps and a DST change).
* **Late data.** A closed hour evaluated again (a late reading touched it, so it is not after the
  window) is computed in full from storage, and the window starts over from it; the runner
  evaluates the touched hours in order, so later ones move on from there.
* **Meter rules.** The window depends on the series' kind, interval, meter rules (modulus, power
  limit, meter replacements recorded through the API, which change past energy) and the power
  hold: the same key as the rollups' (:func:`~digitaltwin.services.energy_rollups.rules_key`),
  checked at every evaluation; a changed key, or another site time zone, reads the window anew.
* **Time to live.** What the runner of this process does not see (readings written or deleted by
  another process inside the window) is picked up when the window expires: after
  ``refresh_after``, spread per series over up to twice that so the fleet does not expire at once.

Series whose energy depends on the range read (an interval series without a recorded interval),
sites whose hours are not whole UTC hours, and series beyond ``max_series`` kept windows are scored
in full every time, as before. Counter arithmetic carries its baseline from five readings before
the range read, as the rollups do, so for a register that dips and never recovers the two can
differ after the dip (real registers do not do that).
"""

from __future__ import annotations

import time
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from digitaltwin.analytics.buckets import Bucket
from digitaltwin.domain.units import SeriesKind
from digitaltwin.monitoring import ConsumptionDetector, DetectorSettings
from digitaltwin.monitoring.alarms import Detection, Severity, evidence
from digitaltwin.monitoring.events import AnomalyEvent, AnomalyType
from digitaltwin.monitoring.sliding import SlidingWindow
from digitaltwin.services.energy import ENERGY_QUANTITIES, EnergyReport, energy_report
from digitaltwin.services.energy_rollups import rules_key
from digitaltwin.storage.repository import Repository

#: Weeks of hourly history scored per closed hour (the profile's trailing window).
HISTORY_WEEKS = 8
#: Anomaly types reported per closed hour (stale devices have their own timer; meter events are
#: shown on the energy buckets themselves).
REPORTED = (AnomalyType.PROFILE_RESIDUAL, AnomalyType.FLATLINE, AnomalyType.ZERO_IN_BUSY_HOURS, AnomalyType.SPIKE)
#: Readings from the end whose hours a later reading can still change: the last one (power,
#: interval energy), the fifth from last for counters (the energy rollups' frontier).
_CONTEXT = {SeriesKind.CUMULATIVE: 5}
_HOUR_S = 3600


@dataclass
class _Kept:
    """A series' window between evaluations (see the module docstring)."""

    window: SlidingWindow
    counts: np.ndarray  # readings stamped in each hour of the window
    timezone: str
    rules: str
    context: int
    expires: float  # time.monotonic() from which the window is read anew

    def frontier_s(self) -> int | None:
        """Start of the earliest hour a later reading can still change, None when the window holds
        fewer than ``context`` readings."""
        from_end = np.cumsum(self.counts[::-1])
        i = int(np.searchsorted(from_end, self.context))
        return None if i >= from_end.size else self.window.end_s - (i + 1) * _HOUR_S


def _hourly(report: EnergyReport, start_s: int, end_s: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(energy, sample counts) per hour of ``[start_s, end_s)`` from ``report``'s rows, or None when
    its buckets are not exactly those UTC hours (a site whose hours are offset from UTC ones)."""
    rows = report.rows
    if len(rows) != (end_s - start_s) // _HOUR_S or any(
        int(r.start.timestamp()) != start_s + i * _HOUR_S for i, r in enumerate(rows)
    ):
        return None
    energy = np.array([np.nan if r.energy_kwh is None else r.energy_kwh for r in rows], dtype=float)
    return energy, np.array([r.sample_count for r in rows], dtype=np.int64)


def hour_detections(asset_id: str, start: datetime, end: datetime, events: Iterable[AnomalyEvent]) -> list[Detection]:
    """One detection per :data:`REPORTED` type for the hour ``[start, end)``: active with the
    strongest event of that type covering the hour (its span, severity, score and evidence; an
    infinite score becomes 99), inactive when none covers it."""
    hour = pd.Timestamp(start)
    found: dict[AnomalyType, AnomalyEvent] = {}
    for event in events:
        if event.type in REPORTED and event.start <= hour < event.end:
            kept = found.get(event.type)
            if kept is None or event.score > kept.score:
                found[event.type] = event
    out = []
    for kind in REPORTED:
        event = found.get(kind)
        if event is None:
            out.append(Detection(asset_id, kind.value, Severity.INFO, start, end, 0.0, {}, active=False))
            continue
        score = event.score if event.score != float("inf") else 99.0
        out.append(Detection(
            asset_id, kind.value, event.severity, event.start.to_pydatetime(), event.end.to_pydatetime(), score,
            evidence(event.actual, event.expected_low, event.expected_high, expected_value=event.expected,
                     detail=event.detail, unit="kWh per hour"),
        ))
    return out


class ConsumptionAnomalies:
    """Interval detector of consumption anomalies (see the module docstring).

    Args:
        max_hold: longest hold of one power sample (``Settings.power_max_hold``).
        settings: detector settings (the model is always disabled here).
        refresh_after: a kept window is read anew from storage after this long (spread per series
            up to twice that): the bound on how long a change made by another process inside the
            window can go unseen.
        max_series: windows kept at most (least recently evaluated dropped first; about 60 KB each).

    Attributes:
        reads: how many evaluations read only the changed hours (``"incremental"``) and how many
            the whole window (``"full"``).
    """

    name = "consumption_anomaly"
    interval_s = _HOUR_S

    def __init__(self, *, max_hold: timedelta, settings: DetectorSettings | None = None,
                 refresh_after: timedelta = timedelta(hours=24), max_series: int = 4096) -> None:
        self.max_hold = max_hold
        base = settings or DetectorSettings()
        self.settings = base.model_copy(update={"model": base.model.model_copy(update={"enabled": False})})
        self.detector = ConsumptionDetector(self.settings)
        self.refresh_after_s = refresh_after.total_seconds()
        self.max_series = max_series
        self._kept: OrderedDict[tuple[str, str], _Kept] = OrderedDict()
        self.reads = {"incremental": 0, "full": 0}

    def kept_window(self, asset_id: str, quantity: str) -> SlidingWindow | None:
        """The window kept for a series (None when none is), for diagnostics and tests."""
        kept = self._kept.get((asset_id, quantity))
        return None if kept is None else kept.window

    def forget(self) -> None:
        """Drop every kept window (the next evaluation of each series reads it whole)."""
        self._kept.clear()

    def detect_interval(self, asset_id: str, quantity: str, start: datetime, end: datetime,
                        repo: Repository) -> Iterable[Detection]:
        """Detections of every reported type for the hour ``[start, end)`` of ``asset_id``.

        Raises:
            NotFoundError: unknown asset or no series of ``quantity`` (from the energy report).
        """
        if quantity not in ENERGY_QUANTITIES:
            return []
        events = self._newest_events(asset_id, quantity, start, end, repo)
        return [] if events is None else hour_detections(asset_id, start, end, events)

    def _newest_events(self, asset_id: str, quantity: str, start: datetime, end: datetime,
                       repo: Repository) -> list[AnomalyEvent] | None:
        """Events of the window ending with the hour (those covering it among them), None with
        fewer than two hours of energy in the window."""
        key = (asset_id, quantity)
        end_s = int(end.timestamp())
        lo_s = end_s - HISTORY_WEEKS * 7 * 86_400
        lo = end - timedelta(weeks=HISTORY_WEEKS)
        info = repo.find_series(asset_id, quantity)
        rules = rules_key(repo, repo.get_asset(asset_id), info, self.max_hold) if info is not None else None
        kept = self._kept.pop(key, None)
        if (kept is not None and rules is not None and kept.rules == rules and time.monotonic() < kept.expires
                and end_s > kept.window.end_s and end_s % _HOUR_S == 0):
            frontier = kept.frontier_s()
            from_s = max(frontier, lo_s) if frontier is not None else lo_s
            if from_s > lo_s:
                report = self._report(repo, asset_id, quantity, datetime.fromtimestamp(from_s, end.tzinfo), end)
                hourly = _hourly(report, from_s, end_s)
                if hourly is not None and report.timezone == kept.timezone:
                    old_start = kept.window.start_s
                    kept.window.move(lo_s, from_s, hourly[0])
                    kept.counts = np.concatenate([kept.counts[(lo_s - old_start) // _HOUR_S : (from_s - old_start) // _HOUR_S], hourly[1]])
                    self.reads["incremental"] += 1
                    return self._scored(key, kept)
        self.reads["full"] += 1
        report = self._report(repo, asset_id, quantity, lo, end)
        hourly = _hourly(report, lo_s, end_s) if end_s % _HOUR_S == 0 else None
        if hourly is None or rules is None or info is None:  # scored in full every time (see the module docstring)
            y = pd.Series([r.energy_kwh for r in report.rows], index=pd.DatetimeIndex([r.start for r in report.rows]), dtype=float)
            return None if y.notna().sum() < 2 else self.detector.detect(y, timezone=report.timezone).events
        window = SlidingWindow(lo_s, hourly[0], step_s=_HOUR_S, timezone=report.timezone, settings=self.settings)
        spread = zlib.crc32(f"{asset_id}\0{quantity}".encode()) / 2**32  # expiry spread over [1, 2) x refresh_after
        kept = _Kept(window, hourly[1], report.timezone, rules, _CONTEXT.get(info.kind, 1),
                     time.monotonic() + self.refresh_after_s * (1.0 + spread))
        return self._scored(key, kept)

    def _report(self, repo: Repository, asset_id: str, quantity: str, start: datetime, end: datetime) -> EnergyReport:
        return energy_report(repo, asset_id, start=start, end=end, bucket=Bucket.HOUR, max_hold=self.max_hold,
                             quantity=quantity, now=end)

    def _scored(self, key: tuple[str, str], kept: _Kept) -> list[AnomalyEvent] | None:
        """Keep the window (most recently used last, the oldest dropped past ``max_series``) and score it."""
        self._kept[key] = kept
        while len(self._kept) > self.max_series:
            self._kept.popitem(last=False)
        if np.count_nonzero(np.isfinite(kept.window.values)) < 2:
            return None
        return kept.window.newest_events()
