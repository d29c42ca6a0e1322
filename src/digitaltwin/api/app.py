"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from starlette.middleware.cors import CORSMiddleware

from digitaltwin import __version__
from digitaltwin.api.deps import AppState
from digitaltwin.api.docs_pages import install_docs
from digitaltwin.api.errors import install_error_handlers
from digitaltwin.api.routers import accounting as accounting_router
from digitaltwin.api.routers import alarms as alarms_router
from digitaltwin.api.routers import forecast_skill as forecast_skill_router
from digitaltwin.api.routers import api_keys as api_keys_router
from digitaltwin.api.routers import assets, forecast, health, live, meters, readings, sites
from digitaltwin.api.routers import audit as audit_router
from digitaltwin.api.routers import auth as auth_router
from digitaltwin.api.routers import backtests as backtests_router
from digitaltwin.api.routers import dead_letters as dead_letters_router
from digitaltwin.api.routers import jobs as jobs_router
from digitaltwin.api.routers import models as models_router
from digitaltwin.api.routers import predict as predict_router
from digitaltwin.api.routers import roles as roles_router
from digitaltwin.api.routers import tariffs as tariffs_router
from digitaltwin.api.routers import imports as imports_router
from digitaltwin.api.routers import schedules as schedules_router
from digitaltwin.api.routers import scenarios as scenarios_router
from digitaltwin.api.routers import users as users_router
from digitaltwin.api.security import annotate_openapi, authorize
from digitaltwin.config import Settings
from digitaltwin.ingest.mqtt_subscriber import build_subscriber
from digitaltwin.jobs.run import JobRunner, JobsCollector
from digitaltwin.jobs.service import JobService
from digitaltwin.jobs.store import JobStore
from digitaltwin.observability.logs import ACCESS_LOG
from digitaltwin.observability.metrics import Metrics, MetricsMiddleware
from digitaltwin.observability.requests import RequestIdMiddleware
from digitaltwin.registry.backtests import BacktestStore
from digitaltwin.registry.serving import ModelServer
from digitaltwin.registry.store import ModelRegistry
from digitaltwin.security.client_address import parse_networks
from digitaltwin.security.middleware import (
    BodyLimitMiddleware,
    NulByteGuardMiddleware,
    RateLimitMiddleware,
    SecurityHeadersMiddleware,
    TimeoutMiddleware,
)
from digitaltwin.security.principal_cache import epoch_key
from digitaltwin.security.ratelimit import RateLimiter
from digitaltwin.security.secret_key import resolve_signing_keys
from digitaltwin.security.service import SecurityService
from digitaltwin.services.energy_answers import EnergyAnswers
from digitaltwin.services.forecast_cache import ForecastCache
from digitaltwin.services import energy_rollups
from digitaltwin.services.forecasting import ForecastService
from digitaltwin.services.live_state import open_live_state
from digitaltwin.services.monitoring import open_monitoring
from digitaltwin.services.retraining import RetrainScheduler
from digitaltwin.services.scheduling import SchedulingService
from digitaltwin.storage.db import make_engine, migrate
from digitaltwin.storage.async_reads import AsyncReads
from digitaltwin.storage.repository import Repository
from digitaltwin.storage.schedules import ScheduleStore
from digitaltwin.web.routes import mount_dashboard

log = logging.getLogger(__name__)
#: ``requested_by`` of the retraining scheduler's jobs.
RETRAINING = "service:retraining"


def _redis_client(settings: Settings) -> object | None:
    if not settings.redis_url:
        return None
    import redis

    return redis.Redis.from_url(
        settings.redis_url, password=settings.redis_password, socket_timeout=2, socket_connect_timeout=2
    )


def _model_server(registry: ModelRegistry, metrics: Metrics) -> ModelServer:
    """Forecasting: served models with load failures counted and gauged, loaded now."""

    def reloaded(loaded: int, failed: int) -> None:
        metrics.models_loaded.set(loaded)
        metrics.models_failed.set(failed)

    server = ModelServer(registry, on_failure=lambda _id, _why: metrics.model_load_failures.inc(), on_reload=reloaded)
    server.reload()
    return server


def _forecast_cache(settings: Settings, metrics: Metrics) -> ForecastCache | None:
    """Forecasting: FORECAST_CACHE_SIZE served forecasts per process (None when 0), lookups counted."""
    if not settings.forecast_cache_size:
        return None

    def counted(hit: bool) -> None:
        metrics.forecast_cache_lookups.labels("hit" if hit else "miss").inc()

    return ForecastCache(settings.forecast_cache_size, on_lookup=counted)


def _counted_hits(metrics: Metrics) -> Callable[[bool], None]:
    """Counts the hits of the kept forecast bodies as forecast cache hits; a miss is not counted
    (the forecast cache's own lookup that follows counts it, hit or miss)."""

    def counted(hit: bool) -> None:
        if hit:
            metrics.forecast_cache_lookups.labels("hit").inc()

    return counted


def _energy_answers(settings: Settings, metrics: Metrics) -> EnergyAnswers | None:
    """Energy: ENERGY_CACHE_MB of served answers per process (None when 0), lookups counted."""
    if not settings.energy_cache_mb:
        return None

    def counted(hit: bool) -> None:
        metrics.energy_cache_lookups.labels("hit" if hit else "miss").inc()

    return EnergyAnswers(int(settings.energy_cache_mb * 1_000_000), settings.energy_cache_seconds, on_lookup=counted)


def _start_forecasting(settings: Settings, service: ForecastService, jobs: JobService) -> list[tuple[object, object]]:
    """Forecasting: start the MODELS_DIR watcher and the retraining scheduler as configured
    (its retrainings are queued as jobs)."""
    started = []
    if settings.models_watch:
        started.append(service.server.start_watching())
    scheduler = RetrainScheduler(
        service,
        default_hours=settings.retrain_cadence_hours,
        per_asset_hours=settings.retrain_asset_cadence,
        check_seconds=settings.retrain_check_seconds,
        submit=lambda asset_id, algorithm, horizon: jobs.submit_train(asset_id, algorithm, horizon, requested_by=RETRAINING),
    )
    if scheduler.enabled:
        started.append(scheduler.start())
    return started  # type: ignore[return-value]


def open_jobs(settings: Settings, repo: Repository, forecasts: ForecastService) -> tuple[JobService, JobRunner | None]:
    """The job service with the limits of ``settings``, and a runner when this process runs jobs
    (``JOBS_IN_PROCESS``; the caller starts and stops it)."""
    store = JobStore(repo.engine, max_running_per_host=settings.jobs_max_concurrent)
    runner = None
    if settings.run_jobs_in_process:
        runner = JobRunner(
            store, forecasts, concurrency=settings.jobs_max_concurrent, heartbeat_s=settings.jobs_heartbeat_seconds,
            stale_s=settings.jobs_stale_seconds, max_attempts=settings.jobs_max_attempts, poll_s=settings.jobs_poll_seconds,
        )
    service = JobService(
        store, forecasts, max_per_asset=settings.jobs_max_per_asset, max_per_user=settings.jobs_max_per_user,
        max_fits=settings.backtest_max_fits, on_submit=runner.wake if runner is not None else None,
    )
    return service, runner


def create_app(settings: Settings) -> FastAPI:
    """Build the app. Clients (database engine, Redis) are opened in the lifespan and closed there.

    The embedded SQLite database migrates itself at start-up; PostgreSQL is
    migrated by ``digitaltwin migrate`` (``/readyz`` reports an unmigrated schema).
    """
    metrics = Metrics()
    # Security: outside development a weak SECRET_KEY stops the service here, before it serves.
    signing_keys = resolve_signing_keys(settings)
    limiter = RateLimiter(
        per_minute=settings.api_rate_limit,
        auth_per_minute=settings.auth_rate_limit,
        redis_url=settings.redis_url,
        redis_password=settings.redis_password,
        key_prefix=settings.rate_limit_key_prefix,
        registry=metrics.registry,
        # the security epoch of the session cache, read in the same round trip as each count
        epoch_key=epoch_key(settings.rate_limit_key_prefix) if settings.auth_cache_seconds > 0 else None,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings)
        energy_rollups.configure(enabled=settings.energy_rollups)
        if settings.embedded:
            migrate(engine, settings=settings)
        repo = Repository(engine)
        registry = ModelRegistry(settings.models_dir)
        state = AppState(
            settings=settings,
            repo=repo,
            metrics=metrics,
            forecasts=ForecastService(
                repo,
                registry,
                max_hold=settings.power_max_hold,
                server=_model_server(registry, metrics),
                backtests=BacktestStore(settings.data_dir / "backtests"),
                cache=_forecast_cache(settings, metrics),
            ),
            redis=_redis_client(settings),
            energy_answers=_energy_answers(settings, metrics),
            live=open_live_state(  # MQTT ingestion
                redis_url=settings.redis_url, redis_password=settings.redis_password, prefix=settings.live_state_key_prefix
            ),
        )
        if engine.dialect.name == "postgresql":  # the hottest reads on the event loop
            state.async_reads = AsyncReads(engine)
            await state.async_reads.open()
            if settings.forecast_cache_size:  # kept forecast bodies, found by the fingerprint
                state.forecast_bodies = ForecastCache(settings.forecast_cache_size, on_lookup=_counted_hits(metrics))
        app.state.dt = state
        state.security = SecurityService(settings, engine, keys=signing_keys)  # Security
        await limiter.open()
        # MQTT ingestion: the subscriber runs in the service's lifespan, unless a separate ingest
        # process subscribes (MQTT_API_SUBSCRIBER=false; `serve --workers N` sets it for its API workers)
        if settings.mqtt_broker and settings.mqtt_api_subscriber:
            state.subscriber = build_subscriber(settings, repo, metrics=metrics, live_state=state.live)
            state.subscriber.start()
        state.jobs, runner = open_jobs(settings, repo, state.forecasts)  # trainings and backtests
        state.job_runner = runner
        jobs_collector = JobsCollector(state.jobs.store)
        metrics.collect_at_scrape(jobs_collector)
        background = _start_forecasting(settings, state.forecasts, state.jobs)  # Forecasting
        if runner is not None:
            runner.start()
        state.scheduling = SchedulingService(settings, repo, state.forecasts, ScheduleStore(engine))
        if settings.schedule_replan_seconds > 0:
            background.append(state.scheduling.start_replanning(settings.schedule_replan_seconds))
        # Monitoring: detection after each committed batch, webhooks, stale-device timer, forecast schedule
        state.monitoring = open_monitoring(settings, repo, metrics=metrics, live=state.live, forecasts=state.forecasts)
        if state.subscriber is not None:
            state.subscriber.writer.listeners.append(state.monitoring.runner.on_flush)  # type: ignore[attr-defined]
        log.info("serving with %s database", engine.dialect.name)
        try:
            yield
        finally:
            if runner is not None:
                runner.stop()  # running jobs go back to the queue at their next checkpoint
            metrics.stop_collecting(jobs_collector)
            for thread, stop in background:  # Forecasting: model watcher, retraining scheduler
                stop.set()
                thread.join(timeout=5)
            if state.subscriber is not None:
                state.subscriber.stop()  # type: ignore[attr-defined]
            state.monitoring.stop()
            state.live.close()
            await limiter.close()
            if state.async_reads is not None:
                await state.async_reads.close()
            if state.redis is not None:
                state.redis.close()  # type: ignore[attr-defined]
            engine.dispose()
            ACCESS_LOG.flush()  # the last requests' lines

    app = FastAPI(
        title="Digital Twin Energy",
        version=__version__,
        description="A live digital twin of energy assets: readings, energy, forecasts.",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc without a CDN: api/docs_pages.py
        redoc_url=None,
        openapi_url="/openapi.json",
        # No trailing-slash redirects: Starlette builds their Location from the Host and
        # X-Forwarded-Proto headers, so "Host: evil.example" was answered with a redirect there.
        # "/api/v1/sites/" is a 404 like any other unknown path.
        redirect_slashes=False,
        # Security: every route is authenticated and authorised (see api/security.py);
        dependencies=[Depends(authorize)],
    )
    install_error_handlers(app)
    install_docs(app)
    app.router.routes.append(health.HEALTHZ)  # outside FastAPI's routing (see the route)
    for router in (health.router, sites.router, assets.router, readings.router, forecast.router, live.router):
        app.include_router(router)
    app.include_router(meters.router)  # meter declarations and replacements (docs/accounting.md)
    app.include_router(dead_letters_router.router)  # MQTT ingestion: what was rejected and why
    app.include_router(accounting_router.router)  # energy accounting: KPIs and the metering tree
    app.include_router(schedules_router.router)
    app.include_router(imports_router.router)  # CSV import over HTTP (the dashboard's Data page)
    app.include_router(alarms_router.router)  # monitoring: alarms and webhooks
    app.include_router(forecast_skill_router.router)  # monitoring: issued forecasts and their skill
    app.include_router(scenarios_router.router)  # what-if replays of past periods (docs/scheduling.md)
    for router in (models_router.router, backtests_router.router, predict_router.router):  # Forecasting
        app.include_router(router)
    app.include_router(jobs_router.router)
    # Security: auth, user, role, API key and audit routes; access in the OpenAPI document;
    # middleware innermost first: body limit (413), NUL guard (422), timeout (504), client address + rate limit (429), CORS, security headers.
    for router in (auth_router.router, users_router.router, roles_router.router, api_keys_router.router, audit_router.router):
        app.include_router(router)
    app.include_router(tariffs_router.router)  # accounting: tariffs, assignments, bills
    mount_dashboard(app)  # the operator dashboard under / (static, reads the same API)
    annotate_openapi(app, extra_paths={"/healthz": health.HEALTHZ_OPENAPI})
    app.state.rate_limiter = limiter
    # bodies over MAX_REQUEST_BODY_BYTES get a JSON 413 without being read whole (innermost).
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_body_bytes)
    app.add_middleware(NulByteGuardMiddleware)
    app.add_middleware(TimeoutMiddleware, timeout_s=settings.api_timeout)
    app.add_middleware(RateLimitMiddleware, limiter=limiter, trusted_proxies=parse_networks(settings.trusted_proxies))
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key"],
            expose_headers=["Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy"],
        )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestIdMiddleware)  # operations: request id + access log (outermost)
    return app
