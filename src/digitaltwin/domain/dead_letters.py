"""Dead letters: telemetry that could not be stored, kept with the reason instead of being lost."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

#: Bytes of a rejected payload kept in its dead letter.
PAYLOAD_KEEP_BYTES = 1024


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One rejected message, or one rejected item of an array message.

    Attributes:
        topic: the MQTT topic it arrived on.
        payload: the first :data:`PAYLOAD_KEEP_BYTES` bytes of the payload, decoded as
            UTF-8 with replacement characters.
        payload_bytes: size of the whole payload in bytes.
        item_index: position of the rejected item in an array payload; None for the whole message.
        field: the offending field (``power_w``, ``ts``, ``payload``, ``asset_id``, ...).
        reason: human-readable reason, e.g. ``value is not a finite number (NaN or Infinity)``.
        reason_code: a short bounded category used as a metric label
            (``invalid_item``, ``invalid_json``, ``too_large``, ``too_deep``, ``bad_topic``,
            ``unknown_asset``, ``site_mismatch``, ``storage_error``, ``conflict``: a reading
            stored before with another value, which stays).
        received_at: UTC instant the message was received.
        id: the stored letter's id (increasing with storage order), None before it is stored.
    """

    topic: str
    payload: str
    payload_bytes: int
    item_index: int | None
    field: str | None
    reason: str
    reason_code: str
    received_at: datetime
    id: int | None = None


def truncate_payload(payload: bytes) -> str:
    """The kept head of ``payload`` as text (UTF-8, invalid bytes replaced)."""
    return payload[:PAYLOAD_KEEP_BYTES].decode("utf-8", errors="replace")
