"""The one-script Redis limiter decides as ``limits``' moving window on Redis does, and reads the epoch along."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis
import redis.asyncio
from limits import RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from digitaltwin.security.ratelimit import RateLimiter, RedisMovingWindow


@pytest.fixture
def prefix(redis_url: str):  # noqa: ANN201
    name = f"dt-test-{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{name}*"):
        client.delete(key)
    client.close()


def test_same_decisions_stats_and_keys_as_limits(redis_url: str, prefix: str) -> None:
    async def run() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        ours = RedisMovingWindow(client, f"{prefix}-ours")
        theirs = MovingWindowRateLimiter(RedisStorage(f"async+{redis_url}", implementation="redispy", key_prefix=f"{prefix}-theirs"))
        per_minute, per_second = RateLimitItemPerMinute(5), RateLimitItemPerSecond(3)
        outcomes = []
        gap = 0.0  # the longest time between our hit and limits' (the reset times differ by at most that)
        for step in range(13):  # 7 hits on 5 per minute, 4 on 3 per second, a second's pause, 2 more
            item = per_second if step >= 7 else per_minute
            who = ("api", f"client-{int(step >= 7)}")
            before = time.time()
            allowed, stats, along = await ours.hit(item, *who)
            expected = await theirs.hit(item, *who)
            gap = max(gap, time.time() - before)
            reference = await theirs.get_window_stats(item, *who)
            assert (allowed, stats.remaining) == (expected, reference.remaining), step
            assert abs(stats.reset_time - reference.reset_time) <= gap + 0.05, step
            assert along is None
            outcomes.append(allowed)
            if step == 10:
                await asyncio.sleep(1.1)  # the per-second window empties
        assert outcomes == [True] * 5 + [False, False] + [True] * 3 + [False] + [True, True]
        sync = redis.Redis.from_url(redis_url)
        ours_keys = sorted(k.decode().split(":", 1)[1] for k in sync.scan_iter(f"{prefix}-ours:*"))
        theirs_keys = sorted(k.decode().split(":", 1)[1] for k in sync.scan_iter(f"{prefix}-theirs:*"))
        assert ours_keys == theirs_keys and len(ours_keys) == 2  # limits' key layout
        sync.close()
        await client.aclose()

    asyncio.run(run())


def test_a_hit_reads_the_security_epoch_along(redis_url: str, prefix: str) -> None:
    async def run() -> None:
        limiter = RateLimiter(per_minute=2, auth_per_minute=1, redis_url=redis_url, key_prefix=prefix, epoch_key=f"{prefix}:epoch")
        await limiter.open()
        first = await limiter.hit_api("198.51.100.9")
        redis.Redis.from_url(redis_url).set(f"{prefix}:epoch", 41)
        second = await limiter.hit_api("198.51.100.9")
        third = await limiter.hit_api("198.51.100.9")
        auth = await limiter.hit_auth("198.51.100.9")
        await limiter.close()
        assert (first.allowed, first.remaining, first.epoch) == (True, 1, 0)  # no key yet: epoch 0
        assert (second.allowed, second.remaining, second.epoch) == (True, 0, 41)
        assert (third.allowed, third.epoch) == (False, 41) and 1 <= third.reset_after_s <= 60
        assert auth.allowed and auth.epoch is None  # only API hits read it

    asyncio.run(run())


def test_redis_down_counts_in_memory_without_an_epoch(prefix: str) -> None:
    async def run() -> None:
        limiter = RateLimiter(per_minute=2, auth_per_minute=1, redis_url="redis://127.0.0.1:1/0", key_prefix=prefix, epoch_key="e")
        await limiter.open()
        started = time.monotonic()
        decisions = [await limiter.hit_api("198.51.100.9") for _ in range(3)]
        await limiter.close()
        assert [d.allowed for d in decisions] == [True, True, False] and all(d.epoch is None for d in decisions)
        assert limiter.backend_errors._value.get() == 1 and time.monotonic() - started < 5  # one failure, then memory

    asyncio.run(run())


def test_concurrent_hits_go_out_together_and_count_exactly(redis_url: str, prefix: str) -> None:
    """50 hits in one turn of the event loop, 20 allowed per minute: one pipeline, exactly 20
    allowed, and each hit's stats are those of its place in the order Redis ran them."""

    async def run() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        window = RedisMovingWindow(client, prefix)
        pipelines = []
        original = client.pipeline
        client.pipeline = lambda **kw: pipelines.append(kw) or original(**kw)  # type: ignore[method-assign]
        item = RateLimitItemPerMinute(20)
        results = await asyncio.gather(*[window.hit(item, "api", "crowd", read=f"{prefix}:epoch") for _ in range(50)])
        assert len(pipelines) == 1 and pipelines[0] == {"transaction": False}
        assert sum(allowed for allowed, _, _ in results) == 20
        assert sorted(stats.remaining for _, stats, _ in results[:20]) == list(range(20))
        assert all(stats.remaining == 0 for _, stats, _ in results[20:])
        assert all(along == b"0" for _, _, along in results)  # the epoch key read along (absent: '0')
        # A later lone hit goes on its own (no pipeline), and is refused: the window is full.
        allowed, stats, _ = await window.hit(item, "api", "crowd")
        assert (allowed, stats.remaining, len(pipelines)) == (False, 0, 1)
        await client.aclose()

    asyncio.run(run())


def test_a_flushed_script_is_loaded_again_inside_a_pipeline(redis_url: str, prefix: str) -> None:
    async def run() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        window = RedisMovingWindow(client, prefix)
        item = RateLimitItemPerMinute(100)
        await window.hit(item, "api", "warm")
        await client.script_flush()  # what a Redis restart does to loaded scripts
        results = await asyncio.gather(*[window.hit(item, "api", "after-flush") for _ in range(5)])
        assert [allowed for allowed, _, _ in results] == [True] * 5
        assert sorted(stats.remaining for _, stats, _ in results) == [95, 96, 97, 98, 99]
        await client.aclose()

    asyncio.run(run())


def test_a_redis_failure_reaches_every_waiting_hit_and_the_limiter_falls_back(prefix: str) -> None:
    async def run() -> None:
        limiter = RateLimiter(per_minute=10, auth_per_minute=5, redis_url="redis://127.0.0.1:1/0", key_prefix=prefix)
        await limiter.open()
        decisions = await asyncio.gather(*[limiter.hit_api("10.0.0.9") for _ in range(12)])
        assert [d.allowed for d in decisions] == [True] * 10 + [False] * 2  # counted in memory instead
        assert limiter.backend == "memory"
        await limiter.close()

    asyncio.run(run())
