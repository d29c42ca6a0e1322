"""One Redis pub/sub connection per process, fanned out to every live stream of that process.

Each SSE stream used to open its own Redis connection (90 streams of one viewer took Redis from
23 to 115 clients). :class:`RedisFanout` keeps one ``redis.asyncio`` pub/sub connection per
event loop, subscribes a channel while at least one local stream wants it, and hands each
message to the queues of those streams (a slow stream loses its oldest batch, as with the
in-process live state). If the connection fails, every stream of it ends with the error (the
browser's EventSource reconnects) and the next subscription opens a new connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

log = logging.getLogger(__name__)

#: Batches of events buffered per stream before the oldest is dropped.
STREAM_BUFFER = 256
#: Seconds to wait for Redis to confirm a SUBSCRIBE.
SUBSCRIBE_TIMEOUT_S = 5.0

_Queue = asyncio.Queue[Any]


class _Closed:
    """Put into a stream's queue when the shared connection failed; carries the error."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class RedisFanout:
    """The shared pub/sub connection of one event loop (create it inside that loop).

    Args:
        url: ``REDIS_URL``.
        password: ``REDIS_PASSWORD`` when the URL has none.
    """

    def __init__(self, url: str, *, password: str | None = None) -> None:
        import redis.asyncio

        self._client = redis.asyncio.Redis.from_url(url, password=password, socket_connect_timeout=2)
        self._pubsub = self._client.pubsub()
        self._queues: dict[str, set[_Queue]] = {}
        self._confirmed: dict[str, asyncio.Event] = {}
        self._lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self.failed: BaseException | None = None

    @property
    def streams(self) -> int:
        """Streams currently attached."""
        return sum(len(q) for q in self._queues.values())

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[Any]]:
        """``async with fanout.subscribe(channel) as messages``: decoded JSON messages published on
        ``channel`` after the ``async with`` was entered (Redis confirmed the subscription).

        Raises:
            Exception: the Redis error when subscribing fails, or, from the iterator, when the
                shared connection failed later.
        """
        queue: _Queue = asyncio.Queue(STREAM_BUFFER)
        async with self._lock:
            if self.failed is not None:
                raise self.failed
            first = channel not in self._queues
            self._queues.setdefault(channel, set()).add(queue)
            try:
                if first:
                    confirmed = self._confirmed[channel] = asyncio.Event()
                    await self._pubsub.subscribe(channel)
                    self._start_reader()
                    await asyncio.wait_for(confirmed.wait(), SUBSCRIBE_TIMEOUT_S)
                else:
                    await asyncio.wait_for(self._confirmed[channel].wait(), SUBSCRIBE_TIMEOUT_S)
            except BaseException:
                await self._detach(channel, queue)
                raise

        async def messages() -> AsyncIterator[Any]:
            while True:
                item = await queue.get()
                if isinstance(item, _Closed):
                    raise item.error
                yield item

        try:
            yield messages()
        finally:
            async with self._lock:
                await self._detach(channel, queue)

    async def _detach(self, channel: str, queue: _Queue) -> None:
        queues = self._queues.get(channel)
        if queues is None:
            return
        queues.discard(queue)
        if not queues:
            del self._queues[channel]
            self._confirmed.pop(channel, None)
            if self.failed is None:
                try:
                    await self._pubsub.unsubscribe(channel)
                except Exception:  # noqa: BLE001 - the reader reports a broken connection
                    log.debug("unsubscribe of %s failed", channel, exc_info=True)

    def _start_reader(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read(), name="live-fanout")

    async def _read(self) -> None:
        try:
            while self._queues:
                message = await self._pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                channel = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
                if message["type"] == "subscribe":
                    confirmed = self._confirmed.get(channel)
                    if confirmed is not None:
                        confirmed.set()
                elif message["type"] == "message":
                    data = json.loads(message["data"])
                    for queue in list(self._queues.get(channel, ())):
                        if queue.full():
                            queue.get_nowait()  # a slow client loses the oldest batch rather than stalling the others
                        queue.put_nowait(data)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. redis.ConnectionError: end every stream with it
            log.warning("live stream connection to Redis failed: %s: %s", type(exc).__name__, str(exc)[:200])
            self.failed = exc
            for queues in self._queues.values():
                for queue in queues:
                    if queue.full():
                        queue.get_nowait()
                    queue.put_nowait(_Closed(exc))
            for event in self._confirmed.values():
                event.set()

    async def aclose(self) -> None:
        """Stop reading and close the connection."""
        if self._reader is not None:
            self._reader.cancel()
        try:
            await self._pubsub.aclose()
            await self._client.aclose()
        except Exception:  # noqa: BLE001
            log.debug("closing the live fan-out failed", exc_info=True)
