"""Forecast-vs-actual monitoring: issuing forecasts on a schedule, scoring every stored forecast, drift.

* :meth:`ForecastMonitor.issue` forecasts an asset with its champion (day-ahead, quantiles
  0.1/0.5/0.9) and stores it as issued, source ``model:<model_id>``. The schedule
  (:meth:`ForecastMonitor.run_once`, every ``check_seconds``) issues each configured asset
  (every asset with a champion when none are listed) once per local day of its site, at the
  first check at or after ``FORECAST_ISSUE_LOCAL_TIME``.
* External forecasts (``POST /api/v1/assets/{id}/forecasts``) are stored the same way, source
  ``external:<name>``.
* :meth:`ForecastMonitor.skill` scores all of them against the asset's actual energy per
  interval (:mod:`digitaltwin.monitoring.skill`): whatever has actuals by now is scored, so a
  forecast is scored as its actuals arrive.
* :meth:`ForecastMonitor.check_drift` compares the 7-day MAE of the newest model source with
  its model's backtest MAE; a raised ``forecast_drift`` alarm triggers a retraining of the
  champion's algorithm at its horizon in the background, through
  :meth:`ForecastService.train`, so the champion rule decides whether the new model serves.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd

from digitaltwin.domain.errors import DomainError, NotFoundError
from digitaltwin.monitoring.alarms import Detection
from digitaltwin.monitoring.alarm_settings import merged
from digitaltwin.monitoring.skill import DRIFT_TYPE, WINDOWS, DriftSettings, SkillRow, drift_detection, skill_table
from digitaltwin.observability.metrics import Metrics
from digitaltwin.registry.errors import RegistryError
from digitaltwin.services.alarms import AlarmService, Applied
from digitaltwin.services.forecasting import BEST, DAY_AHEAD_HORIZON, ForecastService
from digitaltwin.storage.monitoring_store import ForecastPoint, IssuedForecast, MonitoringStore

log = logging.getLogger(__name__)

MODEL_PREFIX = "model:"
EXTERNAL_PREFIX = "external:"
ISSUED_QUANTILES = (0.1, 0.5, 0.9)


class ForecastMonitor:
    """See the module docstring.

    Args:
        forecasts: the forecasting service.
        store: the monitoring tables.
        alarms: where drift detections go (None: drift is not checked).
        issue_at: local time of the daily issue (None: not scheduled).
        assets: assets issued on the schedule (empty: every asset with a champion).
        drift: drift settings; ``retrain`` whether a raised drift alarm retrains.
    """

    def __init__(self, forecasts: ForecastService, store: MonitoringStore, alarms: AlarmService | None = None, *,
                 issue_at: time | None = None, assets: Sequence[str] = (), drift: DriftSettings = DriftSettings(),
                 retrain: bool = True, metrics: Metrics | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.forecasts, self.store, self.alarms = forecasts, store, alarms
        self.issue_at, self.assets, self.drift, self.retrain = issue_at, list(assets), drift, retrain
        self.metrics, self.clock = metrics, clock
        self.retrainings: list[threading.Thread] = []
        if alarms is not None and retrain:
            alarms.on_change.append(self._on_alarm)

    # -- issuing --------------------------------------------------------------------------
    def issue(self, asset_id: str, now: datetime | None = None, *, horizon: timedelta = DAY_AHEAD_HORIZON) -> IssuedForecast:
        """Forecast ``asset_id`` with its champion and store it as issued at ``now``.

        Raises:
            NotFoundError: no champion or no readings (as :meth:`ForecastService.forecast`).
        """
        now = now or self.clock()
        result = self.forecasts.forecast(asset_id, BEST, horizon=horizon, quantiles=ISSUED_QUANTILES)
        model_id = result.manifest.model_id if result.manifest is not None else result.algorithm
        quantiles = result.forecast.quantiles
        points = [
            ForecastPoint(
                ts.to_pydatetime(), float(value),
                {float(level): float(quantiles.at[ts, level]) for level in quantiles.columns} if len(quantiles.columns) else None,
            )
            for ts, value in result.values.items()
            if math.isfinite(float(value))
        ]
        return self.store.save_forecast(asset_id, MODEL_PREFIX + model_id, now, int(result.step.total_seconds()), points)

    def due(self, now: datetime | None = None) -> list[str]:
        """Assets to issue now: the site's local time is past ``issue_at`` and nothing was issued
        by a model since that local time today."""
        if self.issue_at is None:
            return []
        now = now or self.clock()
        assets = self.assets or [a for a in self.forecasts.registry.assets() if self.forecasts.server.champion(a) is not None]
        out = []
        for asset_id in assets:
            try:
                site = self.forecasts.repo.get_site(self.forecasts.repo.get_asset(asset_id).site_id)
            except NotFoundError:
                continue
            local = now.astimezone(ZoneInfo(site.timezone))
            slot = datetime.combine(local.date(), self.issue_at, tzinfo=ZoneInfo(site.timezone))
            if local < slot:
                continue
            last = self.store.last_issued(asset_id, MODEL_PREFIX)
            if last is None or last < slot.astimezone(UTC):
                out.append(asset_id)
        return out

    def run_once(self, now: datetime | None = None) -> None:
        """Issue what is due, then check drift of every asset with model forecasts; one asset's
        failure is logged and counted and never stops the others."""
        now = now or self.clock()
        for asset_id in self.due(now):
            try:
                issued = self.issue(asset_id, now)
                log.info("issued %s for %s (%d points)", issued.source, asset_id, issued.points)
            except Exception as exc:  # noqa: BLE001
                log.error("issuing a forecast of %s failed: %s", asset_id, exc)
                self._failed("forecast_issue")
        if self.alarms is None:
            return
        for asset_id in self.assets or self.forecasts.registry.assets():
            try:
                detection = self.check_drift(asset_id, now)
            except Exception:  # noqa: BLE001
                log.exception("drift check of %s failed", asset_id)
                self._failed(DRIFT_TYPE)
                continue
            if detection is not None:
                self.alarms.apply([detection])

    def _failed(self, name: str) -> None:
        if self.metrics is not None:
            self.metrics.detector_failures.labels(name).inc()

    # -- scoring --------------------------------------------------------------------------
    def skill(self, asset_id: str, *, end: datetime | None = None, source: str | None = None) -> list[SkillRow]:
        """The skill table of ``asset_id`` over the windows ending at ``end`` (default now).

        Raises:
            NotFoundError: unknown asset.
        """
        self.forecasts.repo.get_asset(asset_id)
        end = end or self.clock()
        start = end - max(WINDOWS.values())
        points = self.store.forecast_points(asset_id, start=start, end=end, source=source)
        if points.empty:
            return []
        try:
            actual = self.forecasts.target(asset_id, start=start, end=end).y
        except NotFoundError:
            actual = pd.Series(dtype=float)
        return skill_table(points, actual, end=end)

    def check_drift(self, asset_id: str, now: datetime | None = None) -> Detection | None:
        """The drift detection of the newest model source of ``asset_id`` (None: nothing to decide);
        the asset's own ``forecast_drift`` settings override the defaults."""
        now = now or self.clock()
        models = [f for f in self.store.forecasts(asset_id, limit=50) if f.source.startswith(MODEL_PREFIX)]
        if not models:
            return None
        source = models[0].source
        rows = [r for r in self.skill(asset_id, end=now, source=source) if r.window == "7d" and r.lead == "all"]
        if not rows:
            return None
        try:
            manifest = self.forecasts.registry.manifest(source.removeprefix(MODEL_PREFIX))
        except (RegistryError, DomainError, ValueError):
            return None
        backtest_mae = float(manifest.metrics.get("mae", math.nan))
        is_open = bool(self.alarms and self.alarms.store.open_alarms([(asset_id, DRIFT_TYPE)]))
        overrides = self.store.detector_settings(asset_id=asset_id, detector=DRIFT_TYPE).get((asset_id, DRIFT_TYPE))
        return drift_detection(asset_id, source=source, row=rows[0], backtest_mae=backtest_mae, is_open=is_open,
                               start=now - WINDOWS["7d"], end=now, settings=merged(DRIFT_TYPE, self.drift, overrides))

    def _on_alarm(self, applied: Applied) -> None:
        """A raised drift alarm retrains the champion's algorithm at its horizon, in the background."""
        if applied.alarm.type != DRIFT_TYPE or applied.change.value != "raised":
            return
        source = str(applied.alarm.evidence.get("source", ""))
        if not source.startswith(MODEL_PREFIX):
            return
        thread = threading.Thread(target=self._retrain, args=(applied.alarm.asset_id, source.removeprefix(MODEL_PREFIX)),
                                  name=f"drift-retrain-{applied.alarm.asset_id}", daemon=True)
        self.retrainings.append(thread)
        thread.start()

    def _retrain(self, asset_id: str, model_id: str) -> None:
        try:
            manifest = self.forecasts.registry.manifest(model_id)
            step_s = next((f.step_s for f in self.store.forecasts(asset_id, limit=1)), 3600)
            result = self.forecasts.train(asset_id, manifest.algorithm,
                                          horizon=timedelta(seconds=step_s * manifest.horizon_steps))
            log.info("drift retraining of %s: %s (%s)", asset_id, result.manifest.model_id, result.reason)
        except Exception as exc:  # noqa: BLE001 - retried at the next raise
            log.error("drift retraining of %s failed: %s", asset_id, exc)
            self._failed("drift_retrain")
