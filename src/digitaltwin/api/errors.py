"""Mapping of domain errors to HTTP responses, in one place.

Body of every error: ``{"detail": reason, "field": offending field or null}``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
import psycopg
from psycopg_pool import PoolTimeout
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from digitaltwin.domain.errors import DomainError
from digitaltwin.forecasting.errors import (
    ForecastError,
    InsufficientHistoryError,
    InsufficientValidDataError,
    MissingExogenousError,
    NotCalibratedError,
    OptionalDependencyError,
    UnknownAlgorithmError,
)
from digitaltwin.registry.backtests import BacktestNotFoundError
from digitaltwin.registry.errors import ModelNotFoundError, RegistryError

log = logging.getLogger(__name__)


def _nul_parameter(params: object) -> str | None:
    """The name of the first statement parameter (a column, which is the API field in most bodies)
    holding a NUL character, or None (positional parameters, or none found)."""
    rows = params if isinstance(params, list | tuple) else [params]
    for row in rows:
        if isinstance(row, dict):
            for name, value in row.items():
                if isinstance(value, str) and "\x00" in value:
                    return str(name)
    return None


def install_error_handlers(app: FastAPI) -> None:
    """Register handlers: DomainError -> its status, forecasting errors -> 422, registry errors -> 404/503."""

    @app.exception_handler(DomainError)
    async def _domain(_request: Request, exc: DomainError) -> JSONResponse:
        # Security errors carry headers (WWW-Authenticate on 401, Retry-After on 429).
        headers = getattr(exc, "headers", None) or None
        return JSONResponse({"detail": exc.message, "field": exc.field}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own checks (query types, body schema) in the product's shape; the input is
        # not echoed, so a NaN in the body cannot break the error response itself.
        errors = exc.errors()
        first = errors[0] if errors else {}
        raw_loc = tuple(first.get("loc", ()))
        loc = [str(part) for part in raw_loc if part not in ("body", "query", "path", "header")]
        field = ".".join(loc) or None
        if first.get("type") == "json_invalid" or (field is None and raw_loc[:1] == ("body",)):
            field = "body"  # malformed or missing JSON: the loc is a character position, or nothing
        message = str(first.get("msg", "invalid request"))
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problem(s))"
        return JSONResponse({"detail": message, "field": field}, status_code=422)

    @app.exception_handler(OperationalError)
    async def _database_down(_request: Request, exc: OperationalError) -> JSONResponse:
        log.error("database unavailable: %s", str(exc).splitlines()[0][:300])
        return JSONResponse({"detail": "database unavailable; retry later", "field": None}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _database_down_async(_request: Request, exc: Exception) -> JSONResponse:
        # the reads on psycopg's own connections (storage/async_reads.py), not wrapped by SQLAlchemy
        log.error("database unavailable: %s", str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__)
        return JSONResponse({"detail": "database unavailable; retry later", "field": None}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(DBAPIError)
    async def _database_error(_request: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:
            return JSONResponse({"detail": "database unavailable; retry later", "field": None}, status_code=503, headers={"Retry-After": "5"})
        if "cannot contain NUL" in str(exc.orig):  # PostgreSQL text refuses U+0000: the input's fault, not ours
            field = _nul_parameter(exc.params)
            return JSONResponse({"detail": f"{field or 'a text value'} contains a NUL character (U+0000)", "field": field}, status_code=422)
        log.exception("database error")
        return JSONResponse({"detail": "internal database error", "field": None}, status_code=500)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # A bug of ours: the client still gets the product's JSON shape (the traceback is logged
        # by the request log middleware and the server; nothing of it is sent back).
        return JSONResponse({"detail": "internal server error", "field": None}, status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Framework answers (404 unknown route, 405, 413 body over MAX_REQUEST_BODY_BYTES) in the same shape.
        field = "body" if exc.status_code == 413 else None
        return JSONResponse({"detail": exc.detail, "field": field}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(ForecastError)
    async def _forecast(_request: Request, exc: ForecastError) -> JSONResponse:
        if isinstance(exc, InsufficientHistoryError):
            body = {"detail": str(exc), "field": "history", "available": exc.available, "required": exc.required}
            if isinstance(exc, InsufficientValidDataError):
                body["series"] = exc.series
            return JSONResponse(body, status_code=422)
        if isinstance(exc, (UnknownAlgorithmError, OptionalDependencyError)):
            return JSONResponse({"detail": str(exc), "field": "algorithm"}, status_code=422)
        if isinstance(exc, NotCalibratedError):
            return JSONResponse({"detail": str(exc), "field": "quantiles"}, status_code=422)
        if isinstance(exc, MissingExogenousError):
            return JSONResponse({"detail": str(exc), "field": "exog"}, status_code=422)
        return JSONResponse({"detail": str(exc), "field": None}, status_code=422)

    @app.exception_handler(RegistryError)
    async def _registry(_request: Request, exc: RegistryError) -> JSONResponse:
        if isinstance(exc, ModelNotFoundError):
            return JSONResponse({"detail": str(exc), "field": "model_id"}, status_code=404)
        if isinstance(exc, BacktestNotFoundError):
            return JSONResponse({"detail": str(exc), "field": "backtest_id"}, status_code=404)
        log.error("model registry failure: %s", exc)
        return JSONResponse({"detail": f"model unavailable: {exc}", "field": None}, status_code=503)
