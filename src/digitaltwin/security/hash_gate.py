"""A bound on the password checks (argon2id) one API process runs at once, and on those waiting.

Each check takes about 64 MiB and a third of a second of CPU (RFC 9106 parameters, see
:mod:`.passwords`). Without a bound, unauthenticated logins with random user names (each
verified against a dummy hash, so unknown and known names take the same time) fill the worker
threads: memory grows by 64 MiB per concurrent login and every other request waits for CPU.
With it at most ``LOGIN_HASH_CONCURRENCY`` checks run (default: one per CPU), at most
``LOGIN_HASH_QUEUE`` wait, and any further login is answered 429 at once, before any hashing.
The gate is taken around the whole credential check, so unknown and known user names pass
through it alike and still cost the same.

The checks run on the gate's own threads, whose nice value is raised by
:data:`HASH_THREAD_NICENESS` (Linux keeps it per thread, and argon2's lane threads inherit it):
under a flood the hashing then takes the CPU time other requests leave, instead of half of it,
so signed-in users keep their latency (``bench/login_flood.py``). Where the platform has no
per-thread priority the checks simply run at normal priority.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio

from digitaltwin.security.errors import TooManyAttemptsError

log = logging.getLogger(__name__)
T = TypeVar("T")
#: Added to the nice value of the threads that check passwords (0 = normal priority, 19 = lowest).
HASH_THREAD_NICENESS = 10


def _lower_priority() -> None:
    """Raise the calling thread's nice value (Linux: per thread); ignored where that is not possible."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + HASH_THREAD_NICENESS))
    except (AttributeError, OSError) as exc:  # no setpriority (Windows) or not allowed
        log.debug("password-check threads keep their priority: %s", exc)


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
        self._executor: ThreadPoolExecutor | None = None
        self.waiting = 0
        self.refused = 0

    async def run(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``call(*args, **kwargs)`` on one of the gate's low-priority threads, inside :meth:`slot`.

        Raises:
            TooManyAttemptsError: as :meth:`slot`; and whatever ``call`` raises.
        """
        async with self.slot():
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="password-check", initializer=_lower_priority)
            context = contextvars.copy_context()  # the request id of the log lines
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, functools.partial(context.run, call, *args, **kwargs)
            )

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
