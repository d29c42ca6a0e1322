"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from digitaltwin import __version__
from digitaltwin.api.deps import AppState
from digitaltwin.api.errors import install_error_handlers
from digitaltwin.api.routers import assets, forecast, health, readings, sites
from digitaltwin.config import Settings
from digitaltwin.observability.metrics import Metrics, MetricsMiddleware
from digitaltwin.registry.store import ModelRegistry
from digitaltwin.services.forecasting import ForecastService
from digitaltwin.storage.db import make_engine, migrate
from digitaltwin.storage.repository import Repository

log = logging.getLogger(__name__)


def _redis_client(settings: Settings) -> object | None:
    if not settings.redis_url:
        return None
    import redis

    return redis.Redis.from_url(
        settings.redis_url, password=settings.redis_password, socket_timeout=2, socket_connect_timeout=2
    )


def create_app(settings: Settings) -> FastAPI:
    """Build the app. Clients (database engine, Redis) are opened in the lifespan and closed there.

    The embedded SQLite database migrates itself at start-up; PostgreSQL is
    migrated by ``digitaltwin migrate`` (``/readyz`` reports an unmigrated schema).
    """
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings)
        if settings.embedded:
            migrate(engine)
        repo = Repository(engine)
        registry = ModelRegistry(settings.models_dir)
        state = AppState(
            settings=settings,
            repo=repo,
            metrics=metrics,
            forecasts=ForecastService(repo, registry, max_hold=settings.power_max_hold),
            redis=_redis_client(settings),
        )
        app.state.dt = state
        log.info("serving with %s database", engine.dialect.name)
        try:
            yield
        finally:
            if state.redis is not None:
                state.redis.close()  # type: ignore[attr-defined]
            engine.dispose()

    app = FastAPI(
        title="Digital Twin Energy",
        version=__version__,
        description="A live digital twin of energy assets: readings, energy, forecasts.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url="/redoc",
        openapi_url="/openapi.json",
    )
    install_error_handlers(app)
    for router in (health.router, sites.router, assets.router, readings.router, forecast.router):
        app.include_router(router)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
