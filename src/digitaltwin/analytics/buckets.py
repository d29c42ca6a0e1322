"""Time buckets on the site's local calendar.

* ``15min`` and ``hour`` buckets are fixed lengths aligned to local wall-clock
  boundaries, stepped in UTC: a spring-forward day has 23 hourly buckets (no
  02:00) and a fall-back day 25 (02:00 twice), as field cases
  ``time/dst-spring-forward-23h-day`` and ``time/dst-fall-back-repeated-hour`` require.
* ``day``, ``week`` (starting Monday, ISO 8601) and ``month`` start at local
  midnight, so their length in hours follows DST (23, 24 or 25 h per day)
  (field case ``time/bucket-alignment-local-day-monday-week``).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from digitaltwin.domain.errors import ValidationError


class Bucket(str, enum.Enum):
    """Aggregation bucket sizes accepted by the energy queries."""

    QUARTER_HOUR = "15min"
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


_FIXED = {Bucket.QUARTER_HOUR: timedelta(minutes=15), Bucket.HOUR: timedelta(hours=1)}
#: Safety cap on buckets per query (a year of 15-min buckets is 35,136).
MAX_BUCKETS = 200_000


def _local_midnight(day: datetime, tz: ZoneInfo) -> datetime:
    """UTC instant of local midnight starting the calendar date of ``day`` (a local wall-clock datetime)."""
    naive = datetime(day.year, day.month, day.day)
    # Midnight can be skipped by DST in a few zones: take the first instant at or after it.
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) < naive:
        first = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    return first


def floor_local(ts: datetime, bucket: Bucket, tz: ZoneInfo) -> datetime:
    """UTC start of the bucket containing the UTC instant ``ts``."""
    local = ts.astimezone(tz)
    if bucket in _FIXED:
        # Floor the wall-clock time with the offset in force at ts, then step back to UTC.
        offset = local.utcoffset() or timedelta(0)
        wall = ts.astimezone(UTC).replace(tzinfo=None) + offset
        minutes = (wall.minute // 15) * 15 if bucket is Bucket.QUARTER_HOUR else 0
        return (wall.replace(minute=minutes, second=0, microsecond=0) - offset).replace(tzinfo=UTC)
    if bucket is Bucket.DAY:
        return _local_midnight(local, tz)
    if bucket is Bucket.WEEK:
        return _local_midnight(local - timedelta(days=local.weekday()), tz)
    return _local_midnight(local.replace(day=1), tz)


def _next_start(start: datetime, bucket: Bucket, tz: ZoneInfo) -> datetime:
    if bucket in _FIXED:
        return start + _FIXED[bucket]
    local = start.astimezone(tz)
    if bucket is Bucket.DAY:
        nxt = local.replace(tzinfo=None) + timedelta(days=1)
    elif bucket is Bucket.WEEK:
        nxt = local.replace(tzinfo=None) + timedelta(days=7)
    else:
        year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
        nxt = datetime(year, month, 1)
    return _local_midnight(nxt, tz)


def bucket_edges(start: datetime, end: datetime, bucket: Bucket, tz: ZoneInfo) -> list[datetime]:
    """UTC edges of the buckets covering ``[start, end)``.

    The first edge is the start of the bucket containing ``start``; the last
    edge is at or after ``end``. ``n`` buckets have ``n + 1`` edges.

    Raises:
        ValidationError: naming ``end`` when ``end <= start`` or the range holds
            more than :data:`MAX_BUCKETS` buckets.
    """
    if end <= start:
        raise ValidationError("end must be after start", field="end")
    if bucket in _FIXED and (end - start) / _FIXED[bucket] > MAX_BUCKETS:
        raise ValidationError(f"range holds more than {MAX_BUCKETS} {bucket.value} buckets", field="end")
    edges = [floor_local(start, bucket, tz)]
    while edges[-1] < end:
        edges.append(_next_start(edges[-1], bucket, tz))
    return edges
