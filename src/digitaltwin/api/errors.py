"""Mapping of domain errors to HTTP responses, in one place.

Body of every error: ``{"detail": reason, "field": offending field or null}``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from digitaltwin.domain.errors import DomainError
from digitaltwin.forecasting.errors import ForecastError, InsufficientHistoryError, UnknownAlgorithmError

log = logging.getLogger(__name__)


def install_error_handlers(app: FastAPI) -> None:
    """Register handlers: DomainError -> its status, forecasting errors -> 422/404."""

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
