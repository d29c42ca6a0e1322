"""Decoding and validation of one MQTT message into readings and dead letters.

Nothing here raises on bad input: every fault becomes a :class:`DeadLetter` naming the field,
and in an array payload the good items are kept. Checks, in order:

1. size: a payload over ``max_bytes`` is dropped whole ("payload too large");
2. topic: must follow the contract (:mod:`digitaltwin.ingest.mqtt_topics`);
3. JSON: malformed, or nested deeper than :data:`MAX_DEPTH` ("too deeply nested");
   ``NaN``/``Infinity`` tokens are read so that the item is rejected naming its field;
4. each item: no NUL character (U+0000) in any key or string (:mod:`digitaltwin.ingest.nul`;
   PostgreSQL text cannot hold one), then :func:`digitaltwin.domain.readings.parse_item`
   (non-finite, null and ``"unavailable"`` values, unknown units, epoch seconds, implausible
   timestamps), the asset of the topic, a declared ``interval`` (checked against the series
   by the writer), and on ``factory/`` topics the machine ``status``. A ``factory/`` item with
   a ``status`` and no measurement (``{"timestamp", "machine_id", "status": "STOP"}``) is a
   status-only message: it updates the machine status and stores no reading.

Speed (``bench/mqtt_ingest.py``): JSON is read with orjson (about 5x faster than the
standard library on these payloads); what orjson refuses (``NaN``/``Infinity`` tokens,
integers beyond 64 bits, UTF-16/32 or a BOM, lone surrogates) is read again with :mod:`json`,
so every payload is accepted or rejected exactly as before. Items of the canonical shape
``{"ts", "quantity", "value", "unit"}`` on ``dt/`` topics take a fast path
(:func:`_fast_readings`) that applies the same rules as ``parse_item`` with one table lookup
per (quantity, unit); any item it is not sure about sends the whole message down the general
path, which then decides (and names the field).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from digitaltwin.domain.dead_letters import (
    PAYLOAD_KEEP_BYTES,
    DeadLetter,
    truncate_payload,
)
from digitaltwin.domain.errors import ValidationError
from digitaltwin.domain.readings import Reading, item_interval_seconds, item_meter_serial, parse_item
from digitaltwin.domain.sentinels import SENTINELS
from digitaltwin.domain.timestamps import (
    FUTURE_TOLERANCE,
    PLAUSIBLE_FLOOR,
    parse_instant,
)
from digitaltwin.domain.units import FIELD_ALIASES, QUANTITIES
from digitaltwin.ingest.mqtt_topics import Route, TopicKind, route
from digitaltwin.ingest.nul import nul_field, nul_reason
from digitaltwin.services.meter import SerialSighting

log = logging.getLogger(__name__)

#: Deepest JSON nesting accepted; a valid payload is at most 3 deep (array > item > "values").
MAX_DEPTH = 8
#: Machine states of the replaced system's ``factory/{line}/{machine_id}/power`` contract.
MACHINE_STATUSES = ("RUN", "IDLE", "STOP")

_FLOOR_MS = PLAUSIBLE_FLOOR.timestamp() * 1000
_TOLERANCE_MS = FUTURE_TOLERANCE.total_seconds() * 1000
#: (quantity, unit) -> (factor, offset, low, high): :func:`~digitaltwin.domain.units.to_canonical` and
#: :func:`~digitaltwin.domain.units.check_range` as one lookup, built from the same table.
_CONVERSIONS: dict[tuple[str, str], tuple[float, float, float, float]] = {
    (name, unit): (factor, offset, *spec.bounds)
    for name, spec in QUANTITIES.items()
    for unit, (factor, offset) in spec.factors.items()
}
_CANONICAL_KEYS = frozenset(("ts", "quantity", "value", "unit"))


@dataclass(frozen=True, slots=True)
class MachineStatus:
    """The state a machine reported with a reading at ``ts`` (UTC)."""

    asset_id: str
    status: str
    ts: datetime


@dataclass(frozen=True, slots=True)
class DeclaredInterval:
    """An item that declared its ``interval`` (``"PT15M"``), in seconds, with the item's readings.

    The writer checks it against the series' recorded interval (a storage lookup) and drops
    the item's readings with a dead letter naming ``interval`` on a conflict.
    """

    item_index: int | None
    seconds: int
    readings: tuple[Reading, ...]


@dataclass(slots=True)
class DecodedMessage:
    """What one message holds after validation.

    Attributes:
        route: the topic's route; None when the topic is outside the contract.
        readings: readings of the valid items.
        dead_letters: one per rejected item, or one for the whole message.
        statuses: machine states of ``factory/`` messages.
        declared: items that declared an ``interval`` (checked by the writer).
        serials: readings of items that carried a ``meter_serial`` (meter replacements, applied
            by the writer after the readings are stored).
        head: the first :data:`~digitaltwin.domain.dead_letters.PAYLOAD_KEEP_BYTES` bytes of
            the payload, kept for dead letters decided later (such as an unknown asset) and
            decoded only then (:attr:`payload_head`).
    """

    topic: str
    route: Route | None
    received_at: datetime
    head: bytes
    payload_bytes: int
    readings: list[Reading] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    statuses: list[MachineStatus] = field(default_factory=list)
    declared: list[DeclaredInterval] = field(default_factory=list)
    serials: list[SerialSighting] = field(default_factory=list)

    @property
    def payload_head(self) -> str:
        """The kept head of the payload as text (see :func:`~digitaltwin.domain.dead_letters.truncate_payload`)."""
        return truncate_payload(self.head)

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
    message = DecodedMessage(topic, None, received_at, payload[:PAYLOAD_KEEP_BYTES], len(payload))
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
        body = _loads(payload)
    except RecursionError:
        message.reject(field="payload", reason="malformed or too deeply nested JSON", code="too_deep")
        return message
    except (ValueError, UnicodeDecodeError) as exc:
        message.reject(field="payload", reason=f"malformed JSON: {exc}"[:300], code="invalid_json")
        return message
    if message.route.kind is TopicKind.TELEMETRY:
        fast = _fast_readings(body, message.route.asset_id)
        if fast is not None:
            message.readings = fast
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
    bad = nul_field(item)
    if bad is not None:
        message.reject(field=bad, reason=nul_reason(bad), code="invalid_item", item_index=index)
        return
    try:
        status = None
        if message.route.kind is TopicKind.FACTORY_POWER and isinstance(item, dict) and "status" in item:
            status = item["status"]
            if status not in MACHINE_STATUSES:
                raise ValidationError(f"status {str(status)[:40]!r} is not one of {', '.join(MACHINE_STATUSES)}", field="status")
        if status is not None and _status_only(item):
            readings: list[Reading] = []
            ts = _status_ts(item, message.route.asset_id)
        else:
            readings = parse_item(item, asset_id=message.route.asset_id)
            ts = readings[0].ts
        declared = item_interval_seconds(item)
        serial = item_meter_serial(item)
    except ValidationError as exc:
        message.reject(field=exc.field, reason=exc.message, code="invalid_item", item_index=index)
        return
    message.readings.extend(readings)
    if serial is not None:
        message.serials.extend(SerialSighting(r.asset_id, r.quantity, r.ts, r.value, serial) for r in readings)
    if declared is not None and readings:
        message.declared.append(DeclaredInterval(index, declared, tuple(readings)))
    if status is not None:
        message.statuses.append(MachineStatus(message.route.asset_id, status, ts))


#: Keys that make an item carry a measurement (besides the unit-named fields of ``FIELD_ALIASES``).
_MEASUREMENT_KEYS = frozenset(("quantity", "value", "values"))


def _status_only(item: dict[str, object]) -> bool:
    """True for a ``factory/`` item that reports only a machine state: no ``power_kW``, no
    ``quantity``/``value``/``values`` and no other unit-named measurement field."""
    return not any(key in _MEASUREMENT_KEYS or key in FIELD_ALIASES for key in item)


def _status_ts(item: dict[str, object], asset_id: str) -> datetime:
    """The UTC timestamp of a status-only item, after the same id and timestamp checks as :func:`parse_item`.

    Raises:
        ValidationError: naming ``machine_id`` (or ``asset_id``/``device_id``) when it is not the
            topic's machine, ``ts``/``timestamp`` when missing or not a plausible instant.
    """
    for key in ("asset_id", "device_id", "machine_id"):
        if key in item:
            value = item[key]
            if not isinstance(value, str) or value != asset_id:
                raise ValidationError(f"{key} {str(value)[:80]!r} does not match the machine {asset_id!r} of the topic", field=key)
            break
    for key in ("ts", "timestamp", "time"):
        if key in item:
            return parse_instant(item[key], field=key)
    raise ValidationError("timestamp is missing", field="ts")


def _loads(payload: bytes) -> object:
    """orjson, and :func:`json.loads` for what orjson refuses (see the module docstring); raises like ``json.loads``."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return json.loads(payload)


def _fast_readings(body: object, asset_id: str) -> list[Reading] | None:
    """The readings of a payload whose items all have the canonical shape and pass every rule; else None.

    Same rules as :func:`~digitaltwin.domain.readings.parse_item` for ``{"ts", "quantity",
    "value", "unit"}`` items (no other key): ``ts`` epoch milliseconds (an integer) within
    [:data:`~digitaltwin.domain.timestamps.PLAUSIBLE_FLOOR`, now +
    :data:`~digitaltwin.domain.timestamps.FUTURE_TOLERANCE`] or a string read by
    :func:`~digitaltwin.domain.timestamps.parse_instant`; ``value`` a JSON number (booleans
    and strings go to the general path) that is finite and, once converted, within the
    quantity's bounds; a known unit of a known quantity. None means "not sure": the caller
    then runs the general path, which names the field of any fault.
    """
    if type(body) is dict:
        items: list[object] = [body]
    elif type(body) is list and body:
        items = body
    else:
        return None
    ceiling = time.time() * 1000 + _TOLERANCE_MS
    out: list[Reading] = []
    for item in items:
        if type(item) is not dict or item.keys() != _CANONICAL_KEYS:
            return None
        ts, quantity, value, unit = item["ts"], item["quantity"], item["value"], item["unit"]
        if type(quantity) is not str or type(unit) is not str:
            return None
        conversion = _CONVERSIONS.get((quantity, unit))
        if conversion is None:
            return None
        if type(value) is int:
            try:
                value = float(value)
            except OverflowError:
                return None
        elif type(value) is not float:
            return None
        factor, offset, low, high = conversion
        if value in SENTINELS or (value == -1.0 and low >= 0):
            return None  # a 'not available' sentinel: the general path rejects it naming the field
        canonical = value * factor + offset
        if not low <= canonical <= high:  # False for NaN and for +-Infinity
            return None
        if type(ts) is int:
            if not _FLOOR_MS <= ts <= ceiling:
                return None
            instant = datetime.fromtimestamp(ts / 1000.0, tz=UTC)
        elif type(ts) is str:
            try:
                instant = parse_instant(ts, field="ts")
            except ValidationError:
                return None
        else:
            return None
        out.append(Reading(asset_id, quantity, instant, canonical))
    return out
