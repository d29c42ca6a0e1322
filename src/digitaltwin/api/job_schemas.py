"""Response bodies of jobs (trainings and backtests run outside the request)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from digitaltwin.jobs.store import Job, JobKind


class JobOut(BaseModel):
    """A job: what it was asked, where it is, and what it produced or why it failed."""

    job_id: str
    kind: str = Field(description="train | backtest")
    asset_id: str
    requested_by: str | None = Field(description="user:NAME or key:ID of the submitter")
    state: str = Field(description="queued | running | succeeded | failed | cancelled")
    progress: float = Field(description="fraction of the model fits done, 0..1")
    params: dict[str, Any] = Field(description="the validated request (algorithm names canonical)")
    result: dict[str, Any] | None = Field(
        description="train: model_id, promoted, reason, previous_champion, backtest_id; backtest: backtest_id, skipped_origins"
    )
    error: dict[str, Any] | None = Field(description='why it failed, as an API error: {"detail": ..., "field": ...}')
    cancel_requested: bool
    attempts: int = Field(description="runs started; a job whose worker was lost runs again (JOBS_MAX_ATTEMPTS)")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    worker_id: str | None
    url: str = Field(description="this job: GET it until state is succeeded, failed or cancelled")
    result_url: str | None = Field(description="the stored model or backtest once succeeded")


class JobsOut(BaseModel):
    jobs: list[JobOut]


def job_out(job: Job) -> JobOut:
    """The API view of a job."""
    result_url = None
    if job.result:
        if job.kind is JobKind.TRAIN and job.result.get("model_id"):
            result_url = f"/api/v1/models/{job.result['model_id']}"
        elif job.kind is JobKind.BACKTEST and job.result.get("backtest_id"):
            result_url = f"/api/v1/backtests/{job.result['backtest_id']}"
    return JobOut(
        job_id=job.id, kind=job.kind.value, asset_id=job.asset_id, requested_by=job.requested_by, state=job.state.value,
        progress=job.progress, params=job.params, result=job.result, error=job.error, cancel_requested=job.cancel_requested,
        attempts=job.attempts, created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
        heartbeat_at=job.heartbeat_at, worker_id=job.worker_id, url=f"/api/v1/jobs/{job.id}", result_url=result_url,
    )
