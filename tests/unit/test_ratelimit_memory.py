"""The in-process moving window decides as ``limits``' MemoryStorage does, on a fake clock."""

from __future__ import annotations

import asyncio

import limits.aio.storage.memory as limits_memory
import numpy as np
import pytest
from limits import RateLimitItemPerMinute, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from digitaltwin.security.ratelimit import MemoryMovingWindow


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def time(self) -> float:
        return self.now


def test_same_decisions_and_stats_as_limits_memory_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(limits_memory, "time", clock)  # limits reads time.time() in that module

    async def run() -> None:
        reference = MovingWindowRateLimiter(MemoryStorage())
        ours = MemoryMovingWindow(clock=clock.time)
        rng = np.random.default_rng(11)
        items = [RateLimitItemPerMinute(5), parse("3 per 15 minutes")]
        refused = 0
        for _ in range(3000):
            clock.now += float(rng.exponential(2.0)) + 1e-3 * float(rng.random())
            item = items[int(rng.integers(0, 2))]
            who = ("api", f"client-{int(rng.integers(0, 3))}")
            action = int(rng.integers(0, 3))
            if action == 0:
                allowed = await ours.hit(item, *who)
                assert allowed == await reference.hit(item, *who)
                refused += not allowed
            elif action == 1:
                assert await ours.test(item, *who) == await reference.test(item, *who)
            mine, theirs = await ours.get_window_stats(item, *who), await reference.get_window_stats(item, *who)
            assert mine.remaining == theirs.remaining
            if theirs.remaining < item.amount:  # a hit in the window: its reset time (limits has none otherwise)
                assert mine.reset_time == pytest.approx(theirs.reset_time)
            await asyncio.sleep(0)  # let limits' expiry task run
        assert refused > 100  # the limits were reached often

    asyncio.run(run())


def test_idle_keys_are_swept() -> None:
    clock = FakeClock()
    window = MemoryMovingWindow(clock=clock.time)
    window.SWEEP_EVERY = 10
    item = RateLimitItemPerMinute(100)

    async def run() -> None:
        for i in range(9):
            assert await window.hit(item, "api", f"client-{i}")
        clock.now += 61
        assert await window.hit(item, "api", "client-x")  # the 10th hit sweeps the idle keys
        assert list(window.events) == [item.key_for("api", "client-x")]

    asyncio.run(run())
