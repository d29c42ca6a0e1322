"""The monitoring parts of one process, built from settings and started and stopped together.

The API process (``serve``) runs the detection hook of its own ingestion (HTTP, and MQTT when it
subscribes), the webhook workers, the stale-device timer and the forecast schedule (issuing and
drift). A separate ``digitaltwin ingest`` worker runs the detection hook and webhook workers of
what it ingests (:func:`open_monitoring` with ``timers=False``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from digitaltwin.config import Settings
from digitaltwin.monitoring.alarms import Hysteresis
from digitaltwin.monitoring.skill import DriftSettings
from digitaltwin.monitoring.stale_device import StaleSettings
from digitaltwin.observability.metrics import Metrics
from digitaltwin.security.client_address import parse_networks
from digitaltwin.services.alarms import AlarmService
from digitaltwin.services.anomaly_alarms import ConsumptionAnomalies
from digitaltwin.services.detection import BatchDetector, DetectionRunner, StaleDeviceChecker, start_periodic
from digitaltwin.services.forecast_monitor import ForecastMonitor
from digitaltwin.services.forecasting import ForecastService
from digitaltwin.services.live_state import LiveState
from digitaltwin.services.webhook_targets import TargetPolicy
from digitaltwin.services.webhooks import WebhookNotifier
from digitaltwin.storage.monitoring_store import MonitoringStore
from digitaltwin.storage.repository import Repository

log = logging.getLogger(__name__)


@dataclass
class Monitoring:
    """The parts (see the module docstring); ``forecast_monitor`` is None without a forecasting service."""

    store: MonitoringStore
    notifier: WebhookNotifier
    alarms: AlarmService
    runner: DetectionRunner
    stale: StaleDeviceChecker
    forecast_monitor: ForecastMonitor | None
    timers: list[tuple[threading.Thread, threading.Event]] = field(default_factory=list)

    def stop(self) -> None:
        """Stop timers, the detection worker, then the webhook workers."""
        for thread, stop in self.timers:
            stop.set()
            thread.join(timeout=5)
        self.runner.stop()
        self.notifier.stop()


def webhook_targets(settings: Settings) -> TargetPolicy:
    """The addresses webhooks may reach: public ones and ``WEBHOOK_ALLOWED_NETWORKS``."""
    return TargetPolicy(parse_networks(settings.webhook_allowed_networks, field="WEBHOOK_ALLOWED_NETWORKS"))


def open_monitoring(settings: Settings, repo: Repository, *, metrics: Metrics | None, live: LiveState | None,
                    forecasts: ForecastService | None = None, detectors: Sequence[BatchDetector] = (),
                    timers: bool = True) -> Monitoring:
    """Build and start the monitoring of one process (see the module docstring)."""
    store = MonitoringStore(repo.engine)
    notifier = WebhookNotifier(
        store, metrics=metrics, max_attempts=settings.webhook_max_attempts, backoff_s=settings.webhook_backoff_seconds,
        timeout_s=settings.webhook_timeout_seconds, targets=webhook_targets(settings),
    )
    alarms = AlarmService(store, repo, metrics=metrics, notifier=notifier, live=live,
                          hysteresis=Hysteresis(settings.alarm_clear_after))
    anomalies = [ConsumptionAnomalies(max_hold=settings.power_max_hold)] if settings.anomaly_detection else []
    runner = DetectionRunner(alarms, repo, detectors, metrics=metrics, interval_detectors=anomalies)
    stale = StaleDeviceChecker(
        store, repo, alarms, metrics=metrics,
        settings=StaleSettings(settings.stale_missed_intervals, max(settings.stale_critical_intervals, settings.stale_missed_intervals)),
    )
    monitor = None
    if forecasts is not None:
        monitor = ForecastMonitor(
            forecasts, store, alarms, issue_at=settings.forecast_issue_local_time, assets=settings.forecast_issue_assets,
            drift=DriftSettings(settings.drift_factor, settings.drift_clear_ratio, settings.drift_min_points),
            retrain=settings.drift_retrain, metrics=metrics,
        )
    monitoring = Monitoring(store, notifier, alarms, runner, stale, monitor)
    notifier.start()
    runner.start()
    alarms.refresh_gauge()
    if timers:
        if settings.stale_check_seconds > 0:
            monitoring.timers.append(start_periodic("stale-device-check", settings.stale_check_seconds, stale.run_once))
        if monitor is not None and (settings.forecast_issue_local_time is not None or settings.forecast_issue_assets):
            monitoring.timers.append(
                start_periodic("forecast-monitor", settings.forecast_monitor_check_seconds, monitor.run_once)
            )
    return monitoring
