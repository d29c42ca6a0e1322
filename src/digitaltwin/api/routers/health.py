"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from digitaltwin.api.deps import State
from digitaltwin.api.readiness import ReadinessCache, run_checks

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive (no dependency is checked); answered on the event loop, no thread hop."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: State, request: Request) -> JSONResponse:
    """Every dependency answers: 200, or 503 naming each failing check.

    Public, so a failing check gives a generic reason (details are logged). ``models`` fails
    only when an asset's champion does not load; other failing versions are named in its
    detail while it stays ok (see :func:`digitaltwin.api.readiness.check_models`). The Redis
    and MQTT results are reused for a few seconds (:class:`~digitaltwin.api.readiness.ReadinessCache`).
    """
    cache = getattr(request.app.state, "readiness_cache", None)
    if cache is None:
        cache = request.app.state.readiness_cache = ReadinessCache()
    checks = await run_in_threadpool(run_checks, state, cache)
    failing = [c.name for c in checks if not c.ok]
    body = {
        "status": "ok" if not failing else "unavailable",
        "failing": failing,
        "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in checks},
    }
    return JSONResponse(body, status_code=503 if failing else 200)


@router.get("/metrics", include_in_schema=False)
def metrics(state: State) -> Response:
    """Prometheus text exposition (the totals of all workers in multiprocess mode)."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
