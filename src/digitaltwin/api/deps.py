"""Request dependencies as ``Annotated`` aliases."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from digitaltwin.config import Settings
from digitaltwin.observability.metrics import Metrics
from digitaltwin.security.service import SecurityService
from digitaltwin.services.energy_answers import EnergyAnswers
from digitaltwin.services.forecast_cache import ForecastCache
from digitaltwin.services.forecasting import ForecastService
from digitaltwin.services.live_state import LiveState, MemoryLiveState
from digitaltwin.services.scheduling import SchedulingService
from digitaltwin.services.monitoring import Monitoring
from digitaltwin.storage.async_reads import AsyncReads
from digitaltwin.storage.repository import Repository


@dataclass
class AppState:
    """What the lifespan opens and every request shares."""

    settings: Settings
    repo: Repository
    metrics: Metrics
    forecasts: ForecastService
    redis: object | None = None
    # MQTT ingestion: latest reading per asset and quantity; the subscriber when MQTT_BROKER is set
    live: LiveState = field(default_factory=MemoryLiveState)
    subscriber: object | None = None
    # Security: accounts, sessions, API keys, audit log
    security: SecurityService | None = None
    # Energy: answers kept per process (services/energy_answers.py); None when ENERGY_CACHE_MB=0
    energy_answers: EnergyAnswers | None = None
    # PostgreSQL: the hottest reads on the event loop (storage/async_reads.py); None on SQLite
    async_reads: AsyncReads | None = None
    # Forecasting: bodies found by the stored inputs' fingerprint (services/forecast_answers.py);
    # None on SQLite or when FORECAST_CACHE_SIZE=0
    forecast_bodies: ForecastCache[tuple[bytes, bytes, str]] | None = None
    # Forecasting: the limiter of forecasts computed at once (api/routers/forecast.py)
    forecast_limiter: object | None = None
    # Schedules of flexible assets (api/routers/schedules.py)
    scheduling: SchedulingService | None = None
    # Jobs: trainings and backtests (digitaltwin.jobs); the runner when serve runs them itself
    jobs: object | None = None
    job_runner: object | None = None
    # Monitoring: alarms, detection hook, webhooks, forecast skill (services/monitoring.py)
    monitoring: Monitoring | None = None


async def get_state(request: Request) -> AppState:
    """The app's shared state. ``async`` because FastAPI runs a plain ``def`` dependency in the
    thread pool: a thread hop per request for an attribute read."""
    return request.app.state.dt


State = Annotated[AppState, Depends(get_state)]
