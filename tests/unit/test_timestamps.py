"""Pure tests of ``digitaltwin.domain.timestamps`` (no I/O).

Field cases covered (``/work/shared/cases``):

* ``time/naive-timestamps.md``: offset-less strings need a timezone; Amsterdam summer
  ``2024-08-10 00:00`` is 2024-08-09T22:00Z (epoch 1723240800), never 1723248000.
* ``payload/epoch-seconds-vs-milliseconds.md``: numbers are epoch milliseconds; seconds
  (decoding to January 1970) fall below the 2000-01-01 floor and are rejected naming ``ts``.
* ``time/leap-day-and-leap-second.md`` (b): ``23:59:60`` is rejected naming ``ts``.
* ``time/csv-ambiguous-local-times.md``: the repeated fall-back hour is resolved by order;
  a lone ambiguous time is not.
* ``time/dst-spring-forward-23h-day.md``: skipped wall-clock times do not exist.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from digitaltwin.domain.errors import ValidationError
from digitaltwin.domain.timestamps import (
    PLAUSIBLE_FLOOR,
    check_plausible,
    from_epoch_ms,
    localize,
    localize_sequence,
    parse_instant,
    zone,
)

BERLIN = ZoneInfo("Europe/Berlin")
AMSTERDAM = ZoneInfo("Europe/Amsterdam")
STOCKHOLM = ZoneInfo("Europe/Stockholm")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- naive-timestamps ---------------------------------------------------------


def test_naive_string_without_timezone_is_rejected_naming_the_field() -> None:
    with pytest.raises(ValidationError) as err:
        parse_instant("2024-08-10 00:00", field="start")
    assert err.value.field == "start"
    assert "no UTC offset" in err.value.message


def test_naive_string_takes_the_given_timezone() -> None:
    first = parse_instant("2024-08-09 23:00", field="start", tz=AMSTERDAM)
    second = parse_instant("2024-08-10 00:00", field="start", tz=AMSTERDAM)
    assert first == utc(2024, 8, 9, 21)
    assert first.timestamp() == 1723237200
    assert second.timestamp() == 1723240800
    assert second.timestamp() != 1723248000  # the "02:00 local" mistake


def test_offset_forms_of_the_same_instant_agree() -> None:
    a = parse_instant("2024-08-10T00:00:00+02:00")
    b = parse_instant("2024-08-09T22:00:00Z")
    assert a == b == utc(2024, 8, 9, 22)
    assert a.tzinfo is UTC and b.tzinfo is UTC
    # an explicit offset wins over the timezone given for naive strings
    assert parse_instant("2024-08-09T22:00:00Z", tz=AMSTERDAM) == b


# -- epoch-seconds-vs-milliseconds --------------------------------------------


def test_epoch_milliseconds_are_accepted() -> None:
    assert parse_instant(1717243200000) == utc(2024, 6, 1, 12)
    assert parse_instant(1717243200000.0) == utc(2024, 6, 1, 12)


def test_epoch_seconds_are_rejected_naming_ts() -> None:
    with pytest.raises(ValidationError) as err:
        parse_instant(1717243200)
    assert err.value.field == "ts"
    assert "1970-01-20T21:00:43.200000" in err.value.message
    assert "milliseconds" in err.value.message


def test_plausibility_floor_is_2000_01_01() -> None:
    floor_ms = 946684800000
    assert from_epoch_ms(floor_ms) == PLAUSIBLE_FLOOR == utc(2000, 1, 1)
    with pytest.raises(ValidationError):
        from_epoch_ms(floor_ms - 1)


def test_future_limit_is_relative_to_the_given_now() -> None:
    now = utc(2025, 1, 1)
    assert check_plausible(now + timedelta(days=1), now=now) == now + timedelta(days=1)
    with pytest.raises(ValidationError) as err:
        check_plausible(now + timedelta(days=1, seconds=1), field="ts", now=now)
    assert err.value.field == "ts"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), pytest.param(10**400, id="int-beyond-float"), pytest.param(-(10**400), id="negative-int-beyond-float"), 1e300])
def test_non_finite_or_huge_epoch_is_a_validation_error(value: float) -> None:
    with pytest.raises(ValidationError) as err:
        parse_instant(value, field="ts")
    assert err.value.field == "ts"


@pytest.mark.parametrize("value", [True, None])
def test_booleans_and_null_are_not_timestamps(value: object) -> None:
    with pytest.raises(ValidationError):
        parse_instant(value)


# -- leap second --------------------------------------------------------------


@pytest.mark.parametrize("text", ["2016-12-31T23:59:60Z", "2016-12-31T23:59:60.500Z", "2017-01-01T00:59:60+01:00"])
def test_leap_second_is_rejected_naming_the_field(text: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_instant(text, field="ts")
    assert err.value.field == "ts"
    assert "leap second" in err.value.message


# -- DST: gaps and repeated hours ---------------------------------------------


def test_localize_rejects_the_spring_forward_gap() -> None:
    with pytest.raises(ValidationError) as err:
        localize(datetime(2024, 3, 31, 2, 30), STOCKHOLM, field="interval_start")
    assert err.value.field == "interval_start"
    assert "DST gap" in err.value.message


def test_localize_rejects_a_single_ambiguous_time() -> None:
    with pytest.raises(ValidationError) as err:
        localize(datetime(2025, 10, 26, 2, 30), BERLIN, field="local_time")
    assert err.value.field == "local_time"
    assert "ambiguous" in err.value.message


def test_localize_unambiguous_times() -> None:
    assert localize(datetime(2025, 10, 26, 1, 45), BERLIN) == utc(2025, 10, 25, 23, 45)
    assert localize(datetime(2025, 10, 26, 3, 0), BERLIN) == utc(2025, 10, 26, 2, 0)


CASE_ROWS = ["01:45", "02:00", "02:15", "02:30", "02:45", "02:00", "02:15", "02:30", "02:45", "03:00"]
CASE_UTC = [
    utc(2025, 10, 25, 23, 45),
    utc(2025, 10, 26, 0, 0),
    utc(2025, 10, 26, 0, 15),
    utc(2025, 10, 26, 0, 30),
    utc(2025, 10, 26, 0, 45),
    utc(2025, 10, 26, 1, 0),
    utc(2025, 10, 26, 1, 15),
    utc(2025, 10, 26, 1, 30),
    utc(2025, 10, 26, 1, 45),
    utc(2025, 10, 26, 2, 0),
]


def _wall(hhmm: str) -> datetime:
    hour, minute = hhmm.split(":")
    return datetime(2025, 10, 26, int(hour), int(minute))


def test_localize_sequence_resolves_the_repeated_hour_by_order() -> None:
    out = localize_sequence([_wall(t) for t in CASE_ROWS], BERLIN)
    assert out == CASE_UTC
    assert len(set(out)) == 10


def test_localize_sequence_reports_only_the_lone_ambiguous_time() -> None:
    out = localize_sequence([_wall("01:45"), _wall("02:30"), _wall("03:00")], BERLIN)
    assert out[0] == utc(2025, 10, 25, 23, 45)
    assert isinstance(out[1], str) and "ambiguous" in out[1]
    assert out[2] == utc(2025, 10, 26, 2, 0)


def test_localize_sequence_passes_none_and_reports_gaps() -> None:
    out = localize_sequence([None, datetime(2024, 3, 31, 2, 0), datetime(2024, 3, 31, 3, 0)], STOCKHOLM)
    assert out[0] is None
    assert isinstance(out[1], str) and "DST gap" in out[1]
    assert out[2] == utc(2024, 3, 31, 1, 0)


def test_zone_rejects_unknown_names() -> None:
    assert zone("Europe/Berlin") == BERLIN
    with pytest.raises(ValidationError) as err:
        zone("Mars/Olympus_Mons")
    assert err.value.field == "timezone"
