"""Scheduled retraining: each asset's champion algorithm is retrained on its cadence.

An asset is due when its newest model of the champion's algorithm is older than
its cadence (``RETRAIN_ASSET_CADENCE`` for the asset, else
``RETRAIN_CADENCE_HOURS``). The champion's algorithm is retrained at the
champion's horizon through :meth:`ForecastService.train` under the asset's
training lock, so the champion rule (:mod:`digitaltwin.registry.champion`) applies:
the same algorithm and horizon on a training window ending later replaces the
champion; without newer data the champion is kept. Failures are logged and
retried at the next check; they never stop the scheduler.

With ``submit`` (the API's scheduler) a retraining is queued as a training job
(:mod:`digitaltwin.jobs`) instead of run in the scheduler's thread, so it counts against
the jobs' limits, shows in ``GET /api/v1/jobs`` and can be cancelled; an asset whose
training is still queued or running is skipped until the next check.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from digitaltwin.domain.errors import ConflictError
from digitaltwin.services.forecasting import DAY_AHEAD_HORIZON, ForecastService, TrainResult

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainOutcome:
    """One scheduled retraining: the result (or the queued job's id), or the error that stopped it."""

    asset_id: str
    algorithm: str
    result: TrainResult | None
    error: str | None = None
    job_id: str | None = None


class RetrainScheduler:
    """Retrain champions whose models are older than their cadence.

    Args:
        service: the forecasting service.
        default_hours: cadence of every asset without its own; 0 = not scheduled.
        per_asset_hours: cadence per asset id (hours), overriding ``default_hours``.
        check_seconds: period of :meth:`run`'s checks.
        clock: current UTC time (for tests).
        submit: queue a training job ``(asset_id, algorithm, horizon) -> job`` instead of training
            here (the job's ``id`` is kept in the outcome).
    """

    def __init__(
        self,
        service: ForecastService,
        *,
        default_hours: float,
        per_asset_hours: dict[str, float] | None = None,
        check_seconds: float = 300.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        submit: Callable[[str, str, timedelta], Any] | None = None,
    ) -> None:
        self.submit = submit
        self.service = service
        self.default_hours = default_hours
        self.per_asset_hours = dict(per_asset_hours or {})
        self.check_seconds = check_seconds
        self.clock = clock

    @property
    def enabled(self) -> bool:
        return self.default_hours > 0 or any(h > 0 for h in self.per_asset_hours.values())

    def cadence(self, asset_id: str) -> timedelta | None:
        """The asset's cadence, or ``None`` when it is not scheduled."""
        hours = self.per_asset_hours.get(asset_id, self.default_hours)
        return timedelta(hours=hours) if hours > 0 else None

    def due(self, now: datetime | None = None) -> list[tuple[str, str]]:
        """``(asset_id, algorithm)`` pairs to retrain now: assets with a champion whose newest
        model of that algorithm is at least one cadence old (newest by creation time, UTC)."""
        now = now or self.clock()
        out = []
        for asset_id in self.service.registry.assets():
            cadence = self.cadence(asset_id)
            champion = self.service.server.champion(asset_id)
            if cadence is None or champion is None:
                continue
            algorithm = champion.manifest.algorithm
            newest = max(
                pd.Timestamp(m.created_at) for m in self.service.registry.list(asset_id) if m.algorithm == algorithm
            )
            if now - newest.to_pydatetime() >= cadence:
                out.append((asset_id, algorithm))
        return out

    def run_due(self, now: datetime | None = None) -> list[RetrainOutcome]:
        """Retrain every due asset, one after the other."""
        outcomes = []
        for asset_id, algorithm in self.due(now):
            if self.submit is not None:
                outcomes.append(self._queue(asset_id, algorithm))
                continue
            try:
                result = self._retrain(asset_id, algorithm)
            except Exception as exc:  # noqa: BLE001 - one asset's failure must not stop the others
                logger.error("scheduled retraining of %s (%s) failed: %s", asset_id, algorithm, exc)
                outcomes.append(RetrainOutcome(asset_id, algorithm, None, f"{type(exc).__name__}: {exc}"))
                continue
            logger.info("retrained %s: %s (%s)", asset_id, result.manifest.model_id, result.reason)
            outcomes.append(RetrainOutcome(asset_id, algorithm, result))
        return outcomes

    def _horizon(self, asset_id: str) -> timedelta:
        """The champion's horizon (``horizon_steps`` x the target's step), or day-ahead when it is gone meanwhile."""
        champion = self.service.server.champion(asset_id)
        if champion is None:
            return DAY_AHEAD_HORIZON
        return self.service._grid(asset_id).step * champion.manifest.horizon_steps  # the target's step (15 min or 1 h)

    def _retrain(self, asset_id: str, algorithm: str) -> TrainResult:
        """Train ``algorithm`` at :meth:`_horizon` under the asset's training lock.

        Raises:
            ConflictError: another training of the asset is running.
        """
        return self.service.train(asset_id, algorithm, horizon=self._horizon(asset_id))

    def _queue(self, asset_id: str, algorithm: str) -> RetrainOutcome:
        """Queue the retraining as a job; a training of the asset already queued or running is no failure."""
        assert self.submit is not None
        try:
            job = self.submit(asset_id, algorithm, self._horizon(asset_id))
        except ConflictError as exc:
            logger.info("scheduled retraining of %s waits: %s", asset_id, exc.message)
            return RetrainOutcome(asset_id, algorithm, None, f"ConflictError: {exc.message}")
        except Exception as exc:  # noqa: BLE001 - one asset's failure must not stop the others
            logger.error("queueing the scheduled retraining of %s (%s) failed: %s", asset_id, algorithm, exc)
            return RetrainOutcome(asset_id, algorithm, None, f"{type(exc).__name__}: {exc}")
        logger.info("scheduled retraining of %s queued as job %s", asset_id, job.id)
        return RetrainOutcome(asset_id, algorithm, None, job_id=job.id)

    def run(self, stop: threading.Event) -> None:
        """Check every ``check_seconds`` until ``stop`` is set (run in a thread)."""
        while not stop.wait(self.check_seconds):
            try:
                self.run_due()
            except Exception:  # noqa: BLE001 - the scheduler must survive anything
                logger.exception("retraining check failed")

    def start(self) -> tuple[threading.Thread, threading.Event]:
        """Start :meth:`run` in a daemon thread; set the returned event to stop it."""
        stop = threading.Event()
        thread = threading.Thread(target=self.run, args=(stop,), name="retrain-scheduler", daemon=True)
        thread.start()
        return thread, stop
