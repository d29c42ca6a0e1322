"""Jobs: read their state, progress and outcome; list them; cancel one (its submitter or an admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from digitaltwin.api.deps import State
from digitaltwin.api.job_schemas import JobOut, JobsOut, job_out
from digitaltwin.domain.assets import check_slug
from digitaltwin.domain.errors import ValidationError
from digitaltwin.jobs.service import JobService
from digitaltwin.jobs.store import Job, JobState
from digitaltwin.security.errors import PermissionDeniedError
from digitaltwin.security.roles import Role

router = APIRouter(prefix="/api/v1", tags=["jobs"])


def requester(request: Request) -> str | None:
    """The label of the caller (``user:NAME`` or ``key:ID``), who owns the jobs it submits."""
    principal = getattr(request.state, "principal", None)
    return getattr(principal, "label", None) if principal is not None else None


def accepted(job: Job, response: Response) -> JobOut:
    """A 202 answer for a submitted job, with ``Location`` to poll."""
    out = job_out(job)
    response.headers["Location"] = out.url
    return out


def _jobs(state: State) -> JobService:
    assert state.jobs is not None
    return state.jobs  # type: ignore[return-value]


@router.get("/jobs/{job_id}", response_model=JobOut)
def get_job(job_id: str, state: State) -> JobOut:
    """A job: ``state`` (queued, running, succeeded, failed, cancelled), ``progress`` 0..1, ``result`` or ``error``."""
    return job_out(_jobs(state).get(job_id))


@router.get("/jobs", response_model=JobsOut)
def list_jobs(
    state: State,
    asset_id: str | None = None,
    job_state: Annotated[str | None, Query(alias="state", description="queued | running | succeeded | failed | cancelled")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JobsOut:
    """Jobs, newest first, of one asset and/or in one state."""
    if asset_id is not None:
        check_slug(asset_id, field="asset_id")
    wanted = None
    if job_state is not None:
        try:
            wanted = JobState(job_state)
        except ValueError:
            raise ValidationError(f"state must be one of {', '.join(s.value for s in JobState)}", field="state") from None
    return JobsOut(jobs=[job_out(job) for job in _jobs(state).list(asset_id=asset_id, state=wanted, limit=limit)])


@router.post("/jobs/{job_id}/cancel", response_model=JobOut)
async def cancel_job(job_id: str, state: State, request: Request) -> JobOut:
    """Cancel a job (its submitter or an admin): a queued job at once; a running one stops at its next
    checkpoint between model fits, and nothing of it is stored. ``state`` stays ``running`` with
    ``cancel_requested`` until then. A finished job is answered as it is."""
    service = _jobs(state)
    job = await run_in_threadpool(service.get, job_id)
    principal = getattr(request.state, "principal", None)
    is_admin = getattr(principal, "role", None) is Role.ADMIN
    if not is_admin and job.requested_by != requester(request):
        raise PermissionDeniedError("only the job's submitter or an admin may cancel it", field="job_id")
    return job_out(await run_in_threadpool(service.cancel, job_id))
