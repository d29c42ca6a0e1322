"""The live twin state: the latest reading of each asset and quantity, by timestamp, and a feed of new readings.

"Latest" is by the reading's timestamp, never by arrival: a late or out-of-order reading is
stored (and streamed) but does not replace a newer one (field case ``mqtt/out-of-order-arrival``).
On equal timestamps the first value stays, as in storage (``ON CONFLICT DO NOTHING``), so the
state and the stored series never disagree (field case ``mqtt/qos1-duplicate-delivery``).

Two implementations behind one interface (:class:`LiveState`):

* :class:`RedisLiveState` (``REDIS_URL`` set): one hash per asset
  (``{prefix}:state:{asset_id}``, field = quantity or ``status``, value ``"<epoch us>|<json>"``)
  updated by a Lua script that compares timestamps atomically, so several ingest replicas
  can write; new readings are published on ``{prefix}:stream:{asset_id}`` for the SSE stream
  of any API process, which reads them over one pub/sub connection per process
  (:mod:`digitaltwin.services.live_fanout`) whatever the number of streams.
* :class:`MemoryLiveState` (no Redis, the embedded setup): the same in process; the stream
  then only sees what this process ingests.

Writers call :meth:`LiveState.record` from any thread after the readings were committed: the
MQTT writer once per committed batch, ``POST /api/v1/readings`` once per request. ``GET
.../state`` takes its readings from storage and drops cached entries that storage no longer
holds (:meth:`LiveState.forget`; see ``api/routers/live.py``), so a delete followed by a
corrected resend is not hidden by the cache. One call is
one Redis pipeline (one script call and one publish per asset of the batch); events are
encoded with orjson.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Container, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from digitaltwin.domain.readings import Reading
from digitaltwin.domain.units import QUANTITIES
from digitaltwin.services.live_fanout import RedisFanout
from digitaltwin.storage.tables import from_epoch_us, to_epoch_us

log = logging.getLogger(__name__)

#: Event batches buffered per stream subscriber; a slower client loses the oldest.
SUBSCRIBER_BUFFER = 1000


@dataclass(frozen=True, slots=True)
class LiveReading:
    """Latest value of one quantity, in its canonical unit, at ``ts`` (UTC)."""

    quantity: str
    unit: str
    ts: datetime
    value: float


@dataclass(frozen=True, slots=True)
class LiveStatus:
    """Latest machine state (``RUN``/``IDLE``/``STOP``) reported at ``ts`` (UTC)."""

    status: str
    ts: datetime


@dataclass(frozen=True, slots=True)
class TwinState:
    """What the twin knows now: one :class:`LiveReading` per quantity (sorted by quantity) and the status."""

    asset_id: str
    readings: list[LiveReading]
    status: LiveStatus | None


def utc_text(ts: datetime) -> str:
    """``ts`` as RFC 3339 in UTC with ``Z``, as the API's JSON writes datetimes (pydantic):
    ``2025-05-01T10:00:00Z``, ``2025-05-01T10:00:00.250000Z``."""
    return ts.astimezone(UTC).isoformat().removesuffix("+00:00") + "Z"


def reading_event(reading: Reading) -> dict[str, object]:
    """A stream event of a stored reading: ``{"asset_id", "quantity", "unit", "ts", "value"}`` (ts :func:`utc_text`)."""
    return {
        "asset_id": reading.asset_id,
        "quantity": reading.quantity,
        "unit": QUANTITIES[reading.quantity].canonical_unit,
        "ts": utc_text(reading.ts),
        "value": reading.value,
    }


def status_event(asset_id: str, status: str, ts: datetime) -> dict[str, object]:
    """A stream event of a machine state: ``{"asset_id", "status", "ts"}`` (ts :func:`utc_text`)."""
    return {"asset_id": asset_id, "status": status, "ts": utc_text(ts)}


def _group(
    readings: Sequence[Reading], statuses: Sequence[tuple[str, str, datetime]], only: Container[str] | None = None
) -> dict[str, list[dict[str, object]]]:
    """Stream events by asset (of the assets in ``only``, when given)."""
    events: dict[str, list[dict[str, object]]] = {}
    for r in readings:
        if only is None or r.asset_id in only:
            events.setdefault(r.asset_id, []).append(reading_event(r))
    for asset_id, status, ts in statuses:
        if only is None or asset_id in only:
            events.setdefault(asset_id, []).append(status_event(asset_id, status, ts))
    return events


class LiveState(ABC):
    """Interface of the live state (see the module docstring)."""

    @abstractmethod
    def record(self, readings: Sequence[Reading], statuses: Sequence[tuple[str, str, datetime]] = ()) -> None:
        """Take committed readings and ``(asset_id, status, ts)`` machine states; thread-safe."""

    @abstractmethod
    def state(self, asset_id: str) -> TwinState:
        """The current state of ``asset_id`` (empty when nothing was recorded)."""

    @abstractmethod
    def forget(self, asset_id: str, quantities: Iterable[str]) -> None:
        """Drop the latest readings of ``quantities`` of ``asset_id`` (the status stays), e.g. after
        readings were deleted from storage; the next recorded reading sets them again. Thread-safe.

        Raises:
            Exception: the backend's error when it is unreachable (Redis ``ConnectionError``).
        """

    @abstractmethod
    def publish(self, asset_id: str, events: list[dict[str, object]]) -> None:
        """Send ``events`` (JSON-able dicts, e.g. alarm events with an ``alarm_id``) to the stream
        subscribers of ``asset_id``; thread-safe, no state kept."""

    def ping(self) -> None:
        """Return when the live state can be used; raise the backend's error (Redis ``ConnectionError``) otherwise."""

    @abstractmethod
    def subscribe(self, asset_id: str) -> AbstractAsyncContextManager[AsyncIterator[list[dict[str, object]]]]:
        """``async with live.subscribe(asset_id) as events``: batches of events (:func:`reading_event`,
        :func:`status_event`) of ``asset_id`` recorded after the ``async with`` was entered."""

    def close(self) -> None:
        """Release connections."""


class MemoryLiveState(LiveState):
    """The live state in this process (no Redis)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, dict[str, tuple[datetime, float]]] = {}
        self._status: dict[str, tuple[datetime, str]] = {}
        self._subscribers: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[list[dict[str, object]]]]]] = {}

    def record(self, readings: Sequence[Reading], statuses: Sequence[tuple[str, str, datetime]] = ()) -> None:
        with self._lock:
            for r in readings:
                per_asset = self._latest.setdefault(r.asset_id, {})
                current = per_asset.get(r.quantity)
                if current is None or r.ts > current[0]:
                    per_asset[r.quantity] = (r.ts, r.value)
            for asset_id, status, ts in statuses:
                current_status = self._status.get(asset_id)
                if current_status is None or ts > current_status[0]:
                    self._status[asset_id] = (ts, status)
            targets = {a: list(s) for a, s in self._subscribers.items() if s}
        if not targets:
            return
        for asset_id, events in _group(readings, statuses, targets).items():
            for loop, queue in targets.get(asset_id, ()):
                try:
                    loop.call_soon_threadsafe(_offer, queue, events)
                except RuntimeError:  # the subscriber's loop has closed
                    pass

    def publish(self, asset_id: str, events: list[dict[str, object]]) -> None:
        with self._lock:
            targets = list(self._subscribers.get(asset_id, ()))
        for loop, queue in targets:
            try:
                loop.call_soon_threadsafe(_offer, queue, events)
            except RuntimeError:  # the subscriber's loop has closed
                pass

    def forget(self, asset_id: str, quantities: Iterable[str]) -> None:
        with self._lock:
            per_asset = self._latest.get(asset_id, {})
            for quantity in quantities:
                per_asset.pop(quantity, None)

    def state(self, asset_id: str) -> TwinState:
        with self._lock:
            latest = dict(self._latest.get(asset_id, {}))
            status = self._status.get(asset_id)
        readings = [
            LiveReading(q, QUANTITIES[q].canonical_unit, ts, value) for q, (ts, value) in sorted(latest.items())
        ]
        return TwinState(asset_id, readings, LiveStatus(status[1], status[0]) if status else None)

    @asynccontextmanager
    async def subscribe(self, asset_id: str) -> AsyncIterator[AsyncIterator[list[dict[str, object]]]]:
        queue: asyncio.Queue[list[dict[str, object]]] = asyncio.Queue(SUBSCRIBER_BUFFER)
        entry = (asyncio.get_running_loop(), queue)
        with self._lock:
            self._subscribers.setdefault(asset_id, set()).add(entry)

        async def events() -> AsyncIterator[list[dict[str, object]]]:
            while True:
                yield await queue.get()

        try:
            yield events()
        finally:
            with self._lock:
                self._subscribers.get(asset_id, set()).discard(entry)


def _offer(queue: asyncio.Queue[list[dict[str, object]]], events: list[dict[str, object]]) -> None:
    if queue.full():
        queue.get_nowait()  # a slow client loses the oldest batch rather than stalling ingestion
    queue.put_nowait(events)


# Sets each (field, ts, value) of ARGV when the stored timestamp is older (or absent).
_UPDATE_LATEST = """
for i = 1, #ARGV, 3 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  local newer = true
  if current then
    local sep = string.find(current, '|', 1, true)
    newer = tonumber(string.sub(current, 1, sep - 1)) < tonumber(ARGV[i + 1])
  end
  if newer then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1] .. '|' .. ARGV[i + 2])
  end
end
return 1
"""


class RedisLiveState(LiveState):
    """The live state in Redis, shared by every ingest replica and API process.

    Args:
        url: ``REDIS_URL``.
        password: ``REDIS_PASSWORD`` (when the URL has none).
        prefix: key prefix (``LIVE_STATE_KEY_PREFIX``).
    """

    def __init__(self, url: str, *, password: str | None = None, prefix: str = "digitaltwin:live") -> None:
        import redis

        self._url, self._password, self._prefix = url, password, prefix
        self._client = redis.Redis.from_url(url, password=password, socket_timeout=2, socket_connect_timeout=2)
        self._update = self._client.register_script(_UPDATE_LATEST)
        self._fanouts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RedisFanout] = weakref.WeakKeyDictionary()

    def _key(self, asset_id: str) -> str:
        return f"{self._prefix}:state:{asset_id}"

    def channel(self, asset_id: str) -> str:
        """The pub/sub channel of ``asset_id``'s events."""
        return f"{self._prefix}:stream:{asset_id}"

    def record(self, readings: Sequence[Reading], statuses: Sequence[tuple[str, str, datetime]] = ()) -> None:
        latest: dict[str, dict[str, Reading]] = {}
        for r in readings:  # reduce the batch first: one newest reading per asset and quantity
            per_asset = latest.get(r.asset_id)
            if per_asset is None:
                per_asset = latest[r.asset_id] = {}
            current = per_asset.get(r.quantity)
            if current is None or r.ts > current.ts:
                per_asset[r.quantity] = r
        newest_status: dict[str, tuple[datetime, str]] = {}
        for asset_id, status, ts in statuses:
            if asset_id not in newest_status or ts > newest_status[asset_id][0]:
                newest_status[asset_id] = (ts, status)
        pipe = self._client.pipeline(transaction=False)
        for asset_id in latest.keys() | newest_status.keys():
            args: list[object] = []
            for name, r in latest.get(asset_id, {}).items():
                args.extend((name, to_epoch_us(r.ts), repr(r.value)))  # a finite float's repr is JSON
            if asset_id in newest_status:
                ts, status = newest_status[asset_id]
                args.extend(("status", to_epoch_us(ts), json.dumps(status)))
            self._update(keys=[self._key(asset_id)], args=args, client=pipe)
        for asset_id, events in _group(readings, statuses).items():
            pipe.publish(self.channel(asset_id), orjson.dumps(events))
        pipe.execute()

    def publish(self, asset_id: str, events: list[dict[str, object]]) -> None:
        self._client.publish(self.channel(asset_id), orjson.dumps(events))

    def forget(self, asset_id: str, quantities: Iterable[str]) -> None:
        names = list(quantities)
        if names:
            self._client.hdel(self._key(asset_id), *names)

    def ping(self) -> None:
        self._client.ping()

    def state(self, asset_id: str) -> TwinState:
        raw = self._client.hgetall(self._key(asset_id))
        readings: list[LiveReading] = []
        status: LiveStatus | None = None
        for name_b, value_b in raw.items():
            name = name_b.decode()
            ts_text, _, value_text = value_b.decode().partition("|")
            ts, value = from_epoch_us(int(ts_text)), json.loads(value_text)
            if name == "status":
                status = LiveStatus(str(value), ts)
            elif name in QUANTITIES:
                readings.append(LiveReading(name, QUANTITIES[name].canonical_unit, ts, float(value)))
        return TwinState(asset_id, sorted(readings, key=lambda r: r.quantity), status)

    @asynccontextmanager
    async def subscribe(self, asset_id: str) -> AsyncIterator[AsyncIterator[list[dict[str, object]]]]:
        # One pub/sub connection per event loop (process) for all its streams: RedisFanout.
        loop = asyncio.get_running_loop()
        fanout = self._fanouts.get(loop)
        if fanout is None or fanout.failed is not None:
            fanout = self._fanouts[loop] = RedisFanout(self._url, password=self._password)
        async with fanout.subscribe(self.channel(asset_id)) as messages:
            yield messages

    def close(self) -> None:
        self._client.close()
        for loop, fanout in list(self._fanouts.items()):
            if not loop.is_closed() and loop.is_running():
                asyncio.run_coroutine_threadsafe(fanout.aclose(), loop)


def open_live_state(*, redis_url: str | None, redis_password: str | None = None, prefix: str = "digitaltwin:live") -> LiveState:
    """:class:`RedisLiveState` when ``redis_url`` is set, else :class:`MemoryLiveState`."""
    if redis_url:
        return RedisLiveState(redis_url, password=redis_password, prefix=prefix)
    return MemoryLiveState()
