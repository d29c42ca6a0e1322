"""HTTP ingestion of telemetry batches."""

from __future__ import annotations

import json
import logging

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from digitaltwin.api.deps import State
from digitaltwin.api.schemas import BatchIn, BatchOut, ConflictOut, ItemResultOut
from digitaltwin.domain.errors import ValidationError
from digitaltwin.ingest.batch import ingest_batch

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/readings", tags=["readings"])

#: Items per request.
MAX_ITEMS = 10_000


@router.post(
    "",
    response_model=BatchOut,
    responses={422: {"model": BatchOut, "description": "every item was rejected (or the body is not a batch)"}},
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": BatchIn.model_json_schema()}}, "required": True}},
)
async def post_readings(request: Request, state: State) -> JSONResponse:
    """Store a batch of telemetry items and answer per item: accepted, or rejected with field and reason.

    The body is ``{"timezone": optional IANA zone, "readings": [item, ...]}``, a bare
    array of items, or a single item object (a batch of one). An item is
    ``{"asset_id", "ts", "quantity", "value", "unit"}`` or names its measurements with
    their unit (``{"device_id", "ts", "power_w": 750}``); an unknown unit is rejected
    naming ``unit``. ``ts`` is RFC 3339 with offset, or epoch milliseconds (values
    before 2000-01-01, such as epoch seconds, are rejected naming ``ts``); an
    offset-less ``ts`` needs the body's ``timezone``. Plain decimal strings are
    coerced; NaN, Infinity, null and other strings are rejected naming the field.
    Every value needs its unit (``unit`` or a field name such as ``power_kw``) and
    must lie in the quantity's plausible range. Interval energy may declare its
    interval (``"interval": "PT15M"``); otherwise it is inferred from the spacing.
    A declared interval that differs from the series' interval is rejected naming
    ``interval``. An item with a NUL character (U+0000) in any key or string is rejected
    naming that field (PostgreSQL text cannot hold it).
    The first value stored for a series and timestamp stays: a resent reading with the same
    value is a duplicate (MQTT QoS 1 redelivery, counted in ``duplicates``); one with another
    value is a conflict, listed on its item with both values (``conflicts``), not a
    correction (delete the range first). The batch is stored like an import (one binary COPY).
    The answer is 200 when at least one item was accepted, 422 when none was.
    Accepted readings then update the live twin state and are pushed on ``/api/v1/stream``,
    as MQTT readings are (after the commit).
    """
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError(f"body is not valid JSON: {exc}", field="body") from None
    except RecursionError:
        raise ValidationError("body is nested too deeply", field="body") from None
    timezone = None
    if isinstance(body, dict):
        timezone = body.get("timezone")
        if timezone is not None and not isinstance(timezone, str):
            raise ValidationError("timezone must be a string", field="timezone")
        # An object without "readings" is one item (an MQTT-style message), answered like a batch of one.
        body = body["readings"] if "readings" in body else [body]
    if not isinstance(body, list):
        raise ValidationError("body must be an array of items or an object with a 'readings' array", field="readings")
    if len(body) > MAX_ITEMS:
        raise ValidationError(f"at most {MAX_ITEMS} items per request", field="readings")
    # Security: an API key limited to one site may only ingest that site's assets.
    principal = getattr(request.state, "principal", None)
    key_site = principal.site_id if principal is not None else None
    result = await run_in_threadpool(ingest_batch, state.repo, body, timezone=timezone, site_id=key_site)
    if result.readings:
        try:  # after the commit, as for MQTT; the readings are stored whatever happens here
            await run_in_threadpool(state.live.record, result.readings)
        except Exception:  # noqa: BLE001 - e.g. Redis down: GET .../state reads storage (live_cache 'unavailable')
            log.exception("live state update of %d HTTP reading(s) failed", len(result.readings))
        if state.monitoring is not None:  # detection after the commit; queued, never raising
            state.monitoring.runner.submit(result.readings)
    state.metrics.readings_stored.labels("http").inc(result.stored)
    state.metrics.readings_rejected.labels("http").inc(result.rejected)
    out = BatchOut(
        accepted=result.accepted,
        rejected=result.rejected,
        stored=result.stored,
        duplicates=result.duplicates,
        conflicts=result.conflicts,
        items=[
            ItemResultOut(
                index=i.index, status="accepted" if i.accepted else "rejected", readings=i.readings, field=i.field, reason=i.reason,
                conflicts=[ConflictOut(quantity=c.quantity, ts=c.ts, stored_value=c.stored_value, value=c.value) for c in i.conflicts],
            )
            for i in result.items
        ],
    )
    code = 422 if result.items and result.accepted == 0 else 200
    return JSONResponse(out.model_dump(mode="json"), status_code=code)
