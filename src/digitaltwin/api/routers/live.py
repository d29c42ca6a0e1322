"""The live twin: current state of an asset and a Server-Sent Events stream of its new readings."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, ClassVar, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, Field

from digitaltwin.api.deps import State
from digitaltwin.api.security import client_ip
from digitaltwin.api.stream_slots import StreamSlot, StreamSlots
from digitaltwin.domain.errors import DomainError
from digitaltwin.services.live_state import LiveReading, LiveStatus, TwinState

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["live"])


class StateReadingOut(BaseModel):
    quantity: str
    unit: str = Field(description="canonical unit of the quantity (kW, kWh, ...)")
    ts: datetime = Field(description="UTC timestamp of the reading (the newest by timestamp, not by arrival)")
    value: float


class StatusOut(BaseModel):
    status: str = Field(description="RUN, IDLE or STOP, as reported on factory/{line}/{machine_id}/power")
    ts: datetime


class StateOut(BaseModel):
    asset_id: str
    readings: list[StateReadingOut] = Field(description="latest reading of each quantity, sorted by quantity")
    status: StatusOut | None = None
    live_cache: Literal["available", "unavailable"] = Field(
        "available",
        description="'unavailable' when the live cache (Redis) could not be read: readings come from storage "
        "as always, the status from storage only (a status reported while the database was unreachable may be missing)",
    )


class LiveUnavailableError(DomainError):
    """The live cache (Redis) cannot be reached, so the stream cannot be served (HTTP 503)."""

    status_code = 503
    headers: ClassVar[dict[str, str]] = {"Retry-After": "5"}


def _merged(state: State, asset_id: str) -> tuple[TwinState, bool]:
    """The twin state of ``asset_id`` and whether the live cache could be read.

    Raises NotFoundError naming ``asset_id`` for an unknown asset.

    Readings are the latest stored reading of each series (one index seek per series): the
    state never shows a value that storage does not hold, nor an older one. The live cache is
    read *before* storage and only updated after a commit, so any live reading newer than the
    stored latest, or at the same timestamp with another value, was deleted from storage since
    (``DELETE .../readings``, maybe by another process): such entries are dropped from the cache,
    so that the next reading of that series sets it again. The machine status is the newer (by
    its timestamp) of the live one and the stored one (which survives a restart without Redis).
    When the live cache cannot be read (Redis down), everything comes from storage.
    """
    try:
        live = state.live.state(asset_id)
        available = True
    except Exception as exc:  # noqa: BLE001 - e.g. Redis down: fall back to storage
        log.warning("live cache unavailable for %s (%s: %s); state from storage", asset_id, type(exc).__name__, str(exc)[:200])
        live, available = TwinState(asset_id, [], None), False
    latest = state.repo.latest(asset_id, asset_must_exist=True)  # one query: the asset, its series, their newest readings
    stored = {r.quantity: LiveReading(r.quantity, r.unit, r.ts, r.value) for r in latest}
    stale = [
        r.quantity
        for r in live.readings
        if (kept := stored.get(r.quantity)) is None or r.ts > kept.ts or (r.ts == kept.ts and r.value != kept.value)
    ]
    if stale:
        try:
            state.live.forget(asset_id, stale)
        except Exception:  # noqa: BLE001 - the answer comes from storage anyway
            log.warning("could not drop stale live readings %s of %s", stale, asset_id, exc_info=True)
    readings = sorted(stored.values(), key=lambda r: r.quantity)
    status = live.status
    kept_status = state.repo.latest_machine_status(asset_id)
    if kept_status is not None and (status is None or kept_status[1] > status.ts):
        status = LiveStatus(kept_status[0], kept_status[1])
    return TwinState(asset_id, readings, status), available


@router.get("/assets/{asset_id}/state", response_model=StateOut)
async def get_state(asset_id: str, state: State) -> StateOut:
    """The twin's current state: the latest stored reading (by timestamp) of each quantity and the machine status.

    Never a reading that storage does not hold nor an older one (see :func:`_merged`); with the live
    cache (Redis) down, answered from storage with ``"live_cache": "unavailable"``.
    404 naming ``asset_id`` for an unknown asset.
    """
    return _twin_out(*await run_in_threadpool(_merged, state, asset_id))  # one thread hop for everything


def _twin_out(twin: TwinState, available: bool) -> StateOut:
    return StateOut(
        asset_id=twin.asset_id,
        readings=[StateReadingOut(quantity=r.quantity, unit=r.unit, ts=r.ts, value=r.value) for r in twin.readings],
        status=StatusOut(status=twin.status.status, ts=twin.status.ts) if twin.status else None,
        live_cache="available" if available else "unavailable",
    )


@router.get("/sites/{site_id}/state", response_model=list[StateOut])
async def get_site_state(site_id: str, state: State) -> list[StateOut]:
    """The state of every asset of the site (as ``GET /assets/{asset_id}/state``), by asset id: one
    request for a site's overview instead of one per asset. 404 naming ``site_id`` for an unknown site."""

    def collect() -> list[StateOut]:
        state.repo.get_site(site_id)
        assets = sorted(state.repo.list_assets(site_id=site_id), key=lambda a: a.id)
        return [_twin_out(*_merged(state, asset.id)) for asset in assets]

    return await run_in_threadpool(collect)


async def _known_asset(state: State, asset_id: Annotated[str, Query(description="the asset whose readings are streamed")]) -> str:
    """``asset_id`` if the asset exists and the live feed can be reached; checked before the stream
    starts, so an unknown asset is a 404 and Redis down a 503 (JSON error, ``Retry-After: 5``)
    instead of a stream that opens and closes at once."""
    await run_in_threadpool(state.repo.get_asset, asset_id)
    try:
        await run_in_threadpool(state.live.ping)
    except Exception as exc:  # noqa: BLE001 - e.g. redis.ConnectionError
        log.warning("stream refused: live feed unavailable (%s: %s)", type(exc).__name__, str(exc)[:200])
        raise LiveUnavailableError("live stream unavailable: the live cache (Redis) cannot be reached; retry later") from None
    return asset_id


def _slots(request: Request) -> StreamSlots:
    slots = getattr(request.app.state, "stream_slots", None)
    if slots is None:
        settings = request.app.state.dt.settings
        slots = request.app.state.stream_slots = StreamSlots(settings.stream_max_per_principal, settings.stream_max_per_address)
    return slots


async def _stream_slot(request: Request, asset_id: Annotated[str, Depends(_known_asset)]) -> StreamSlot:
    """A place among the caller's open streams (429 beyond ``STREAM_MAX_PER_*``); taken after the
    asset and live-feed checks, in one step with the count (no await between check and take)."""
    principal = getattr(request.state, "principal", None)
    who = f"{principal.kind}:{principal.id}" if principal is not None else None
    return _slots(request).acquire(who, client_ip(request))


@router.get("/stream", response_class=EventSourceResponse)
async def stream(
    state: State, asset_id: Annotated[str, Depends(_known_asset)], slot: Annotated[StreamSlot, Depends(_stream_slot)]
) -> AsyncIterator[ServerSentEvent]:
    """Server-Sent Events: first ``event: state`` with the current state (as ``GET .../state``), then
    ``event: reading`` (``{"asset_id", "quantity", "unit", "ts", "value"}``) for each reading as it is
    stored, ``event: status`` (``{"asset_id", "status", "ts"}``) for each machine state and ``event: alarm``
    for each alarm of the asset raised, escalated, acknowledged or cleared (the alarm as ``GET /alarms/{id}``
    answers it, plus ``"event"``: ``raised``, ``escalated``, ``acknowledged`` or ``cleared``). Late readings
    are streamed too; the state keeps the newest by timestamp. A comment is sent every 15 s of silence.

    404 naming ``asset_id`` for an unknown asset; 503 when the live feed (Redis) cannot be reached;
    429 when the caller already has ``STREAM_MAX_PER_PRINCIPAL`` streams open (per user or API
    key) or its address ``STREAM_MAX_PER_ADDRESS``, in this API process. All streams of a process
    share one Redis connection. Timestamps are RFC 3339 UTC with ``Z``, as elsewhere in the API.
    """
    try:
        async with state.live.subscribe(asset_id) as events:  # subscribed before the snapshot: nothing falls between
            snapshot = await get_state(asset_id, state)
            yield ServerSentEvent(event="state", data=snapshot.model_dump(mode="json"))
            async for batch in events:
                for event in batch:
                    kind = "alarm" if "alarm_id" in event else "status" if "status" in event else "reading"
                    yield ServerSentEvent(event=kind, data=event)
    finally:
        slot.release()
