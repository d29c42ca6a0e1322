"""Meter arithmetic, one family of tests per kind of field fault (pure, no I/O).

Each test states the true consumption of the meter and checks that the booked energy equals it:
no fault may invent energy (book from zero, book a wrap as negative, book a spike) or lose it.
"""

from __future__ import annotations

import numpy as np
import pytest

from digitaltwin.analytics.meter import (
    GLITCH_MAX_READINGS,
    IMPLAUSIBLE_POWER_FACTOR,
    CounterRules,
    EventKind,
    Replacement,
    counter_arithmetic,
    mark_buckets,
    quarantine_power,
    split_import_export,
)
from digitaltwin.analytics.segments import Segments

Q = 900.0  # a 15-minute read cadence, seconds
KWH = 1e-6


def run(values: list[float], rules: CounterRules | None = None, *, step: float = Q):
    ts = np.arange(len(values), dtype=float) * step
    return counter_arithmetic(ts, np.array(values, dtype=float), rules)


def kinds(metered) -> list[str]:
    return [e.kind.value for e in metered.events]


def assert_never_negative(metered) -> None:
    assert (metered.segments.energy_kwh >= 0).all()
    assert (metered.segments.end_s > metered.segments.start_s).all()


# -- glitches ----------------------------------------------------------------------------------


@pytest.mark.parametrize("low", [0.0, 1.0, 500.0, 995.0])
@pytest.mark.parametrize("run_length", range(1, GLITCH_MAX_READINGS + 1))
@pytest.mark.parametrize("back", [1000.0, 1004.0])
def test_a_transient_low_run_is_a_glitch_nothing_is_booked_from_it(low: float, run_length: int, back: float) -> None:
    """Every transient low value (zero, tiny, half, a small dip), 1 to 4 readings long, recovering at or
    above the last good total: the booked energy is exactly the register's true increase."""
    values = [990.0, 1000.0] + [low] * run_length + [back, back + 10.0]
    metered = run(values)
    assert metered.segments.energy_kwh.sum() == pytest.approx((back + 10.0) - 990.0, abs=KWH)
    assert kinds(metered) == ["glitch"]
    glitch = metered.events[0]
    assert (glitch.start_s, glitch.end_s) == (Q, (2 + run_length) * Q)
    assert f"fell to {low:g} kWh" in glitch.reason
    assert_never_negative(metered)


def test_low_readings_that_do_not_come_back_are_a_reset_counted_from_zero() -> None:
    values = [990.0, 1000.0] + [0.0] * (GLITCH_MAX_READINGS + 1) + [3.0]
    metered = run(values)
    assert metered.segments.energy_kwh.sum() == pytest.approx(10.0 + 3.0, abs=KWH)
    assert kinds(metered) == ["reset"]


def test_a_drop_over_a_gap_is_not_a_glitch() -> None:
    ts = np.array([0.0, Q, Q + 3 * 86400, 2 * Q + 3 * 86400])
    metered = counter_arithmetic(ts, np.array([990.0, 1000.0, 0.0, 1005.0]))
    assert metered.segments.energy_kwh.tolist() == [10.0, 1005.0]  # the gap's baseline is the reading after it


# -- rollover ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "modulus_kwh",
    [99_999.9, 2**16 / 1000, 2**32 / 1000, 1e6],  # 5-digit register, 16/32-bit Wh registers, 6-digit kWh
)
@pytest.mark.parametrize("step_kwh_share", [0.001, 0.01, 0.2])
def test_a_register_that_wraps_at_its_modulus_books_the_modular_difference(modulus_kwh: float, step_kwh_share: float) -> None:
    step = modulus_kwh * step_kwh_share
    true_totals = modulus_kwh - 2.5 * step + step * np.arange(6)  # crosses the modulus once
    register = np.mod(true_totals, modulus_kwh)
    metered = run(register.tolist(), CounterRules(modulus_kwh=modulus_kwh))
    assert metered.segments.energy_kwh.sum() == pytest.approx(5 * step, rel=1e-9)
    assert kinds(metered) == ["rollover"]
    assert_never_negative(metered)


def test_without_a_modulus_a_wrap_is_a_reset_and_never_negative() -> None:
    metered = run([99_990.0, 99_999.0, 4.0, 9.0])
    assert metered.segments.energy_kwh.tolist() == [9.0, 4.0, 5.0]
    assert kinds(metered) == ["reset"]
    assert_never_negative(metered)


def test_with_a_modulus_a_drop_to_near_zero_far_from_the_top_is_still_a_reset() -> None:
    """The modular increase is more than half the modulus (RFC 1982): a reset, not a wrap of 95 % of the register."""
    metered = run([40_000.0, 40_010.0, 3.0], CounterRules(modulus_kwh=100_000.0))
    assert metered.segments.energy_kwh.tolist() == [10.0, 3.0]
    assert kinds(metered) == ["reset"]


def test_with_a_modulus_a_small_dip_is_still_noise() -> None:
    metered = run([50_000.0, 50_010.0, 50_008.0, 50_020.0], CounterRules(modulus_kwh=100_000.0))
    assert metered.segments.energy_kwh.sum() == pytest.approx(20.0)
    assert "rollover" not in kinds(metered)


# -- meter replacement ---------------------------------------------------------------------------


@pytest.mark.parametrize("new_first", [0.0, 7.5, 250_000.0])  # zero, a used meter, a meter above the old one
@pytest.mark.parametrize("window_s", [0.0, 3600.0])
def test_a_replacement_books_each_meter_on_its_side_and_the_window_is_a_gap(new_first: float, window_s: float) -> None:
    old = [1000.0 + 10.0 * i for i in range(5)]  # 0 .. 4Q, 10 kWh per quarter
    old_final_ts, old_final = 4 * Q + 300.0, 1043.0
    new_ts = old_final_ts + window_s
    new_readings_ts = [new_ts + Q * (k + 1) for k in range(3)]
    ts = np.array([Q * i for i in range(5)] + new_readings_ts)
    values = np.array(old + [new_first + 5.0 * (k + 1) for k in range(3)])
    swap = Replacement(old_final_ts, old_final, new_ts, new_first)
    metered = counter_arithmetic(ts, values, CounterRules(replacements=(swap,)))
    seg = metered.segments
    assert seg.energy_kwh.sum() == pytest.approx((old_final - 1000.0) + 15.0, abs=KWH)
    assert_never_negative(metered)
    # the window [old final, new first) has no segment: a gap, not 0 kWh
    inside = (seg.start_s < new_ts) & (seg.end_s > old_final_ts)
    assert not inside.any()
    assert kinds(metered) == ["replacement"]
    assert (metered.events[0].start_s, metered.events[0].end_s) == (old_final_ts, new_ts)


def test_readings_inside_the_swap_window_are_ignored_and_reported() -> None:
    ts = np.array([0.0, Q, 2 * Q, 3 * Q, 4 * Q])
    values = np.array([100.0, 110.0, 0.0, 3.0, 13.0])  # 2Q is the fitter's test read, inside the window
    swap = Replacement(Q + 60.0, 111.0, 3 * Q, 3.0)
    metered = counter_arithmetic(ts, values, CounterRules(replacements=(swap,)))
    assert metered.segments.energy_kwh.sum() == pytest.approx(11.0 + 10.0)
    assert sorted(kinds(metered)) == ["quarantined", "replacement"]


# -- implausible values ----------------------------------------------------------------------------


@pytest.mark.parametrize("spike", [5_000.0, 1e9])
def test_a_lone_spike_above_the_power_limit_is_quarantined_and_books_nothing(spike: float) -> None:
    rules = CounterRules(power_limit_kw=40.0)  # 40 kW: at most 2 x 40 x 0.25 + 1 = 21 kWh per quarter
    metered = run([1000.0, 1010.0, spike, 1020.0, 1030.0], rules)
    assert metered.segments.energy_kwh.sum() == pytest.approx(30.0)
    assert kinds(metered) == ["quarantined"]
    assert "kW" in metered.events[0].reason and "40 kW" in metered.events[0].reason


def test_a_jump_that_persists_is_quarantined_its_span_a_gap_and_later_spans_count() -> None:
    rules = CounterRules(power_limit_kw=40.0)
    metered = run([1000.0, 1010.0, 90_000.0, 90_010.0, 90_020.0, 90_030.0, 90_040.0, 90_050.0], rules)
    assert metered.segments.energy_kwh.sum() == pytest.approx(10.0 + 50.0)
    assert kinds(metered) == ["quarantined"]
    assert metered.segments.start_s.size == 6  # the jump's span has no segment


def test_an_increase_within_twice_the_rating_plus_one_step_is_kept() -> None:
    allowed = IMPLAUSIBLE_POWER_FACTOR * 40.0 * 0.25 + 1.0
    metered = run([0.0, allowed], CounterRules(power_limit_kw=40.0))
    assert metered.segments.energy_kwh.tolist() == [allowed] and metered.events == ()


def test_an_implausible_reset_is_quarantined() -> None:
    metered = run([50_000.0, 50_010.0, 30_000.0], CounterRules(power_limit_kw=40.0))
    assert metered.segments.energy_kwh.tolist() == [10.0]
    assert kinds(metered) == ["quarantined"]


def test_power_samples_and_intervals_above_the_limit_are_dropped_as_gaps() -> None:
    seg = Segments(np.array([0.0, Q, 2 * Q]), np.array([Q, 2 * Q, 3 * Q]), np.array([2.5, 250.0, -2.5]))
    metered = quarantine_power(seg, power_limit_kw=10.0)
    assert metered.segments.energy_kwh.tolist() == [2.5, -2.5]
    assert kinds(metered) == ["quarantined"] and metered.events[0].start_s == Q
    assert quarantine_power(seg, power_limit_kw=None).segments.energy_kwh.size == 3


# -- import and export ---------------------------------------------------------------------------


@pytest.mark.parametrize("export_positive", [False, True])
def test_import_and_export_are_split_per_segment_never_netted(export_positive: bool) -> None:
    seg = Segments(np.arange(4) * Q, np.arange(1, 5) * Q, np.array([1.0, -1.0, 1.0, -1.0]))
    imported, exported = split_import_export(seg, export_positive=export_positive)
    assert imported.energy_kwh.sum() == 2.0 and exported.energy_kwh.sum() == 2.0
    positive_side = exported if export_positive else imported
    assert positive_side.energy_kwh.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert imported.start_s.tolist() == seg.start_s.tolist()  # both sides keep the coverage


# -- marks -----------------------------------------------------------------------------------


def test_events_mark_the_buckets_they_overlap() -> None:
    metered = run([990.0, 1000.0, 0.0, 1004.0, 1010.0, 5.0])  # a glitch over [Q, 3Q), a reset over [4Q, 5Q)
    edges = np.array([0.0, 2 * Q, 4 * Q, 6 * Q])
    assert mark_buckets(metered.events, edges) == [["glitch"], ["glitch"], ["reset"]]
    instant = counter_arithmetic(
        np.array([0.0, Q]), np.array([1.0, 2.0]), CounterRules(replacements=(Replacement(3 * Q, 2.0, 3 * Q, 0.0),))
    )
    assert mark_buckets(instant.events, edges) == [[], ["replacement"], []]
