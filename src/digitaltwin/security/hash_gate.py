"""A bound on the password checks (argon2id) one API process runs at once, and on those waiting.

Each check takes about 64 MiB and a third of a second of CPU (RFC 9106 parameters, see
:mod:`.passwords`). Without a bound, unauthenticated logins with random user names (each
verified against a dummy hash, so unknown and known names take the same time) fill the worker
threads: memory grows by 64 MiB per concurrent login and every other request waits for CPU.
With it at most ``LOGIN_HASH_CONCURRENCY`` checks run (default: one per CPU), at most
``LOGIN_HASH_QUEUE`` wait, and any further login is answered 429 at once, before any hashing.
The gate is taken around the whole credential check, so unknown and known user names pass
through it alike and still cost the same.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from digitaltwin.security.errors import TooManyAttemptsError


def default_concurrency() -> int:
    """One per CPU available to this process (``os.sched_getaffinity`` where the platform has it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


class HashGate:
    """At most ``concurrency`` holders and ``queue`` waiters; the next caller gets 429.

    Args:
        concurrency: checks at once (``LOGIN_HASH_CONCURRENCY``).
        queue: checks allowed to wait (``LOGIN_HASH_QUEUE``).

    Used from one event loop (the API process's); the counters need no lock because nothing
    awaits between reading and changing them.
    """

    def __init__(self, *, concurrency: int, queue: int) -> None:
        self.concurrency = concurrency
        self.queue = queue
        self._limiter: anyio.CapacityLimiter | None = None
        self.waiting = 0
        self.refused = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the slots for the block.

        Raises:
            TooManyAttemptsError: 429 (``Retry-After: 1``, field None) when all slots are taken
                and the queue is full.
        """
        if self._limiter is None:  # created inside the running event loop
            self._limiter = anyio.CapacityLimiter(self.concurrency)
        limiter = self._limiter
        if limiter.borrowed_tokens >= self.concurrency and self.waiting >= self.queue:
            self.refused += 1
            raise TooManyAttemptsError("the server is busy checking other logins; retry shortly", retry_after_s=1, field=None)
        self.waiting += 1
        try:
            await limiter.acquire()
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            limiter.release()
