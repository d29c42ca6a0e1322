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
  next evaluation reads from the frontier to the new end (usually two hours) and moves the window;
  only the weekly slots whose values changed or left the window get their profile recomputed, and
  only the tail that decides the closed hour is scored. The result is that of the full
  computation (tested against it on real buildings over hundreds of closed hours with late data,
  gaps, a dropout, a meter replacement and a DST change).
* **Batches.** The runner hands over all the closed hours of a committed batch
  (:meth:`ConsumptionAnomalies.detect_intervals`): the assets, sites, meter rules and readings of
  all their series are read in a few queries (:meth:`Repository.readings_with_context` reads what
  :func:`~digitaltwin.services.energy.read_window` reads, for many series), and each series' hours
  come from energy's own :func:`~digitaltwin.services.energy.bucket_totals` (the numbers of
  :func:`~digitaltwin.services.energy.energy_report` on raw readings; the detector reads raw
  readings whether or not ``ENERGY_ROLLUPS`` is on). A window read whole (a new series, the first
  evaluation after a start) is read the same way, with the other series of its batch.
* **Late data.** A closed hour evaluated again (a late reading touched it, so it is not after the
  window) is read whole, and the window starts over from it; the runner evaluates the touched
  hours of a series in order, so later ones move on from there.
* **Meter rules.** The window depends on the series' kind, interval, meter rules (modulus, power
  limit, meter replacements recorded through the API, which change past energy) and the power
  hold: the same key as the rollups' (:func:`~digitaltwin.services.energy_rollups.rules_key_of`),
  checked at every evaluation; a changed key, or another site time zone, reads the window anew.
* **Time to live.** What the runner of this process does not see (readings written or deleted by
  another process inside the window) is picked up when the window expires: after
  ``refresh_after``, spread per series over up to twice that so the fleet does not expire at once.

Series whose energy depends on the range read (an interval series without a recorded interval),
sites whose hours are not whole UTC hours, and series beyond ``max_series`` kept windows are read
by the energy report and scored in full every time, as before. Counter arithmetic carries its
baseline from five readings before the range read, as the rollups do, so for a register that dips
and never recovers the two can differ after the dip (real registers do not do that).
"""

from __future__ import annotations

import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from digitaltwin.analytics.buckets import Bucket
from digitaltwin.domain.assets import Asset, Site
from digitaltwin.domain.timestamps import zone
from digitaltwin.domain.units import SeriesKind
from digitaltwin.monitoring import ConsumptionDetector, DetectorSettings
from digitaltwin.monitoring.alarms import Detection, Severity, evidence
from digitaltwin.monitoring.events import AnomalyEvent, AnomalyType
from digitaltwin.monitoring.sliding import SlidingWindow
from digitaltwin.services.detection import IntervalRequest
from digitaltwin.services.energy import (
    COUNTER_CONTEXT_READINGS,
    ENERGY_QUANTITIES,
    EnergyReport,
    WindowReadings,
    bucket_totals,
    energy_report,
    hold_until_us,
    window_edges_us,
)
from digitaltwin.services.energy_rollups import rules_key, rules_key_of
from digitaltwin.services.meter import counter_rules
from digitaltwin.storage.meter_events import MeterEventStore, StoredReplacement
from digitaltwin.storage.repository import ReadingSpan, Repository, SeriesInfo

#: Weeks of hourly history scored per closed hour (the profile's trailing window).
HISTORY_WEEKS = 8
#: Anomaly types reported per closed hour (stale devices have their own timer; meter events are
#: shown on the energy buckets themselves).
REPORTED = (AnomalyType.PROFILE_RESIDUAL, AnomalyType.FLATLINE, AnomalyType.ZERO_IN_BUSY_HOURS, AnomalyType.SPIKE)
#: Readings from the end whose hours a later reading can still change: the last one (power,
#: interval energy), for counters the glitch look-ahead plus the closing reading (the fifth from
#: last: the energy rollups' frontier).
_CONTEXT = {SeriesKind.CUMULATIVE: COUNTER_CONTEXT_READINGS}
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
    return energy, np.array([r.sample_count for r in rows], dtype=np.int32)


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


@dataclass(frozen=True, slots=True)
class _Step:
    """An evaluation of one series in a batch: read ``[from_s, end)`` and move the kept window to end
    there (``from_s`` is the window's start when there is none to move)."""

    index: int  # of the request
    key: tuple[str, str]
    info: SeriesInfo
    kept: _Kept | None  # None: the window is read whole and kept anew
    start: datetime
    end: datetime
    lo_s: int
    from_s: int


@dataclass(frozen=True, slots=True)
class _Fetched:
    """What the steps of one batch read from storage, a few queries for all of them."""

    assets: dict[str, Asset]
    sites: dict[str, Site]
    attributes: dict[int, dict[str, Any]]
    replacements: dict[int, list[StoredReplacement]]
    readings: dict[int, tuple[np.ndarray, np.ndarray]]


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

    def detect_interval(self, asset_id: str, quantity: str, start: datetime, end: datetime,
                        repo: Repository) -> Iterable[Detection]:
        """Detections of every reported type for the hour ``[start, end)`` of ``asset_id``.

        Raises:
            NotFoundError: unknown asset or no series of ``quantity`` (from the energy report).
        """
        result = self.detect_intervals([IntervalRequest(asset_id, quantity, start, end)], repo)[0]
        if isinstance(result, Exception):
            raise result
        return result

    def detect_intervals(self, requests: Sequence[IntervalRequest], repo: Repository) -> list[list[Detection] | Exception]:
        """:meth:`detect_interval` for the closed hours of one batch, in order: the series whose kept
        window moves on are read together (assets, sites, meter rules and readings in a few
        queries for all), the others one by one. One result per request: its detections or the
        exception that stopped it."""
        out: list[list[Detection] | Exception] = [[] for _ in requests]
        per_series: dict[tuple[str, str], list[int]] = {}
        for i, r in enumerate(requests):
            if r.quantity in ENERGY_QUANTITIES:
                per_series.setdefault((r.asset_id, r.quantity), []).append(i)
        steps: list[_Step] = []
        for key, indexes in per_series.items():
            step = self._step(indexes[0], requests[indexes[0]], repo) if len(indexes) == 1 else None
            if step is not None:
                steps.append(step)
                continue
            for i in indexes:  # several hours of one series (late data), or no window to move: one by one, in order
                out[i] = self._guarded(lambda i=i: self._one(i, requests[i], repo))
        if steps:
            fetched = self._guarded(lambda: self._fetch(steps, repo))
            for step in steps:
                r = requests[step.index]
                if isinstance(fetched, Exception):
                    out[step.index] = fetched
                else:
                    out[step.index] = self._guarded(lambda st=step, r=r, f=fetched: self._moved(st, f, r, repo))
        return out

    def _one(self, index: int, r: IntervalRequest, repo: Repository) -> list[Detection]:
        step = self._step(index, r, repo)
        return self._full(r, repo) if step is None else self._moved(step, self._fetch([step], repo), r, repo)

    @staticmethod
    def _guarded(run: Callable[[], Any]) -> Any:
        try:
            return run()
        except Exception as exc:  # noqa: BLE001 - handed to the runner, which logs and counts it per interval
            return exc

    def _step(self, index: int, r: IntervalRequest, repo: Repository) -> _Step | None:
        """What to read for ``r`` with the other series of the batch: from the kept window's frontier
        when it can move on, else the whole window (``kept`` None); None when the energy report
        must read it (an unknown series)."""
        end_s = int(r.end.timestamp())
        if end_s % _HOUR_S:
            return None
        info = repo.find_series(r.asset_id, r.quantity)
        if info is None:
            return None
        key = (r.asset_id, r.quantity)
        lo_s = end_s - HISTORY_WEEKS * 7 * 86_400
        kept = self._kept.get(key)
        if kept is not None and time.monotonic() < kept.expires and end_s > kept.window.end_s:
            frontier = kept.frontier_s()
            if frontier is not None and frontier > lo_s:
                return _Step(index, key, info, kept, r.start, r.end, lo_s, frontier)
        return _Step(index, key, info, None, r.start, r.end, lo_s, lo_s)  # a late hour, or nothing kept to move

    def _fetch(self, steps: list[_Step], repo: Repository) -> _Fetched:
        assets = repo.get_assets({st.key[0] for st in steps})
        sites = repo.get_sites({a.site_id for a in assets.values()})
        events = MeterEventStore(repo.engine)
        ids = [st.info.id for st in steps]
        counters = [st.info.id for st in steps if st.info.kind is SeriesKind.CUMULATIVE]
        context = {SeriesKind.CUMULATIVE: (COUNTER_CONTEXT_READINGS, COUNTER_CONTEXT_READINGS)}  # as read_window reads
        spans = [ReadingSpan(st.info.id, datetime.fromtimestamp(st.from_s, UTC), st.end, *context.get(st.info.kind, (1, 0))) for st in steps]
        return _Fetched(assets, sites, events.series_attributes_many(ids), events.replacements_many(counters),
                        repo.readings_with_context(spans))

    def _moved(self, st: _Step, fetched: _Fetched, r: IntervalRequest, repo: Repository) -> list[Detection]:
        moved = self._advance(st, fetched, repo)
        return self._full(r, repo) if moved is None else moved

    def _advance(self, st: _Step, fetched: _Fetched, repo: Repository) -> list[Detection] | None:
        """Move the kept window by ``st`` (or build it, without one) and score it; None when the
        energy report must read it whole instead (the series' meter rules or site time zone
        changed, its energy depends on the range read, or its hours are not UTC hours)."""
        asset = fetched.assets.get(st.key[0])
        site = fetched.sites.get(asset.site_id) if asset is not None else None
        if asset is None or site is None or (st.kept is not None and site.timezone != st.kept.timezone):
            return None
        rules = counter_rules(repo, asset, st.info, attributes=fetched.attributes.get(st.info.id, {}),
                              stored=fetched.replacements.get(st.info.id, []))
        key = rules_key_of(st.info, rules, self.max_hold)
        if key is None or (st.kept is not None and key != st.kept.rules):
            return None
        edges_us = window_edges_us(datetime.fromtimestamp(st.from_s, UTC), st.end, Bucket.HOUR, zone(site.timezone))
        hours = np.arange(edges_us.size, dtype=np.int64) * (_HOUR_S * 1_000_000) + st.from_s * 1_000_000
        if not np.array_equal(edges_us, hours):
            return None
        ts_s, values = fetched.readings[st.info.id]
        totals = bucket_totals(st.info, WindowReadings(ts_s, values), edges_us, max_hold=self.max_hold,
                               until_us=hold_until_us(edges_us, st.end), rules=rules)
        energy = np.where(np.isfinite(totals.energy_kwh), totals.energy_kwh, np.nan)  # as the report's rows
        counts = np.asarray(totals.sample_count, dtype=np.int32)
        if st.kept is None:
            self._kept.pop(st.key, None)
            self.reads["full"] += 1
            kept = self._new_kept(st.key, SlidingWindow(st.lo_s, energy, step_s=_HOUR_S, timezone=site.timezone, settings=self.settings),
                                  counts, site.timezone, key, st.info)
        else:
            kept, old_start = st.kept, st.kept.window.start_s
            kept.window.move(st.lo_s, st.from_s, energy)
            kept.counts = np.concatenate([kept.counts[(st.lo_s - old_start) // _HOUR_S : (st.from_s - old_start) // _HOUR_S], counts])
            self.reads["incremental"] += 1
        events = self._scored(st.key, kept)
        return [] if events is None else hour_detections(st.key[0], st.start, st.end, events)

    def _new_kept(self, key: tuple[str, str], window: SlidingWindow, counts: np.ndarray, timezone: str, rules: str,
                  info: SeriesInfo) -> _Kept:
        spread = zlib.crc32(f"{key[0]}\0{key[1]}".encode()) / 2**32  # expiry spread over [1, 2) x refresh_after
        return _Kept(window, counts, timezone, rules, _CONTEXT.get(info.kind, 1), time.monotonic() + self.refresh_after_s * (1.0 + spread))

    def _full(self, r: IntervalRequest, repo: Repository) -> list[Detection]:
        """The hour scored from its whole window read from storage (and the window kept when it can be)."""
        key = (r.asset_id, r.quantity)
        self._kept.pop(key, None)
        self.reads["full"] += 1
        end_s = int(r.end.timestamp())
        lo_s = end_s - HISTORY_WEEKS * 7 * 86_400
        report = energy_report(repo, r.asset_id, start=r.end - timedelta(weeks=HISTORY_WEEKS), end=r.end, bucket=Bucket.HOUR,
                               max_hold=self.max_hold, quantity=r.quantity, now=r.end, use_rollups=False)
        info = repo.find_series(r.asset_id, r.quantity)
        rules = rules_key(repo, repo.get_asset(r.asset_id), info, self.max_hold) if info is not None else None
        hourly = _hourly(report, lo_s, end_s) if end_s % _HOUR_S == 0 else None
        if hourly is None or rules is None or info is None:  # scored in full every time (see the module docstring)
            y = pd.Series([x.energy_kwh for x in report.rows], index=pd.DatetimeIndex([x.start for x in report.rows]), dtype=float)
            if y.notna().sum() < 2:
                return []
            return hour_detections(r.asset_id, r.start, r.end, self.detector.detect(y, timezone=report.timezone).events)
        window = SlidingWindow(lo_s, hourly[0], step_s=_HOUR_S, timezone=report.timezone, settings=self.settings)
        events = self._scored(key, self._new_kept(key, window, hourly[1], report.timezone, rules, info))
        return [] if events is None else hour_detections(r.asset_id, r.start, r.end, events)

    def _scored(self, key: tuple[str, str], kept: _Kept) -> list[AnomalyEvent] | None:
        """Keep the window (most recently used last, the oldest dropped past ``max_series``) and
        score it; None with fewer than two hours of energy in it."""
        self._kept[key] = kept
        self._kept.move_to_end(key)
        while len(self._kept) > self.max_series:
            self._kept.popitem(last=False)
        if np.count_nonzero(np.isfinite(kept.window.values)) < 2:
            return None
        return kept.window.newest_events()
