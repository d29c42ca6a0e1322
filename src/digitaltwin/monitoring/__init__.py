"""Monitoring, pure (no storage, no I/O): anomaly detection on consumption, and the alarm model,
stale-device check and forecast skill (``alarms``, ``stale_device``, ``skill``, ``alarm_settings``).

Entry points: :class:`ConsumptionDetector` (one series) and :func:`detect_fleet` (many, failures
isolated), configured by :class:`DetectorSettings` (validated; :func:`parse_settings` for untrusted
input), producing :class:`AnomalyEvent` objects an alarm layer can store and notify.
"""

from digitaltwin.monitoring.detector import ConsumptionDetector, Detection, FleetDetection, detect_fleet
from digitaltwin.monitoring.events import AnomalyEvent, AnomalyType, Severity
from digitaltwin.monitoring.settings import (
    DetectorSettings,
    ModelSettings,
    PersistenceSettings,
    ProfileSettings,
    RuleSettings,
    parse_settings,
)

__all__ = [
    "AnomalyEvent",
    "AnomalyType",
    "ConsumptionDetector",
    "Detection",
    "DetectorSettings",
    "FleetDetection",
    "ModelSettings",
    "PersistenceSettings",
    "ProfileSettings",
    "RuleSettings",
    "Severity",
    "detect_fleet",
    "parse_settings",
]
