"""Counter segments: a span longer than the maximum is a gap, the baseline moves on over it.

Newcomer report: one stray counter reading of 0 kWh stamped 2005 spread the register of a meter
installed in 2026 over 22 years (November +238 kWh, 2010 4566 kWh without a reading).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from digitaltwin.analytics.energy import (
    COUNTER_MAX_SPAN_SECONDS,
    aggregate,
    counter_segments,
    segments_for,
)
from digitaltwin.domain.units import SeriesKind

HOUR = 3600.0
DAY = 24 * HOUR


def epoch(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def spans(ts: list[float], kwh: list[float], **kwargs: float) -> list[tuple[float, float, float]]:
    seg = counter_segments(np.array(ts, dtype=float), np.array(kwh, dtype=float), **kwargs)
    return list(zip(seg.start_s.tolist(), seg.end_s.tolist(), seg.energy_kwh.tolist(), strict=True))


def test_span_up_to_the_maximum_is_spread_a_longer_one_is_a_gap() -> None:
    ts = [0.0, 900.0, 900.0 + 2 * HOUR, 900.0 + 2 * HOUR + 2 * HOUR + 1]
    assert spans(ts, [100.0, 110.0, 130.0, 150.0], max_span_s=2 * HOUR) == [
        (0.0, 900.0, 10.0),
        (900.0, 900.0 + 2 * HOUR, 20.0),  # exactly the maximum: spread
        # the last span is one second longer: a gap, no segment
    ]


def test_the_reading_after_a_gap_is_the_new_baseline() -> None:
    ts = [0.0, 900.0, 900.0 + 3 * DAY, 1800.0 + 3 * DAY]
    assert spans(ts, [100.0, 110.0, 500.0, 510.0]) == [(0.0, 900.0, 10.0), (900.0 + 3 * DAY, 1800.0 + 3 * DAY, 10.0)]


@pytest.mark.parametrize(
    ("after_gap", "why"),
    [(5.0, "a reset over the gap"), (1005.0, "a dip over the gap (not held at the old high of 1010)")],
)
def test_a_drop_over_a_gap_does_not_carry_into_later_spans(after_gap: float, why: str) -> None:
    ts = [0.0, 900.0, 900.0 + 3 * DAY, 1800.0 + 3 * DAY]
    out = spans(ts, [1000.0, 1010.0, after_gap, after_gap + 10.0])
    assert out == [(0.0, 900.0, 10.0), (900.0 + 3 * DAY, 1800.0 + 3 * DAY, 10.0)], why


def test_resets_and_dips_between_close_readings_keep_their_rules() -> None:
    ts = [0.0, 900.0, 1800.0, 2700.0, 3600.0, 4500.0]
    # 1010 -> 5 is a reset (counted from zero), 25 -> 24 a dip (nothing), 24 -> 30 counts from 25
    assert [e for *_, e in spans(ts, [1000.0, 1010.0, 5.0, 25.0, 24.0, 30.0])] == [10.0, 5.0, 20.0, 0.0, 5.0]


def test_default_keeps_daily_reads_whole_over_a_dst_day_and_a_late_read() -> None:
    assert COUNTER_MAX_SPAN_SECONDS == 48 * HOUR
    ts = [0.0, 25 * HOUR, 25 * HOUR + 47 * HOUR]  # a 25-hour DST day, then a read one day late
    assert [e for *_, e in spans(ts, [0.0, 25.0, 72.0])] == [25.0, 47.0]
    ts = [0.0, 49 * HOUR]  # two daily reads missed in a row
    assert spans(ts, [0.0, 49.0]) == []


def test_segments_for_passes_the_maximum_to_counters_only() -> None:
    ts, kwh = np.array([0.0, 900.0, 900.0 + 2 * HOUR]), np.array([0.0, 10.0, 30.0])
    counter = segments_for(SeriesKind.CUMULATIVE, ts, kwh, interval_s=None, max_hold_s=HOUR, until_s=1e9)
    assert counter.energy_kwh.tolist() == [10.0, 20.0]  # 2 h <= 48 h: the power hold of 1 h is not used
    short = segments_for(
        SeriesKind.CUMULATIVE, ts, kwh, interval_s=None, max_hold_s=HOUR, until_s=1e9, counter_max_span_s=HOUR
    )
    assert short.energy_kwh.tolist() == [10.0]


def test_a_stray_old_reading_adds_nothing_to_the_years_in_between() -> None:
    """The newcomer's case: 50 kW from 2026-11-20, and a reading of 0 kWh stamped 2005-01-01."""
    first = epoch(2026, 11, 20)
    real_ts = first + 900.0 * np.arange(768)
    real_kwh = 100_000.0 + 12.5 * np.arange(768)
    ts = np.concatenate(([epoch(2005, 1, 1)], real_ts))
    kwh = np.concatenate(([0.0], real_kwh))
    seg = counter_segments(ts, kwh)
    assert seg.start_s[0] == first and seg.energy_kwh.sum() == pytest.approx(767 * 12.5)

    edges = np.array([epoch(2010, 1, 1), epoch(2011, 1, 1), epoch(2026, 11, 1), epoch(2026, 12, 1)])
    totals = aggregate(seg, edges, ts)
    assert np.isnan(totals.energy_kwh[0]) and np.isnan(totals.mean_power_kw[0]) and totals.covered_hours[0] == 0.0
    assert totals.sample_count.tolist() == [0, 0, 768]
    assert totals.energy_kwh[2] == pytest.approx(9587.5, abs=1e-6)  # was 9825.7 (local months) with the stray reading
    assert totals.mean_power_kw[2] == pytest.approx(50.0)  # was 15.1
    assert totals.peak_power_kw[2] == pytest.approx(50.0)
