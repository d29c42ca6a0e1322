"""Rate limiting with the ``limits`` library: per client address, and failed logins per account.

* ``API_RATE_LIMIT`` requests per minute per client address (see :mod:`.client_address`),
  moving window, on every route except ``/healthz``, ``/readyz`` and ``/metrics``. Over the
  limit: 429 with ``Retry-After``; every limited response carries ``RateLimit-Limit``,
  ``RateLimit-Remaining``, ``RateLimit-Reset`` (seconds) and ``RateLimit-Policy``
  (draft-ietf-httpapi-ratelimit-headers).
* ``AUTH_RATE_LIMIT`` requests per minute per client address on ``/api/v1/auth/token`` and
  ``/api/v1/auth/mfa/*``, on top of the above: each login costs an argon2id check (64 MiB,
  about 0.35 s), so a client gets far fewer of them than of ordinary requests.

Failed logins are throttled per account and address by :mod:`.login_throttle` (in the database).

Counters live in Redis (``REDIS_URL``) so every worker shares them, or in process memory
without Redis. On Redis one script per request (:data:`HIT_SCRIPT`) counts the hit and returns
the window's stats, in the keys and list layout of ``limits``' moving window, and reads the
security epoch along (:mod:`.principal_cache`): one round trip per request instead of the three
that ``limits``' hit, its window stats and the epoch's own ``GET`` took. **When Redis fails the API keeps serving**: the request is counted in this
process's memory instead (the limit then holds per worker rather than globally), the failure
is logged (at most once a minute) and counted in ``rate_limit_backend_errors_total``, and
Redis is retried after :data:`RETRY_REDIS_AFTER_S`. Availability of the API is judged worth
more than exact limits during a Redis outage; the in-memory fallback still stops floods.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerMinute, WindowStats
from prometheus_client import CollectorRegistry, Counter
from redis.exceptions import NoScriptError

log = logging.getLogger(__name__)

#: Seconds Redis is bypassed after a failure before it is tried again.
RETRY_REDIS_AFTER_S = 5.0
#: Seconds a Redis command may take before the fallback is used.
REDIS_TIMEOUT_S = 0.5

@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome of one counted request: allowed or not, the limit, what is left, seconds until a slot frees,
    and the security epoch when it was read along (Redis only)."""

    allowed: bool
    limit: int
    remaining: int
    reset_after_s: int
    epoch: int | None = None

    def headers(self, window_s: int) -> dict[str, str]:
        """``RateLimit-*`` headers, plus ``Retry-After`` when refused."""
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_after_s),
            "RateLimit-Policy": f"{self.limit};w={window_s}",
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, self.reset_after_s))
        return headers


class MemoryMovingWindow:
    """In-process moving-window limiter with the interface of ``limits``' :class:`MovingWindowRateLimiter`.

    The decisions of that limiter on ``limits.aio.storage.MemoryStorage`` (a hit is refused when
    ``amount`` hits already fall within the last ``expiry`` seconds; the window's stats count the
    hits younger than ``expiry``) without its per-hit cost: that storage schedules an expiry task
    on every hit and bisects in a worker thread (``asyncio.to_thread``), a thread hop per API
    request. Here each key keeps a deque of hit times, oldest first, trimmed when the key is
    used; keys idle for longer than their window are dropped every :data:`SWEEP_EVERY` hits.
    Kept despite the project's preference for the library because it was measured: with
    ``limits``' MemoryStorage back in place, ``bench/forecast_latency.py`` gave an uncached p95 of
    8.3-11.9 ms instead of 6.8-7.6 ms (the forecast route's p95 target is 10 ms). The Redis path uses ``limits``.
    Used from the event loop only (no lock: nothing awaits inside an update).

    Args:
        clock: current time in seconds (``time.time``).
    """

    SWEEP_EVERY = 4096

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.events: dict[str, tuple[deque[float], int]] = {}
        self._hits = 0

    def _window(self, key: str, expiry: int, now: float) -> deque[float]:
        """The hits of ``key`` at or after ``now - expiry`` (older ones are dropped)."""
        events = self.events[key][0] if key in self.events else deque()
        while events and events[0] < now - expiry:
            events.popleft()
        self.events[key] = (events, expiry)
        return events

    async def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        """Record ``cost`` hits unless that puts more than ``item.amount`` in the window."""
        if cost > item.amount:
            return False
        now = self.clock()
        self._hits += 1
        if self._hits % self.SWEEP_EVERY == 0:
            self._sweep(now)
        events = self._window(item.key_for(*identifiers), item.get_expiry(), now)
        if len(events) + cost > item.amount:
            return False
        events.extend([now] * cost)
        return True

    def _inside(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> tuple[float, list[float] | deque[float]]:
        """Now, and the hits strictly younger than the window (what ``limits`` counts in its stats)."""
        now = self.clock()
        expiry = item.get_expiry()
        events = self._window(item.key_for(*identifiers), expiry, now)
        if events and events[0] <= now - expiry:
            return now, [t for t in events if t > now - expiry]
        return now, events

    async def test(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        """Whether ``cost`` more hits would be allowed now (nothing is recorded)."""
        _, inside = self._inside(item, identifiers)
        return len(inside) <= item.amount - cost

    async def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        """(reset time: the oldest hit in the window + its length, or now + length when empty; hits left)."""
        now, inside = self._inside(item, identifiers)
        start = inside[0] if inside else now
        return WindowStats(start + item.get_expiry(), item.amount - len(inside))

    def _sweep(self, now: float) -> None:
        for key in [k for k, (events, expiry) in self.events.items() if not events or events[-1] < now - expiry]:
            del self.events[key]


#: One API hit on Redis, with the decisions and window stats of ``limits``' moving window
#: (``acquire_moving_window.lua``, ``moving_window.lua``): the list holds hit times, newest first;
#: a hit is refused when ``limit`` hits are at or after ``now - expiry``; the stats count those hits
#: and give the oldest. Unlike ``limits``, hits older than the window are popped from the tail
#: first (each once), so the count is ``LLEN`` and the oldest ``LINDEX -1``: O(1) per request, where
#: ``limits`` binary-searches with ``LINDEX`` (O(list) each) and, under a high limit, keeps every
#: hit of a busy client for as long as its traffic goes on. Then the value of ``KEYS[2]``, if given.
#: KEYS: the client's window, [the key read along]. ARGV: now (epoch seconds), limit, expiry (s).
#: Returns {allowed 0/1, hits in the window, the oldest of them ('' when none), KEYS[2]'s value or '0'}.
HIT_SCRIPT = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local expiry = tonumber(ARGV[3])
local target = now - expiry
while true do
    local last = redis.call('lindex', key, -1)
    if last and tonumber(last) < target then
        redis.call('rpop', key)
    else
        break
    end
end
local count = redis.call('llen', key)
local allowed = 0
if count < limit then
    redis.call('lpush', key, ARGV[1])
    redis.call('expire', key, expiry)
    count = count + 1
    allowed = 1
end
local oldest = redis.call('lindex', key, -1) or ''
local along = '0'
if #KEYS > 1 then
    along = redis.call('get', KEYS[2]) or '0'
end
return {allowed, count, oldest, along}
"""


class RedisMovingWindow:
    """``limits``' moving window on Redis in one script call per hit (:data:`HIT_SCRIPT`).

    The keys are ``limits``' (``<prefix>:LIMITER/<identifiers>/<amount>/<multiples>/<granularity>``)
    and so is the list in them (hit times, newest first), and the decisions and stats are those of
    its ``MovingWindowRateLimiter`` on ``RedisStorage`` (tests/integration/test_ratelimit_redis.py).

    Hits made in the same turn of the event loop go to Redis together, as one pipeline of script
    calls (what ioredis calls auto-pipelining): every request still counts in Redis, one by one
    and in order (Redis runs each script atomically), but 16 concurrent requests cost one
    connection checkout, one write and one read instead of 16 of each. Measured with redis-py and
    hiredis: about 125 us of CPU per hit one at a time, about 26 us each in a pipeline of 8. A lone
    hit waits for nothing: its turn of the loop ends at once.

    Args:
        client: an asyncio Redis client.
        prefix: prefix of the keys.
    """

    def __init__(self, client: object, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._script = client.register_script(HIT_SCRIPT)  # type: ignore[attr-defined]
        self._queued: list[tuple[list[str], list[object], asyncio.Future[list[object]]]] = []
        self._sending: set[asyncio.Task[None]] = set()  # referenced until done (the loop keeps weak references)

    async def hit(self, item: RateLimitItem, *identifiers: str, read: str | None = None) -> tuple[bool, WindowStats, bytes | None]:
        """Count one hit unless the window is full: (allowed, window stats as ``limits`` gives them,
        the value of the key ``read`` or None). Raises what Redis or the connection raised."""
        now = time.time()
        keys = [f"{self.prefix}:{item.key_for(*identifiers)}"] + ([read] if read else [])
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[object]] = loop.create_future()
        self._queued.append((keys, [repr(now), item.amount, item.get_expiry()], future))
        if len(self._queued) == 1:
            loop.call_soon(self._send_queued)
        allowed, count, oldest, along = await future
        start = float(oldest) if oldest else now
        return bool(allowed), WindowStats(start + item.get_expiry(), item.amount - int(count)), along if read else None  # type: ignore[return-value, arg-type]

    def _send_queued(self) -> None:
        batch, self._queued = self._queued, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[list[str], list[object], asyncio.Future[list[object]]]]) -> None:
        """Run the batch's script calls (one pipeline for several) and hand each its reply or error."""
        try:
            if len(batch) == 1:
                keys, args, _ = batch[0]
                replies: list[object] = [await self._script(keys=keys, args=args)]
            else:
                pipe = self.client.pipeline(transaction=False)  # type: ignore[attr-defined]
                for keys, args, _ in batch:
                    pipe.evalsha(self._script.sha, len(keys), *keys, *args)
                replies = await pipe.execute(raise_on_error=False)
                for i, reply in enumerate(replies):
                    if isinstance(reply, NoScriptError):  # Redis restarted or flushed its scripts: load it again
                        keys, args, _ = batch[i]
                        replies[i] = await self._script(keys=keys, args=args)
        except BaseException as exc:  # noqa: BLE001 - each waiting hit gets the failure (the limiter falls back)
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else ConnectionError("rate limit call cancelled"))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if future.done():  # the request was cancelled meanwhile
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)  # type: ignore[arg-type]


class RateLimiter:
    """Moving-window limiter on Redis with an in-memory fallback.

    Args:
        per_minute: API requests per client per minute.
        auth_per_minute: requests per client per minute to the login and MFA routes.
        redis_url: ``redis://`` or ``rediss://`` URL, or None for memory only.
        redis_password: password when the URL has none.
        key_prefix: prefix of every Redis key (tests and deployments sharing a Redis separate by it).
        registry: where the limiter's Prometheus counters go.
        epoch_key: a Redis key read in the same round trip as each API hit (the security epoch,
            :func:`digitaltwin.security.principal_cache.epoch_key`), returned in the decision.
    """

    def __init__(
        self,
        *,
        per_minute: int,
        auth_per_minute: int,
        redis_url: str | None,
        redis_password: str | None = None,
        key_prefix: str = "digitaltwin",
        registry: CollectorRegistry | None = None,
        epoch_key: str | None = None,
    ) -> None:
        self.api_item: RateLimitItem = RateLimitItemPerMinute(per_minute)
        self.auth_item: RateLimitItem = RateLimitItemPerMinute(auth_per_minute)
        self.redis_url = redis_url
        self.redis_password = redis_password
        self.key_prefix = f"{key_prefix}:ratelimit"
        self.epoch_key = epoch_key
        self._redis: RedisMovingWindow | None = None
        self._memory: MemoryMovingWindow | None = None
        self._bypass_until = 0.0
        self._last_log = 0.0
        registry = registry or CollectorRegistry()
        self.rejected = Counter("rate_limited_total", "Requests refused by a rate limit", ["limit"], registry=registry)
        self.backend_errors = Counter(
            "rate_limit_backend_errors_total", "Rate limiter calls that fell back to process memory because Redis failed",
            registry=registry,
        )

    async def open(self) -> None:
        """Create the storages inside the running event loop (call from the app's lifespan)."""
        self._memory = MemoryMovingWindow()
        if self.redis_url:
            import redis.asyncio

            client = redis.asyncio.Redis.from_url(
                self.redis_url, password=self.redis_password, socket_timeout=REDIS_TIMEOUT_S,
                socket_connect_timeout=REDIS_TIMEOUT_S,
            )
            self._redis = RedisMovingWindow(client, self.key_prefix)

    async def close(self) -> None:
        """Drop the storages."""
        if self._redis is not None:
            await self._redis.client.aclose()  # type: ignore[attr-defined]
        self._redis = self._memory = None

    @property
    def backend(self) -> str:
        """``redis`` or ``memory``: where counters currently go."""
        return "redis" if self._redis is not None and time.monotonic() >= self._bypass_until else "memory"

    async def _decide(self, item: RateLimitItem, *identifiers: str, read_epoch: bool = False) -> Decision:
        """Count one hit of ``identifiers`` against ``item``: on Redis, or in memory while Redis fails."""
        if self._memory is None:
            await self.open()
        assert self._memory is not None
        if self._redis is not None and time.monotonic() >= self._bypass_until:
            try:
                allowed, stats, along = await self._redis.hit(item, *identifiers, read=self.epoch_key if read_epoch else None)
                return self._decision(item, allowed, stats, int(along) if along is not None else None)
            except Exception as exc:  # noqa: BLE001 - any Redis failure: keep serving
                self.backend_errors.inc()
                self._bypass_until = time.monotonic() + RETRY_REDIS_AFTER_S
                if time.monotonic() - self._last_log >= 60:
                    self._last_log = time.monotonic()
                    log.warning("rate limiter: Redis unavailable (%s: %s); counting in process memory", type(exc).__name__, exc)
        allowed = await self._memory.hit(item, *identifiers)
        return self._decision(item, allowed, await self._memory.get_window_stats(item, *identifiers), None)

    @staticmethod
    def _decision(item: RateLimitItem, allowed: bool, stats: WindowStats, epoch: int | None) -> Decision:
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        return Decision(allowed, item.amount, max(0, stats.remaining), reset, epoch)

    async def hit_api(self, client: str) -> Decision:
        """Count one request of ``client`` and say whether it is allowed."""
        decision = await self._decide(self.api_item, "api", client, read_epoch=True)
        if not decision.allowed:
            self.rejected.labels("api").inc()
        return decision

    async def hit_auth(self, client: str) -> Decision:
        """Count one login or MFA request of ``client`` and say whether it is allowed."""
        decision = await self._decide(self.auth_item, "auth", client)
        if not decision.allowed:
            self.rejected.labels("auth").inc()
        return decision

    @property
    def api_window_s(self) -> int:
        return int(self.api_item.get_expiry())
