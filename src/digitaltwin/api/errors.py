"""Mapping of domain errors to HTTP responses, in one place.

Body of every error: ``{"detail": reason, "field": offending field or null}``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from digitaltwin.domain.errors import DomainError
from digitaltwin.forecasting.errors import ForecastError, InsufficientHistoryError, UnknownAlgorithmError
from digitaltwin.registry.errors import ModelNotFoundError, RegistryError

log = logging.getLogger(__name__)


def install_error_handlers(app: FastAPI) -> None:
    """Register handlers: DomainError -> its status, forecasting errors -> 422, registry errors -> 404/503."""

    @app.exception_handler(DomainError)
    async def _domain(_request: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse({"detail": exc.message, "field": exc.field}, status_code=exc.status_code)

    @app.exception_handler(ForecastError)
    async def _forecast(_request: Request, exc: ForecastError) -> JSONResponse:
        if isinstance(exc, InsufficientHistoryError):
            body = {"detail": str(exc), "field": "history", "available": exc.available, "required": exc.required}
            return JSONResponse(body, status_code=422)
        if isinstance(exc, UnknownAlgorithmError):
            return JSONResponse({"detail": str(exc), "field": "algorithm"}, status_code=422)
        return JSONResponse({"detail": str(exc), "field": None}, status_code=422)

    @app.exception_handler(RegistryError)
    async def _registry(_request: Request, exc: RegistryError) -> JSONResponse:
        if isinstance(exc, ModelNotFoundError):
            return JSONResponse({"detail": str(exc), "field": "model_id"}, status_code=404)
        log.error("model registry failure: %s", exc)
        return JSONResponse({"detail": f"model unavailable: {exc}", "field": None}, status_code=503)
