"""Pure tests of ``digitaltwin.analytics.buckets``: buckets on the site's local calendar (no I/O).

Field cases covered (``/work/shared/cases``):

* ``time/bucket-alignment-local-day-monday-week.md``: weeks start on Monday, days at local midnight.
* ``time/dst-fall-back-repeated-hour.md``: the fall-back day has 25 hourly buckets.
* ``time/dst-spring-forward-23h-day.md``: the spring-forward day has 23 hourly buckets, no 02:00.
* ``time/leap-day-and-leap-second.md`` (a): February 2024 has 29 days, 2024 has 366.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from digitaltwin.analytics.buckets import Bucket, bucket_edges, floor_local
from digitaltwin.domain.errors import ValidationError

BERLIN = ZoneInfo("Europe/Berlin")
STOCKHOLM = ZoneInfo("Europe/Stockholm")
KOLKATA = ZoneInfo("Asia/Kolkata")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local_day(day: datetime, tz: ZoneInfo, bucket: Bucket) -> list[datetime]:
    """Edges of ``bucket`` buckets covering the local calendar day ``day`` (a naive date)."""
    start = day.replace(tzinfo=tz)
    return bucket_edges(start, (day + timedelta(days=1)).replace(tzinfo=tz), bucket, tz)


# -- DST days ---------------------------------------------------------------


def test_fall_back_day_has_25_hourly_buckets() -> None:
    edges = local_day(datetime(2024, 10, 27), BERLIN, Bucket.HOUR)
    assert len(edges) - 1 == 25
    assert edges[0] == utc(2024, 10, 26, 22)
    assert edges[-2] == utc(2024, 10, 27, 22)
    assert edges[-1] == utc(2024, 10, 27, 23)
    labels = [e.astimezone(BERLIN).strftime("%H:%M%z") for e in edges[:-1]]
    assert labels[:5] == ["00:00+0200", "01:00+0200", "02:00+0200", "02:00+0100", "03:00+0100"]
    assert all(b - a == timedelta(hours=1) for a, b in zip(edges, edges[1:], strict=False))


def test_spring_forward_day_has_23_hourly_buckets_without_0200() -> None:
    edges = local_day(datetime(2024, 3, 31), STOCKHOLM, Bucket.HOUR)
    assert len(edges) - 1 == 23
    assert edges[0] == utc(2024, 3, 30, 23)
    assert edges[-1] == utc(2024, 3, 31, 22)
    hours = [e.astimezone(STOCKHOLM).hour for e in edges[:-1]]
    assert hours == [0, 1, *range(3, 24)]


@pytest.mark.parametrize(
    ("day", "tz", "hours", "quarters"),
    [(datetime(2024, 3, 31), STOCKHOLM, 23, 92), (datetime(2024, 10, 27), BERLIN, 25, 100), (datetime(2024, 10, 28), BERLIN, 24, 96)],
)
def test_day_bucket_length_follows_dst(day: datetime, tz: ZoneInfo, hours: int, quarters: int) -> None:
    days = local_day(day, tz, Bucket.DAY)
    assert len(days) == 2
    assert days[1] - days[0] == timedelta(hours=hours)
    assert len(local_day(day, tz, Bucket.QUARTER_HOUR)) - 1 == quarters


def test_hour_floor_on_the_repeated_hour_keeps_the_two_02_00_apart() -> None:
    assert floor_local(utc(2024, 10, 27, 0, 30), Bucket.HOUR, BERLIN) == utc(2024, 10, 27, 0)  # 02:30+02:00
    assert floor_local(utc(2024, 10, 27, 1, 30), Bucket.HOUR, BERLIN) == utc(2024, 10, 27, 1)  # 02:30+01:00
    assert floor_local(utc(2024, 10, 27, 1, 59), Bucket.QUARTER_HOUR, BERLIN) == utc(2024, 10, 27, 1, 45)


def test_hour_buckets_follow_half_hour_offsets() -> None:
    assert floor_local(utc(2024, 1, 1, 12, 10), Bucket.HOUR, KOLKATA) == utc(2024, 1, 1, 11, 30)


# -- days in local time, weeks from Monday -------------------------------------


def test_local_day_starts_at_local_midnight() -> None:
    assert floor_local(utc(2024, 1, 15, 22, 30), Bucket.DAY, BERLIN) == utc(2024, 1, 14, 23)
    assert floor_local(utc(2024, 1, 15, 23, 30), Bucket.DAY, BERLIN) == utc(2024, 1, 15, 23)
    assert floor_local(utc(2024, 1, 15, 23, 30), Bucket.DAY, ZoneInfo("UTC")) == utc(2024, 1, 15)


@pytest.mark.parametrize("day", range(1, 15))
def test_weeks_start_on_monday(day: int) -> None:
    start = floor_local(utc(2024, 1, day, 12), Bucket.WEEK, ZoneInfo("UTC"))
    assert start.weekday() == 0
    assert start == (utc(2024, 1, 1) if day <= 7 else utc(2024, 1, 8))


def test_two_weeks_of_january_2024() -> None:
    edges = bucket_edges(utc(2024, 1, 1), utc(2024, 1, 15), Bucket.WEEK, ZoneInfo("UTC"))
    assert edges == [utc(2024, 1, 1), utc(2024, 1, 8), utc(2024, 1, 15)]
    # a range starting mid-week still starts at its Monday, not at an epoch-anchored Thursday or Saturday
    assert bucket_edges(utc(2024, 1, 3), utc(2024, 1, 10), Bucket.WEEK, ZoneInfo("UTC"))[0] == utc(2024, 1, 1)


def test_local_week_starts_at_monday_local_midnight() -> None:
    start = floor_local(utc(2024, 1, 7, 23, 30), Bucket.WEEK, BERLIN)  # Monday 00:30 local
    assert start == utc(2024, 1, 7, 23)
    assert start.astimezone(BERLIN).weekday() == 0


# -- months and leap years -------------------------------------------------------


def test_leap_february_has_29_days() -> None:
    tz = ZoneInfo("UTC")
    months = bucket_edges(utc(2024, 1, 1), utc(2025, 1, 1), Bucket.MONTH, tz)
    assert len(months) - 1 == 12
    assert months[1:3] == [utc(2024, 2, 1), utc(2024, 3, 1)]
    assert months[2] - months[1] == timedelta(days=29)
    assert floor_local(utc(2024, 2, 29, 23, 59), Bucket.MONTH, tz) == utc(2024, 2, 1)
    assert floor_local(utc(2024, 2, 29, 12), Bucket.DAY, tz) == utc(2024, 2, 29)


def test_days_per_year() -> None:
    tz = ZoneInfo("UTC")
    assert len(bucket_edges(utc(2024, 1, 1), utc(2025, 1, 1), Bucket.DAY, tz)) - 1 == 366
    assert len(bucket_edges(utc(2023, 1, 1), utc(2024, 1, 1), Bucket.DAY, tz)) - 1 == 365
    berlin = bucket_edges(datetime(2024, 1, 1, tzinfo=BERLIN), datetime(2025, 1, 1, tzinfo=BERLIN), Bucket.DAY, BERLIN)
    assert len(berlin) - 1 == 366


def test_month_buckets_in_a_dst_zone_start_at_local_midnight() -> None:
    months = bucket_edges(datetime(2024, 1, 1, tzinfo=BERLIN), datetime(2025, 1, 1, tzinfo=BERLIN), Bucket.MONTH, BERLIN)
    assert all(m.astimezone(BERLIN).strftime("%d %H:%M") == "01 00:00" for m in months)
    assert months[3] == utc(2024, 3, 31, 22)  # April starts in summer time


def test_empty_range_is_rejected_naming_end() -> None:
    with pytest.raises(ValidationError) as err:
        bucket_edges(utc(2024, 1, 2), utc(2024, 1, 1), Bucket.DAY, BERLIN)
    assert err.value.field == "end"
