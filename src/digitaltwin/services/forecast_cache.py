"""Served forecasts by a key that names everything they are computed from.

A forecast is a pure function of the model (its id and the SHA-256 of each artifact file),
the request (steps, quantile levels) and the data it reads: the readings that decide the
target window (with the bracketing readings), the exogenous readings, the window's bucket
edges, the site's zone and country and the power hold limit. :func:`forecast_key` hashes
all of them (BLAKE2b, RFC 7693), so a new, deleted or re-written reading, a newly activated
or retrained model, or a changed attribute gives another key, and a stored forecast is never
served for data it was not computed from. Because the key is made from the database's
content and the model files, it is right in every process (API workers, an ingest worker
writing readings, a CLI activating a model) without any invalidation message; each process
keeps its own least-recently-used entries (``cachetools.LRUCache``).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

import numpy as np
from cachetools import LRUCache

V = TypeVar("V")


def forecast_key(parts: Iterable[object]) -> bytes:
    """A 32-byte BLAKE2b digest of ``parts``.

    Args:
        parts: numpy arrays (hashed with their dtype, shape and raw bytes), ``bytes``, or
            values hashed by their ``repr`` (str, int, float, None, tuples of those).
    """
    digest = hashlib.blake2b(digest_size=32)
    for part in parts:
        if isinstance(part, np.ndarray):
            array = np.ascontiguousarray(part)
            digest.update(f"<{array.dtype.str}{array.shape}>".encode())
            digest.update(array.tobytes())
        elif isinstance(part, bytes):
            digest.update(b"<bytes%d>" % len(part))
            digest.update(part)
        else:
            text = repr(part).encode()
            digest.update(b"<repr%d>" % len(text))
            digest.update(text)
    return digest.digest()


class ForecastCache(Generic[V]):
    """A thread-safe least-recently-used map from :func:`forecast_key` digests to forecasts.

    Args:
        size: most entries kept (>= 1).
        on_lookup: called with True for a hit and False for a miss (e.g. a metric).

    Raises:
        ValueError: ``size`` < 1.
    """

    def __init__(self, size: int, *, on_lookup: Callable[[bool], None] | None = None) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self._entries: LRUCache[bytes, V] = LRUCache(maxsize=size)
        self._lock = threading.Lock()
        self._on_lookup = on_lookup

    def get(self, key: bytes) -> V | None:
        """The forecast stored under ``key``, or None."""
        with self._lock:
            value = self._entries.get(key)
        if self._on_lookup is not None:
            self._on_lookup(value is not None)
        return value

    def put(self, key: bytes, value: V) -> None:
        """Store ``value`` under ``key`` (the least recently used entry goes when full)."""
        with self._lock:
            self._entries[key] = value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
