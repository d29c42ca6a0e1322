"""Dead letters: the telemetry that was rejected, with the field and the reason (operator)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from digitaltwin.api.deps import State
from digitaltwin.api.schemas import DeadLetterOut
from digitaltwin.domain.timestamps import parse_instant
from digitaltwin.security.policy import access
from digitaltwin.security.roles import Role

router = APIRouter(prefix="/api/v1/dead-letters", tags=["readings"])


@router.get("", response_model=list[DeadLetterOut], openapi_extra=access(Role.OPERATOR))
def list_dead_letters(
    state: State,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    topic_prefix: Annotated[str | None, Query(max_length=512, description="e.g. dt/plant-1/ or factory/")] = None,
    reason_code: Annotated[
        str | None,
        Query(max_length=32, description="invalid_item, invalid_json, too_large, too_deep, bad_topic, unknown_asset, site_mismatch, ..."),
    ] = None,
    since: Annotated[str | None, Query(description="RFC 3339 instant: letters received at or after it")] = None,
    before_id: Annotated[int | None, Query(ge=1, le=2**53, description="page: letters stored before this id")] = None,
) -> list[DeadLetterOut]:
    """Rejected MQTT messages and items, newest first: topic, the first 1 KiB of the payload, the
    offending ``field``, the ``reason`` and its ``reason_code``. Page with ``before_id`` (the last
    ``id`` of a page). 422 naming ``since`` for an instant without a UTC offset."""
    start = None if since is None else parse_instant(since, field="since", plausible=False)
    letters = state.repo.list_dead_letters(
        topic_prefix=topic_prefix, reason_code=reason_code, since=start, before_id=before_id, newest_first=True, limit=limit
    )
    return [
        DeadLetterOut(
            id=d.id or 0, received_at=d.received_at, topic=d.topic, payload=d.payload, payload_bytes=d.payload_bytes,
            item_index=d.item_index, field=d.field, reason=d.reason, reason_code=d.reason_code,
        )
        for d in letters
    ]
