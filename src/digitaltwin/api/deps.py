"""Request dependencies as ``Annotated`` aliases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from digitaltwin.config import Settings
from digitaltwin.observability.metrics import Metrics
from digitaltwin.services.forecasting import ForecastService
from digitaltwin.storage.repository import Repository


@dataclass
class AppState:
    """What the lifespan opens and every request shares."""

    settings: Settings
    repo: Repository
    metrics: Metrics
    forecasts: ForecastService
    redis: object | None = None


def get_state(request: Request) -> AppState:
    return request.app.state.dt


State = Annotated[AppState, Depends(get_state)]
