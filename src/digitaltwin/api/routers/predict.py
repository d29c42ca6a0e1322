"""The replaced system's ``POST /api/v1/predict``, kept for its existing clients."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter

from digitaltwin.api.deps import State
from digitaltwin.api.forecast_schemas import PredictIn, PredictOut, PredictPoint, PredictResult
from digitaltwin.api.routers.forecast import level_key, run_forecast
from digitaltwin.domain.errors import DomainError, NotFoundError, ValidationError
from digitaltwin.security.policy import access
from digitaltwin.security.roles import Role

router = APIRouter(prefix="/api/v1", tags=["forecasts"])
LEGACY_LEVELS = [0.1, 0.5, 0.9]


@router.post("/predict", response_model=PredictOut, openapi_extra=access(Role.VIEWER, api_key_scope="read"))
async def predict(body: PredictIn, state: State) -> PredictOut:
    """``{machine_id, horizon_min, algo, want_quantiles}`` -> ``{result: {machine_id, algo, unit, points}}``.

    Same forecasts as ``GET /api/v1/assets/{machine_id}/forecast``: ``algo`` accepts the
    old names (``lstm``, ``gru``, ``xgboost``, ``rf``) and ``best``; ``horizon_min`` must be a
    multiple of the asset's resolution; each point's ``horizon_min`` is the lead time
    to the end of its interval. Errors as everywhere: ``{"detail", "field"}``.
    """
    levels = LEGACY_LEVELS if body.want_quantiles else []
    try:
        result = await run_forecast(state, body.machine_id, body.algo, timedelta(minutes=body.horizon_min), levels)
    except DomainError as exc:  # name the legacy body's fields
        legacy = {"horizon": "horizon_min", "asset_id": "machine_id", "algorithm": "algo", "quantiles": "want_quantiles"}
        if exc.field in legacy and type(exc) in (ValidationError, NotFoundError):
            raise type(exc)(exc.message, field=legacy[exc.field]) from exc
        raise
    step_min = int(result.step.total_seconds() // 60)
    table = result.forecast.quantiles
    points = [
        PredictPoint(
            t=ts.to_pydatetime(),
            horizon_min=(i + 1) * step_min,
            yhat=float(value),
            quantiles={level_key(q): float(table.iloc[i][q]) for q in table.columns} if levels else None,
        )
        for i, (ts, value) in enumerate(result.values.items())
    ]
    return PredictOut(result=PredictResult(machine_id=body.machine_id, algo=result.algorithm, unit="kWh", points=points))
