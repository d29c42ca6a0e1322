"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.routing import Route

from digitaltwin.api.deps import State
from digitaltwin.api.readiness import ReadinessCache, run_checks

router = APIRouter(tags=["health"])


_HEALTHZ_BODY = b'{"status":"ok"}'
_HEALTHZ_DOC = "The process is alive (no dependency is checked); answered on the event loop, no thread hop."


async def healthz(request: Request) -> Response:
    """The process is alive (no dependency is checked): ``{"status": "ok"}``."""
    # FastAPI's router names only its own routes in the scope; the metrics and the access log
    # label a request by ``scope["route"].path``.
    request.scope["route"] = HEALTHZ
    return Response(_HEALTHZ_BODY, media_type="application/json")


#: ``GET /healthz`` as a plain Starlette route, outside FastAPI's routing: probes call it often and
#: it needs nothing of FastAPI (no parameter, no credentials, a constant answer), whose dependency
#: resolution and response validation cost more than everything else of the request. It still
#: passes through every middleware (request id, access log, metrics, security headers).
HEALTHZ = Route("/healthz", healthz, methods=["GET"], name="healthz")
#: Its entry in the OpenAPI document (see :func:`digitaltwin.api.security.annotate_openapi`).
HEALTHZ_OPENAPI: dict[str, Any] = {
    "get": {
        "tags": ["health"], "summary": "Healthz", "description": _HEALTHZ_DOC, "operationId": "healthz_healthz_get",
        "responses": {"200": {"description": "Successful Response", "content": {"application/json": {"schema": {
            "additionalProperties": {"type": "string"}, "type": "object", "title": "Response Healthz Healthz Get",
        }}}}},
    }
}


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
