"""NUL characters (U+0000) in telemetry: found before storage, so they reject an item instead of a batch.

PostgreSQL text cannot hold NUL (psycopg raises "PostgreSQL text fields cannot contain NUL
(0x00) bytes" when adapting the parameter), so a string with one, in an asset id, a unit,
a status or any other field, would fail the whole statement that carries it: the HTTP batch
(HTTP 500, good items lost) or the MQTT flush (unacknowledged, redelivered forever). Items are
therefore checked first, and an item holding a NUL is rejected naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping

NUL = "\x00"
#: Containers visited before giving up; a telemetry item is a handful of keys (a deeper or
#: larger one is rejected by the payload checks anyway).
_MAX_NODES = 10_000


def nul_field(item: object) -> str | None:
    """The dotted path of the first key or string value of ``item`` that contains U+0000, or None.

    Args:
        item: a decoded JSON value (object, array, string, number, ...).

    Returns:
        e.g. ``"asset_id"``, ``"values.power_kw"`` (a NUL in the key or in its value),
        ``"readings.2"`` for an array element; ``"item"`` for a bare string, None when clean.
        Traversal is iterative (no recursion) and stops after :data:`_MAX_NODES` containers.
    """
    stack: list[tuple[object, str]] = [(item, "")]
    visited = 0
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if NUL in node:
                return path or "item"
            continue
        if isinstance(node, Mapping):
            children = [(f"{path}.{key}" if path else str(key), key, value) for key, value in node.items()]
        elif isinstance(node, list):
            children = [(f"{path}.{i}" if path else str(i), None, value) for i, value in enumerate(node)]
        else:
            continue
        visited += 1
        if visited > _MAX_NODES:
            return None
        for child_path, key, _ in children:
            if isinstance(key, str) and NUL in key:
                return _printable(child_path)
        stack.extend((value, child_path) for child_path, _, value in reversed(children))
    return None


def _printable(path: str) -> str:
    """``path`` with NUL shown as ``\\u0000`` (a field name is echoed in answers and dead letters)."""
    return path.replace(NUL, "\\u0000")


def nul_reason(field: str) -> str:
    """The rejection reason for a NUL found in ``field``."""
    return f"{field} contains a NUL character (U+0000), which cannot be stored"
