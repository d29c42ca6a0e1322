"""Submitting, reading and cancelling jobs, with the checks and limits that apply before one is queued.

What can be checked cheaply is checked at submission, so a bad request is still a 4xx naming
its field and never a queued job that fails: the asset, its site's country and its readings
(404/422), the algorithm names, the horizon, the dates and the fits a backtest asks for
(422). Then the limits, counted over queued and running jobs:

* one training per asset: 409 naming ``asset_id`` while a training job of the asset is
  queued or running, or its training lock is held (a ``digitaltwin train`` in a shell);
* ``JOBS_MAX_PER_ASSET`` jobs of one asset: 409 naming ``asset_id``;
* ``JOBS_MAX_PER_USER`` jobs of one requester: 429 naming ``user``;
* ``BACKTEST_MAX_FITS`` model fits per backtest: 422 naming ``retrain_every``.

Two submissions racing past a check may both be queued; the training lock still keeps one
training of an asset at a time (the other job fails with its 409 as error).
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

from digitaltwin.domain.errors import ConflictError, DomainError, ValidationError
from digitaltwin.forecasting.algorithms import canonical_name
from digitaltwin.forecasting.errors import ForecastError
from digitaltwin.jobs.store import Job, JobKind, JobState, JobStore
from digitaltwin.services.forecasting import ForecastService


class TooManyJobsError(DomainError):
    """The requester already has as many queued or running jobs as allowed (HTTP 429)."""

    status_code = 429

    def __init__(self, message: str, *, field: str | None = "user", retry_after_s: int = 30) -> None:
        super().__init__(message, field=field)
        self.headers = {"Retry-After": str(retry_after_s)}


def backtest_fits(algorithms: list[str], start: date, end: date, retrain_every: int) -> int:
    """Most model fits a backtest may make: each algorithm is fitted at the first origin and then
    every ``retrain_every`` origins, with (at most) one origin per local day from ``start`` to ``end``."""
    origins = max(0, (end - start).days + 1)
    return len(algorithms) * math.ceil(origins / retrain_every)


class JobService:
    """The job interface of the API and CLI: submit, get, list, cancel (running is :mod:`.run`'s).

    Args:
        store: the jobs table.
        forecasts: the forecasting service (checks of the asset, algorithm and horizon).
        max_per_asset, max_per_user, max_fits: the limits above.
        on_submit: called after a job is queued (wakes an in-process runner).
    """

    def __init__(
        self, store: JobStore, forecasts: ForecastService, *, max_per_asset: int = 2, max_per_user: int = 4,
        max_fits: int = 100, on_submit: Any = None,
    ) -> None:
        self.store = store
        self.forecasts = forecasts
        self.max_per_asset = max_per_asset
        self.max_per_user = max_per_user
        self.max_fits = max_fits
        self.on_submit = on_submit

    # ------------------------------------------------------------------ submit
    def submit_train(self, asset_id: str, algorithm: str, horizon: timedelta, *, requested_by: str | None) -> Job:
        """Queue a training of ``algorithm`` at ``horizon`` (see :meth:`ForecastService.train`).

        Raises:
            NotFoundError: unknown asset or no readings (``asset_id``).
            ValidationError: bad ``horizon`` or site ``country``; UnknownAlgorithmError for ``algorithm``.
            ConflictError: naming ``asset_id`` (a training of the asset queued or running, or the asset's limit).
            TooManyJobsError: the requester's limit.
        """
        name = canonical_name(algorithm)
        self.forecasts.check(asset_id, horizon)  # 404 unknown asset / no readings, 422 country or horizon
        if self.store.count_active(asset_id=asset_id, kind=JobKind.TRAIN):
            raise ConflictError(
                f"a training of asset {asset_id!r} is already queued or running; see GET /api/v1/jobs?asset_id={asset_id}",
                field="asset_id",
            )
        with self.forecasts.registry.training(asset_id):  # 409 while a training outside the jobs holds the lock
            pass
        params = {"algorithm": name, "horizon": _iso(horizon), "horizon_seconds": int(horizon.total_seconds())}
        return self._queue(JobKind.TRAIN, asset_id, params, requested_by)

    def submit_backtest(
        self, asset_id: str, algorithms: list[str], *, start: date, end: date, horizon: timedelta, retrain_every: int,
        requested_by: str | None,
    ) -> Job:
        """Queue a stored backtest (see :meth:`ForecastService.backtest`).

        Raises:
            ValidationError: naming ``algorithms`` (empty, unknown), ``end`` (before start),
                ``horizon``, ``retrain_every`` (< 1, or more than ``max_fits`` fits); NotFoundError: ``asset_id``.
            ConflictError, TooManyJobsError: the limits.
        """
        names = canonical_algorithms(algorithms)
        if retrain_every < 1:
            raise ValidationError("retrain_every must be >= 1", field="retrain_every")
        if end < start:
            raise ValidationError("end is before start", field="end")
        fits = backtest_fits(names, start, end, retrain_every)
        if fits > self.max_fits:
            raise ValidationError(
                f"this backtest asks for up to {fits} model fits ({len(names)} algorithm(s), {(end - start).days + 1} "
                f"origins, a refit every {retrain_every}); at most {self.max_fits} per request: raise retrain_every, "
                "shorten start..end or split it",
                field="retrain_every",
            )
        self.forecasts.check(asset_id, horizon)
        params = {
            "algorithms": names, "start": start.isoformat(), "end": end.isoformat(), "horizon": _iso(horizon),
            "horizon_seconds": int(horizon.total_seconds()), "retrain_every": retrain_every, "max_fits": fits,
        }
        return self._queue(JobKind.BACKTEST, asset_id, params, requested_by)

    def _queue(self, kind: JobKind, asset_id: str, params: dict[str, Any], requested_by: str | None) -> Job:
        if self.store.count_active(asset_id=asset_id) >= self.max_per_asset:
            raise ConflictError(
                f"asset {asset_id!r} already has {self.max_per_asset} queued or running jobs (JOBS_MAX_PER_ASSET); "
                f"wait for one to end or cancel one (GET /api/v1/jobs?asset_id={asset_id})",
                field="asset_id",
            )
        if requested_by is not None and self.store.count_active(requested_by=requested_by) >= self.max_per_user:
            raise TooManyJobsError(
                f"{requested_by} already has {self.max_per_user} queued or running jobs (JOBS_MAX_PER_USER); "
                "wait for one to end or cancel one"
            )
        job = self.store.insert(kind, asset_id, params, requested_by=requested_by)
        if self.on_submit is not None:
            self.on_submit()
        return job

    # ------------------------------------------------------------------ read / cancel
    def get(self, job_id: str) -> Job:
        """The job (NotFoundError naming ``job_id``)."""
        return self.store.get(job_id)

    def list(self, *, asset_id: str | None = None, state: JobState | None = None, limit: int = 100) -> list[Job]:
        """Jobs, newest first."""
        return self.store.list(asset_id=asset_id, state=state, limit=limit)

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job at once, or ask a running one to stop at its next checkpoint (between fits)."""
        return self.store.request_cancel(job_id)


def canonical_algorithms(names: list[str]) -> list[str]:
    """The canonical names of ``names``, each once, in the order given.

    Raises:
        ValidationError: naming ``algorithms`` when the list is empty or a name is unknown
            (or needs an extra that is not installed).
    """
    if not names:
        raise ValidationError("at least one algorithm is needed", field="algorithms")
    out: list[str] = []
    for name in names:
        try:
            canonical = canonical_name(name)
        except ForecastError as exc:
            raise ValidationError(str(exc), field="algorithms") from None
        if canonical not in out:
            out.append(canonical)
    return out


def _iso(duration: timedelta) -> str:
    """``PT<seconds>S`` reduced to hours or minutes when whole (``PT24H``, ``PT15M``)."""
    seconds = int(duration.total_seconds())
    if seconds % 3600 == 0:
        return f"PT{seconds // 3600}H"
    if seconds % 60 == 0:
        return f"PT{seconds // 60}M"
    return f"PT{seconds}S"
