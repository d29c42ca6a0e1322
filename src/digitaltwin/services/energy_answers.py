"""Served energy answers by a key that names everything they are computed from.

A dashboard asks for the same energy view again and again (a year by month, a month by day);
between two writes of the asset's readings or meter set-up the answer cannot change. Each API
process keeps the JSON bodies it served, keyed by a BLAKE2b digest
(:func:`~digitaltwin.services.forecast_cache.forecast_key`) of

* the request: asset, quantity, range, bucket;
* the settings the computation reads: the power hold limit, whether rollups are read;
* the stored inputs (:func:`~digitaltwin.storage.energy_fingerprint.energy_fingerprint`, one
  statement): asset, site zone, series, meter replacements, and per series the rollup version and
  change marks that every write of readings leaves in its own transaction;
* ``now``, when the answer depends on it: a range reaching past ``now`` holds the last power
  sample until ``now`` at most, so until ``now`` is past every series' last reading plus the
  hold limit (and the longest interval), ``now`` is part of the key and the answer is not reused.

The fingerprint is read before the answer is computed, so an answer is never stored under the
key of data older than it was computed from: a write in between only makes the next request
miss. Because the key is made from the database's content, it is right in every process (API
workers, an ingest worker writing readings, the CLI) without any invalidation message. Entries
also expire after ``ENERGY_CACHE_SECONDS``, which bounds what a change made outside the product
(a restore, a hand-written SQL statement, a retention job) could leave stale.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from cachetools import TTLCache
from digitaltwin.analytics.buckets import Bucket
from digitaltwin.storage.tables import to_epoch_us
from digitaltwin.services.energy import ENERGY_QUANTITIES
from digitaltwin.services.energy_rollups import refresh
from digitaltwin.services.forecast_cache import forecast_key
from digitaltwin.storage.energy_fingerprint import INTERVAL, LAST_TS, MARKS, QUANTITY, VERSION, energy_fingerprint
from digitaltwin.storage.repository import Repository

def _refresh_marked(repo: Repository, asset_id: str, rows: list[tuple[object, ...]], max_hold: timedelta) -> bool:
    """Bring the rollups of the asset's energy series up to date where a report would change them
    first: series with pending change marks, and series with readings but no rollups yet.

    Returns:
        Whether any rollups were refreshed (a series that takes the raw path, see
        :mod:`digitaltwin.services.energy_rollups`, is not, and keeps its marks).
    """
    stale = [
        str(r[QUANTITY]) for r in rows
        if r[QUANTITY] in ENERGY_QUANTITIES and (r[MARKS] if r[VERSION] is not None else r[LAST_TS] is not None)
    ]
    if not stale:
        return False
    asset = repo.get_asset(asset_id)
    refreshed = False
    for quantity in stale:
        info = repo.find_series(asset_id, quantity)
        if info is not None and refresh(repo, asset, info, max_hold=max_hold) is not None:
            refreshed = True
    return refreshed


def settled_inputs(repo: Repository, asset_id: str, *, max_hold: timedelta, rollups: bool) -> list[tuple[object, ...]]:
    """The stored inputs of the asset's energy reports
    (:func:`~digitaltwin.storage.energy_fingerprint.energy_fingerprint`) as a report would read them.

    With rollups, pending change marks are folded into the rollups first, as the report would do
    before reading (a new rollup version), so two calls with no write in between give equal rows.

    Returns:
        The fingerprint rows; empty for an unknown asset.
    """
    rows = energy_fingerprint(repo.reads, asset_id)
    if rows and rollups and _refresh_marked(repo, asset_id, rows, max_hold):
        rows = energy_fingerprint(repo.reads, asset_id)
    return rows


#: Longest wait for an answer another request of the process is computing; then it is computed again.
_WAIT_S = 60.0


class _Running:
    """An answer being computed: its body once done (None if the computation failed)."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.body: bytes | None = None


class EnergyAnswers:
    """A thread-safe, size-bounded store of energy answer bodies (bytes) per process.

    Args:
        max_bytes: the most body bytes kept (>= 1); least recently used bodies go first, and a
            body larger than a quarter of it is not kept.
        ttl_s: seconds a body is served at most.
        on_lookup: called with True for a hit and False for a miss (e.g. a metric); a request
            that waits for the same answer another request is computing counts as a hit.

    Raises:
        ValueError: ``max_bytes`` < 1 or ``ttl_s`` <= 0.
    """

    def __init__(self, max_bytes: int, ttl_s: float, *, on_lookup: Callable[[bool], None] | None = None) -> None:
        if max_bytes < 1 or ttl_s <= 0:
            raise ValueError("max_bytes must be >= 1 and ttl_s > 0")
        self._bodies: TTLCache[bytes, bytes] = TTLCache(maxsize=max_bytes, ttl=ttl_s, getsizeof=len)
        self._largest = max_bytes // 4
        self._lock = threading.Lock()
        self._running: dict[bytes, _Running] = {}
        self._on_lookup = on_lookup

    def body(
        self,
        repo: Repository,
        asset_id: str,
        *,
        start: datetime,
        end: datetime,
        bucket: Bucket,
        quantity: str | None,
        max_hold: timedelta,
        rollups: bool,
        now: datetime,
        compute: Callable[[], bytes],
    ) -> bytes:
        """The JSON body of this energy request: a kept one if its inputs are unchanged, else ``compute()``'s.

        Args:
            repo: the storage the report reads.
            start, end: the requested UTC range; bucket, quantity: as requested.
            max_hold: the power hold limit the report uses; rollups: whether it reads rollups.
            now: the ``now`` the report is computed with.
            compute: computes the body (its errors propagate and nothing is kept). Concurrent
                requests for the same key in this process run it once; the others wait for its
                body (at most a minute, then compute themselves, as they do when it failed).
        """
        rows = settled_inputs(repo, asset_id, max_hold=max_hold, rollups=rollups)
        if not rows:
            return compute()  # unknown asset: compute() raises the error that names it
        key = self.key(rows, asset_id, start=start, end=end, bucket=bucket, quantity=quantity, max_hold=max_hold,
                       rollups=rollups, now=now)
        with self._lock:
            kept = self._bodies.get(key)
            running = self._running.get(key) if kept is None else None
            owner = kept is None and running is None
            if owner:
                running = self._running[key] = _Running()
        if self._on_lookup is not None:
            self._on_lookup(not owner)
        if kept is not None:
            return kept
        assert running is not None
        if not owner:
            # The same answer is being computed by another request of this process: wait for it
            # instead of computing it again (a dashboard's users all ask after the same write).
            running.done.wait(_WAIT_S)
            return running.body if running.body is not None else compute()
        try:
            body = running.body = compute()
            if len(body) <= self._largest:
                with self._lock:
                    self._bodies[key] = body
            return body
        finally:
            with self._lock:
                del self._running[key]
            running.done.set()

    def key(
        self, rows: list[tuple[object, ...]], asset_id: str, *, start: datetime, end: datetime, bucket: Bucket,
        quantity: str | None, max_hold: timedelta, rollups: bool, now: datetime,
    ) -> bytes:
        """The key of an answer computed from the stored inputs ``rows`` (:func:`settled_inputs`'s)
        for this request (the arguments of :meth:`body`)."""
        return forecast_key(
            ("energy", asset_id, quantity, to_epoch_us(start), to_epoch_us(end), bucket.value,
             max_hold.total_seconds(), rollups, self._now_part(rows, end, now, max_hold), *rows)
        )

    def kept(self, key: bytes) -> bytes | None:
        """The body kept under ``key``, or None; counts a hit when there is one (a miss is counted
        by the :meth:`body` call that computes it). Never blocks on a computation: for callers on
        the event loop.

        A key made from rows read without settling them first (change marks still pending) is
        sound too: a body is only ever kept under the rows read before it was computed, and every
        write changes them, so such a key finds a body only if the data is as it was computed from.
        """
        with self._lock:
            body = self._bodies.get(key)
        if body is not None and self._on_lookup is not None:
            self._on_lookup(True)
        return body

    @staticmethod
    def _now_part(rows: list[tuple[object, ...]], end: datetime, now: datetime, max_hold: timedelta) -> int | None:
        """``now`` in epoch microseconds if the answer may still depend on it, else None.

        It may while ``now`` is before the range's end and before some series' last reading plus
        the hold limit and the series' interval (a reading stamped at the start of its interval).
        """
        if now >= end:
            return None
        longest = max((int(r[INTERVAL]) for r in rows if r[INTERVAL]), default=0)
        settled = [r[LAST_TS] for r in rows if r[LAST_TS] is not None]
        if all(now >= last + max_hold + timedelta(seconds=longest) for last in settled):  # type: ignore[operator]
            return None
        return to_epoch_us(now)

    def clear(self) -> None:
        """Forget every kept body."""
        with self._lock:
            self._bodies.clear()
