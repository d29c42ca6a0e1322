"""Stored forecasting models: list, detail, training (champion/challenger) and admin activation."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from digitaltwin.api.deps import State
from digitaltwin.api.forecast_schemas import ActivationOut, ModelDetailOut, ModelOut, ModelsOut, TrainIn
from digitaltwin.api.job_schemas import JobOut
from digitaltwin.api.routers.jobs import accepted, requester
from digitaltwin.domain.assets import check_slug
from digitaltwin.domain.durations import parse_duration
from digitaltwin.jobs.service import JobService
from digitaltwin.observability.changes import record_change
from digitaltwin.registry.manifest import ModelManifest
from digitaltwin.security.audit import AuditEvent
from digitaltwin.security.policy import access
from digitaltwin.security.roles import Role
from digitaltwin.services.forecasting import ForecastService

router = APIRouter(prefix="/api/v1", tags=["models"])


def model_out(manifest: ModelManifest, service: ForecastService, *, detail: bool = False) -> ModelOut:
    """The API view of a manifest."""
    data = manifest.to_dict()
    served = service.server.get(manifest.asset_id, manifest.algorithm)
    fields = {
        "model_id": manifest.model_id,
        "asset_id": manifest.asset_id,
        "algorithm": manifest.algorithm,
        "version": manifest.version,
        "active": service.server.champion_id(manifest.asset_id) == manifest.model_id,
        "serving": served is not None and served.manifest.model_id == manifest.model_id,
        "horizon_steps": manifest.horizon_steps,
        "features": manifest.features,
        "training_window": data["training_window"],
        "metrics": data["metrics"],
        "data_fingerprint": manifest.data_fingerprint,
        "library_versions": manifest.library_versions,
        "files": manifest.files,
        "created_at": manifest.created_at,
        "extra": manifest.extra,
    }
    return ModelDetailOut(**fields, params=manifest.params) if detail else ModelOut(**fields)


@router.get("/models", response_model=ModelsOut)
def list_models(state: State, asset_id: str | None = None) -> ModelsOut:
    """Stored models (of one asset with ``?asset_id=``), oldest first, with current load failures."""
    if asset_id is not None:
        check_slug(asset_id, field="asset_id")
    service = state.forecasts
    return ModelsOut(
        models=[model_out(m, service) for m in service.models(asset_id)],
        load_failures=service.server.failures,
    )


@router.get("/models/{model_id}", response_model=ModelDetailOut)
def get_model(model_id: str, state: State) -> ModelOut:
    """One model's manifest (algorithm, features, training window, fingerprint, metrics, versions, SHA-256)."""
    return model_out(state.forecasts.registry.manifest(model_id), state.forecasts, detail=True)


@router.post("/models/{model_id}/activate", response_model=ActivationOut, openapi_extra=access(Role.ADMIN))
def activate_model(model_id: str, state: State, request: Request) -> ActivationOut:
    """Make a model its asset's champion (admin only), bypassing the champion/challenger backtest.

    The model is loaded and verified first: 503 when it does not load, 404 when unknown.
    This is also how a model that the champion rule never promotes on its own (a shorter
    horizon than the champion's) becomes the champion. Written to the audit log
    (``model_activated``, with the previous champion).
    """
    principal = getattr(request.state, "principal", None)
    by = getattr(principal, "label", None) if principal is not None else None
    asset_id = state.forecasts.registry.manifest(model_id).asset_id
    previous = state.forecasts.registry.active(asset_id)
    record = state.forecasts.activate(model_id, by=by)
    record_change(
        request, AuditEvent.MODEL_ACTIVATED, subject=model_id,
        asset_id=asset_id, previous=str(previous["model_id"]) if previous else None,
    )
    return ActivationOut(**record)


@router.post("/assets/{asset_id}/train", response_model=JobOut, status_code=202)
async def train_model(asset_id: str, body: TrainIn, state: State, request: Request, response: Response) -> JobOut:
    """Queue a training on all stored history; 202 with the job and ``Location: /api/v1/jobs/{id}``.

    Poll the job: once ``succeeded`` its ``result`` holds ``model_id``, ``promoted``, ``reason``,
    ``previous_champion`` and ``backtest_id``. The new model becomes the champion only by the
    champion rule (:mod:`digitaltwin.registry.champion`): the first model; never one with a
    shorter horizon than the champion's; the champion's algorithm and horizon on newer data;
    else a strictly lower MAE on the champion/challenger backtest (last 14 local days, both
    algorithms, same origins), which is stored as ``backtest_id``.

    Checked before queueing: 404 unknown asset or no readings, 422 naming ``algorithm``,
    ``horizon`` or ``country``. One training per asset: 409 naming ``asset_id`` while one is
    queued or running (or ``JOBS_MAX_PER_ASSET`` jobs of the asset); 429 naming ``user`` past
    ``JOBS_MAX_PER_USER`` jobs of the caller.
    """
    horizon = parse_duration(body.horizon, field="horizon")
    jobs: JobService = state.jobs  # type: ignore[assignment]
    job = await run_in_threadpool(
        lambda: jobs.submit_train(asset_id, body.algorithm, horizon, requested_by=requester(request))
    )
    return accepted(job, response)
