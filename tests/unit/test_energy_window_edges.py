"""window_edges_us (numpy) gives bucket_edges' edges, clipped to the range, for every bucket size."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from digitaltwin.analytics.buckets import MAX_BUCKETS, Bucket, bucket_edges
from digitaltwin.domain.errors import ValidationError
from digitaltwin.services.energy import window_edges_us
from digitaltwin.storage.tables import to_epoch_us

# DST of one hour and of 30 minutes (Lord Howe), half-hour and 45-minute offsets, no DST
ZONES = ["UTC", "Europe/London", "America/St_Johns", "Australia/Lord_Howe", "Asia/Kathmandu", "Asia/Seoul"]


def expected(start: datetime, end: datetime, bucket: Bucket, tz: ZoneInfo) -> list[int]:
    edges = bucket_edges(start, end, bucket, tz)
    edges[0], edges[-1] = max(edges[0], start), min(edges[-1], end)
    return [to_epoch_us(e) for e in edges]


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("bucket", list(Bucket))
def test_edges_are_bucket_edges_clipped(zone: str, bucket: Bucket) -> None:
    tz = ZoneInfo(zone)
    rng = random.Random(f"{zone}-{bucket.value}")
    # ranges around the 2024 DST changes of both hemispheres, with unaligned ends down to microseconds
    anchors = [datetime(2024, 3, 31, tzinfo=UTC), datetime(2024, 4, 7, tzinfo=UTC), datetime(2024, 10, 6, tzinfo=UTC),
               datetime(2024, 10, 27, tzinfo=UTC), datetime(2024, 11, 3, tzinfo=UTC)]
    span = timedelta(days=90) if bucket in (Bucket.WEEK, Bucket.MONTH) else timedelta(days=3)
    for _ in range(40):
        start = rng.choice(anchors) + timedelta(microseconds=rng.randrange(-86_400_000_000, 86_400_000_000))
        end = start + timedelta(microseconds=rng.randrange(1, int(span.total_seconds() * 1e6)))
        assert window_edges_us(start, end, bucket, tz).tolist() == expected(start, end, bucket, tz), (start, end)
    aligned = datetime(2024, 10, 26, 22, tzinfo=UTC)
    assert window_edges_us(aligned, aligned + timedelta(days=2), bucket, tz).tolist() == expected(
        aligned, aligned + timedelta(days=2), bucket, tz
    )


def test_checks_and_messages_are_bucket_edges() -> None:
    tz = ZoneInfo("Europe/Berlin")
    at = datetime(2024, 1, 1, tzinfo=UTC)
    for bucket in (Bucket.QUARTER_HOUR, Bucket.DAY):
        with pytest.raises(ValidationError) as error:
            window_edges_us(at, at, bucket, tz)
        assert error.value.field == "end"
    too_long = at + timedelta(minutes=15) * (MAX_BUCKETS + 1)
    with pytest.raises(ValidationError) as fixed:
        window_edges_us(at, too_long, Bucket.QUARTER_HOUR, tz)
    with pytest.raises(ValidationError) as original:
        bucket_edges(at, too_long, Bucket.QUARTER_HOUR, tz)
    assert (fixed.value.field, str(fixed.value)) == (original.value.field, str(original.value))
