"""The live twin: current state of an asset and a Server-Sent Events stream of its new readings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, Field

from digitaltwin.api.deps import State
from digitaltwin.services.live_state import LiveReading, LiveStatus, TwinState

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


def _merged(state: State, asset_id: str) -> TwinState:
    """The live state, completed from storage for quantities it has not seen (e.g. after a Redis restart,
    or readings of a CSV import), and the machine status: the newer (by its timestamp) of the live one
    and the stored one, which survives a restart without Redis."""
    live = state.live.state(asset_id)
    seen = {r.quantity for r in live.readings}
    stored = [LiveReading(r.quantity, r.unit, r.ts, r.value) for r in state.repo.latest(asset_id) if r.quantity not in seen]
    readings = sorted([*live.readings, *stored], key=lambda r: r.quantity)
    status = live.status
    kept = state.repo.latest_machine_status(asset_id)
    if kept is not None and (status is None or kept[1] > status.ts):
        status = LiveStatus(kept[0], kept[1])
    return TwinState(asset_id, readings, status)


@router.get("/assets/{asset_id}/state", response_model=StateOut)
async def get_state(asset_id: str, state: State) -> StateOut:
    """The twin's current state: the latest reading (by timestamp) of each quantity and the machine status.

    404 naming ``asset_id`` for an unknown asset.
    """
    await run_in_threadpool(state.repo.get_asset, asset_id)
    twin = await run_in_threadpool(_merged, state, asset_id)
    return StateOut(
        asset_id=asset_id,
        readings=[StateReadingOut(quantity=r.quantity, unit=r.unit, ts=r.ts, value=r.value) for r in twin.readings],
        status=StatusOut(status=twin.status.status, ts=twin.status.ts) if twin.status else None,
    )


async def _known_asset(state: State, asset_id: Annotated[str, Query(description="the asset whose readings are streamed")]) -> str:
    """``asset_id`` if the asset exists; checked before the stream starts, so an unknown one is a 404."""
    await run_in_threadpool(state.repo.get_asset, asset_id)
    return asset_id


@router.get("/stream", response_class=EventSourceResponse)
async def stream(state: State, asset_id: Annotated[str, Depends(_known_asset)]) -> AsyncIterator[ServerSentEvent]:
    """Server-Sent Events: first ``event: state`` with the current state (as ``GET .../state``), then
    ``event: reading`` (``{"asset_id", "quantity", "unit", "ts", "value"}``) for each reading as it is
    stored and ``event: status`` (``{"asset_id", "status", "ts"}``) for each machine state. Late readings
    are streamed too; the state keeps the newest by timestamp. A comment is sent every 15 s of silence.

    404 naming ``asset_id`` for an unknown asset.
    """
    async with state.live.subscribe(asset_id) as events:  # subscribed before the snapshot: nothing falls between
        snapshot = await get_state(asset_id, state)
        yield ServerSentEvent(event="state", data=snapshot.model_dump(mode="json"))
        async for batch in events:
            for event in batch:
                yield ServerSentEvent(event="status" if "status" in event else "reading", data=event)
