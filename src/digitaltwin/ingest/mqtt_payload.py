"""Decoding and validation of one MQTT message into readings and dead letters.

Nothing here raises on bad input: every fault becomes a :class:`DeadLetter` naming the field,
and in an array payload the good items are kept. Checks, in order:

1. size: a payload over ``max_bytes`` is dropped whole ("payload too large");
2. topic: must follow the contract (:mod:`digitaltwin.ingest.mqtt_topics`);
3. JSON: malformed, or nested deeper than :data:`MAX_DEPTH` ("too deeply nested");
   ``NaN``/``Infinity`` tokens are read so that the item is rejected naming its field;
4. each item: :func:`digitaltwin.domain.readings.parse_item` (non-finite, null and
   ``"unavailable"`` values, unknown units, epoch seconds, implausible timestamps), the
   asset of the topic, and on ``factory/`` topics the machine ``status``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime

from digitaltwin.domain.dead_letters import DeadLetter, truncate_payload
from digitaltwin.domain.errors import ValidationError
from digitaltwin.domain.readings import Reading, parse_item
from digitaltwin.ingest.mqtt_topics import Route, TopicKind, route

log = logging.getLogger(__name__)

#: Deepest JSON nesting accepted; a valid payload is at most 3 deep (array > item > "values").
MAX_DEPTH = 8
#: Machine states of the replaced system's ``factory/{line}/{machine_id}/power`` contract.
MACHINE_STATUSES = ("RUN", "IDLE", "STOP")


@dataclass(frozen=True, slots=True)
class MachineStatus:
    """The state a machine reported with a reading at ``ts`` (UTC)."""

    asset_id: str
    status: str
    ts: datetime


@dataclass(slots=True)
class DecodedMessage:
    """What one message holds after validation.

    Attributes:
        route: the topic's route; None when the topic is outside the contract.
        readings: readings of the valid items.
        dead_letters: one per rejected item, or one for the whole message.
        statuses: machine states of ``factory/`` messages.
        payload_head: the kept head of the payload (for dead letters decided later,
            such as an unknown asset).
    """

    topic: str
    route: Route | None
    received_at: datetime
    payload_head: str
    payload_bytes: int
    readings: list[Reading] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    statuses: list[MachineStatus] = field(default_factory=list)

    def reject(self, *, field: str | None, reason: str, code: str, item_index: int | None = None) -> None:
        """Record a dead letter for this message (or one of its items)."""
        self.dead_letters.append(
            DeadLetter(self.topic, self.payload_head, self.payload_bytes, item_index, field, reason, code, self.received_at)
        )


def _too_deep(value: object, limit: int) -> bool:
    """True when ``value`` nests containers deeper than ``limit`` (iterative, no recursion)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: object = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)  # type: ignore[attr-defined]
    return False


def decode_message(
    topic: str, payload: bytes, *, received_at: datetime, max_bytes: int, prefix: str = ""
) -> DecodedMessage:
    """Validate one message.

    Args:
        topic: the MQTT topic.
        payload: the raw payload.
        received_at: UTC reception time (kept in dead letters).
        max_bytes: largest accepted payload (``MQTT_MAX_MESSAGE_BYTES``).
        prefix: the deployment's topic prefix.

    Returns:
        The readings of the valid items and a dead letter per fault; never raises for bad input.
    """
    message = DecodedMessage(topic, None, received_at, truncate_payload(payload), len(payload))
    if len(payload) > max_bytes:
        log.warning("payload too large on %s: %d bytes > %d", topic[:200], len(payload), max_bytes)
        message.reject(field="payload", reason=f"payload too large: {len(payload)} bytes > limit {max_bytes}", code="too_large")
        return message
    try:
        message.route = route(topic, prefix=prefix)
    except ValidationError as exc:
        message.reject(field=exc.field, reason=exc.message, code="bad_topic")
        return message
    try:
        body = json.loads(payload)
    except RecursionError:
        message.reject(field="payload", reason="malformed or too deeply nested JSON", code="too_deep")
        return message
    except (ValueError, UnicodeDecodeError) as exc:
        message.reject(field="payload", reason=f"malformed JSON: {exc}"[:300], code="invalid_json")
        return message
    if _too_deep(body, MAX_DEPTH):
        message.reject(field="payload", reason=f"malformed or too deeply nested JSON (deeper than {MAX_DEPTH})", code="too_deep")
        return message
    if isinstance(body, dict):
        items: list[object] = [body]
        single = True
    elif isinstance(body, list) and body:
        items, single = body, False
    else:
        message.reject(field="payload", reason="payload must be a JSON object or a non-empty array of objects", code="invalid_json")
        return message
    for index, item in enumerate(items):
        _decode_item(message, item, None if single else index)
    return message


def _decode_item(message: DecodedMessage, item: object, index: int | None) -> None:
    assert message.route is not None
    try:
        readings = parse_item(item, asset_id=message.route.asset_id)
        status = None
        if message.route.kind is TopicKind.FACTORY_POWER and isinstance(item, dict) and "status" in item:
            status = item["status"]
            if status not in MACHINE_STATUSES:
                raise ValidationError(f"status {str(status)[:40]!r} is not one of {', '.join(MACHINE_STATUSES)}", field="status")
    except ValidationError as exc:
        message.reject(field=exc.field, reason=exc.message, code="invalid_item", item_index=index)
        return
    message.readings.extend(readings)
    if status is not None:
        message.statuses.append(MachineStatus(message.route.asset_id, status, readings[0].ts))
