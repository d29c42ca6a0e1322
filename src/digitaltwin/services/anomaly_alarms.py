"""Consumption anomalies as alarms: the detectors of :mod:`digitaltwin.monitoring` run as data arrives.

:class:`ConsumptionAnomalies` is an interval detector of the detection runner
(:mod:`digitaltwin.services.detection`): when an hour of an energy-carrying series closes (or late
data touches a closed hour), it reads the asset's hourly energy of the trailing
:data:`HISTORY_WEEKS` weeks (the profile's window, on the site's calendar, with the meter events of
the energy accounting), scores it with :class:`~digitaltwin.monitoring.ConsumptionDetector` (the
robust hour-of-week profile, the rule detectors, k-of-n persistence; the model-based score is the
offline benchmark's, too costly per closed hour) and reports, for each anomaly type, an active
detection when an event covers the hour and an inactive one otherwise, so alarms clear by themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import pandas as pd

from digitaltwin.analytics.buckets import Bucket
from digitaltwin.monitoring import ConsumptionDetector, DetectorSettings
from digitaltwin.monitoring.alarms import Detection, Severity, evidence
from digitaltwin.monitoring.events import AnomalyType
from digitaltwin.services.energy import ENERGY_QUANTITIES, energy_report
from digitaltwin.storage.repository import Repository

#: Weeks of hourly history scored per closed hour (the profile's trailing window).
HISTORY_WEEKS = 8
#: Anomaly types reported per closed hour (stale devices have their own timer; meter events are
#: shown on the energy buckets themselves).
REPORTED = (AnomalyType.PROFILE_RESIDUAL, AnomalyType.FLATLINE, AnomalyType.ZERO_IN_BUSY_HOURS, AnomalyType.SPIKE)


class ConsumptionAnomalies:
    """Interval detector of consumption anomalies (see the module docstring).

    Args:
        max_hold: longest hold of one power sample (``Settings.power_max_hold``).
    """

    name = "consumption_anomaly"
    interval_s = 3600

    def __init__(self, *, max_hold: timedelta, settings: DetectorSettings | None = None) -> None:
        self.max_hold = max_hold
        base = settings or DetectorSettings()
        self.detector = ConsumptionDetector(base.model_copy(update={"model": base.model.model_copy(update={"enabled": False})}))

    def detect_interval(self, asset_id: str, quantity: str, start: datetime, end: datetime,
                        repo: Repository) -> Iterable[Detection]:
        """Detections of every reported type for the hour ``[start, end)`` of ``asset_id``."""
        if quantity not in ENERGY_QUANTITIES:
            return []
        report = energy_report(repo, asset_id, start=end - timedelta(weeks=HISTORY_WEEKS), end=end,
                               bucket=Bucket.HOUR, max_hold=self.max_hold, quantity=quantity, now=end)
        index = pd.DatetimeIndex([r.start for r in report.rows])
        y = pd.Series([r.energy_kwh for r in report.rows], index=index, dtype=float)
        if y.notna().sum() < 2:
            return []
        result = self.detector.detect(y, timezone=report.timezone)
        hour = pd.Timestamp(start)
        found = {}
        for event in result.events:
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

