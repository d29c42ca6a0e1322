"""Caps on the live streams (SSE) one caller may hold open at once, per API process.

A stream holds a connection, a task and a queue for as long as the client keeps it open, and
the route is cheap to call, so a single viewer could open hundreds. :class:`StreamSlots` counts
the open streams per principal (user or API key) and per client address and refuses one more
beyond ``STREAM_MAX_PER_PRINCIPAL`` / ``STREAM_MAX_PER_ADDRESS`` with
:class:`TooManyStreamsError` (HTTP 429). Counts are per process (each ``serve`` worker has its
own), like the fan-out connection they protect.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter
from typing import ClassVar

from digitaltwin.domain.errors import DomainError


class TooManyStreamsError(DomainError):
    """The caller already holds the most live streams allowed (HTTP 429)."""

    status_code = 429
    headers: ClassVar[dict[str, str]] = {"Retry-After": "10"}


class StreamSlot:
    """One open stream's place in the counts; released once (explicitly or when collected)."""

    def __init__(self, slots: StreamSlots, principal: str | None, address: str | None) -> None:
        self._finalizer = weakref.finalize(self, slots._release, principal, address)

    def release(self) -> None:
        """Give the place back (idempotent)."""
        self._finalizer()


class StreamSlots:
    """Open-stream counts per principal and per address.

    Args:
        per_principal: ``STREAM_MAX_PER_PRINCIPAL``.
        per_address: ``STREAM_MAX_PER_ADDRESS``.
    """

    def __init__(self, per_principal: int, per_address: int) -> None:
        self.per_principal, self.per_address = per_principal, per_address
        self._lock = threading.Lock()
        self._by_principal: Counter[str] = Counter()
        self._by_address: Counter[str] = Counter()

    def acquire(self, principal: str | None, address: str | None) -> StreamSlot:
        """A slot for a new stream of ``principal`` (``kind:id``) from ``address``.

        The slot is released by :meth:`StreamSlot.release` or, should the stream never start,
        when the slot object is collected.

        Raises:
            TooManyStreamsError: naming ``asset_id`` (the stream's parameter) when either count is at its cap.
        """
        with self._lock:
            if principal is not None and self._by_principal[principal] >= self.per_principal:
                raise TooManyStreamsError(
                    f"at most {self.per_principal} live streams may be open per user or API key; close one first",
                    field="asset_id",
                )
            if address is not None and self._by_address[address] >= self.per_address:
                raise TooManyStreamsError(
                    f"at most {self.per_address} live streams may be open per client address; close one first",
                    field="asset_id",
                )
            if principal is not None:
                self._by_principal[principal] += 1
            if address is not None:
                self._by_address[address] += 1
        return StreamSlot(self, principal, address)

    def _release(self, principal: str | None, address: str | None) -> None:
        with self._lock:
            for counter, key in ((self._by_principal, principal), (self._by_address, address)):
                if key is not None:
                    counter[key] -= 1
                    if counter[key] <= 0:
                        del counter[key]

    def open_streams(self) -> int:
        """Streams counted now (by address when known, else by principal)."""
        with self._lock:
            return max(sum(self._by_address.values()), sum(self._by_principal.values()))
