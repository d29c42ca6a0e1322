"""Rule detectors and persistence of the anomaly package on small synthetic series."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from digitaltwin.monitoring import rules
from digitaltwin.monitoring.events import AnomalyType, Severity
from digitaltwin.monitoring.persistence import k_of_n
from digitaltwin.monitoring.settings import intervals_for
from digitaltwin.monitoring.tails import surprise

HOUR = pd.Timedelta(hours=1)
QUARTER = pd.Timedelta(minutes=15)


def test_flatline_flags_whole_long_runs_only() -> None:
    v = np.array([1.0, 2.0, 5.0, 5.0, 5.0, 5.0, 3.0, 4.0, 4.0, 4.0, 2.0])
    mask = rules.flatline(v, min_intervals=4)
    assert mask.tolist() == [False, False, True, True, True, True, False, False, False, False, False]
    assert not rules.flatline(v, min_intervals=5).any()


def test_flatline_tolerance_and_nan_breaks_run() -> None:
    v = np.array([10.0, 10.000001, 10.0, np.nan, 10.0, 10.0])
    assert rules.flatline(v, min_intervals=3, tolerance=1e-6)[:3].all()
    assert not rules.flatline(v, min_intervals=3, tolerance=1e-9).any()
    assert not rules.flatline(v, min_intervals=4, tolerance=1e-6).any()  # the NaN splits 3 + 2


def test_flatline_hours_follow_the_cadence() -> None:
    assert intervals_for(6, HOUR.total_seconds()) == 6
    assert intervals_for(6, QUARTER.total_seconds()) == 24
    assert intervals_for(0.1, HOUR.total_seconds()) == 1


def test_zero_in_busy_hours_ignores_quiet_hours() -> None:
    expected = np.array([100.0, 100.0, 5.0, 5.0, 100.0])
    values = np.array([1.0, 90.0, 0.0, 0.1, 6.0])
    mask = rules.zero_in_busy_hours(values, expected, zero_fraction=0.05, busy_fraction=0.5)
    assert mask.tolist() == [True, False, False, False, False]  # 6 is above 5 % of 100; nights are not busy


def test_spike_needs_both_neighbours_lower() -> None:
    rng = np.random.default_rng(0)
    v = 50 + rng.normal(0, 1, 200)
    v[100] += 30  # a single-interval spike
    v[150:153] += 30  # a plateau, not a spike
    mask = rules.spike(v, z=8.0)
    assert np.flatnonzero(mask).tolist() == [100]


def test_gaps_per_cadence_and_severity() -> None:
    index = pd.date_range("2024-01-01", periods=12, freq="15min", tz="UTC")
    values = np.ones(12)
    values[2] = np.nan  # one missing interval
    values[5:9] = np.nan  # four missing intervals
    values[11] = np.nan  # reaches the end: staleness, not a gap
    events = rules.gaps(index, values, step=QUARTER, stale_intervals=4)
    assert [(e.start, e.end, e.severity) for e in events] == [
        (index[2], index[3], Severity.WARNING),
        (index[5], index[9], Severity.CRITICAL),
    ]
    assert all(e.type is AnomalyType.DATA_GAP for e in events)


@pytest.mark.parametrize(("step", "stale_after"), [(HOUR, pd.Timedelta(hours=4)), (QUARTER, pd.Timedelta(hours=1))])
def test_stale_device_threshold_scales_with_cadence(step: pd.Timedelta, stale_after: pd.Timedelta) -> None:
    last = pd.Timestamp("2024-03-01 10:00", tz="UTC")
    complete = last + step  # the last interval's end: the next reading was due then
    assert rules.stale(last, complete + stale_after - pd.Timedelta(seconds=1), step=step, stale_intervals=4) is None
    event = rules.stale(last, complete + stale_after, step=step, stale_intervals=4)
    assert event is not None and event.type is AnomalyType.STALE_DEVICE
    assert event.start == complete and event.severity is Severity.CRITICAL
    assert rules.stale(None, complete + stale_after, step=step, stale_intervals=4) is None


@dataclass
class _Event:
    kind: str
    start_s: float
    end_s: float
    reason: str


def test_meter_events_map_to_anomaly_types() -> None:
    out = rules.meter_events([_Event("reset", 0, 3600, "dropped to 0"), _Event("quarantined", 7200, 7200, "9 MW")])
    assert [(e.type, e.severity) for e in out] == [
        (AnomalyType.METER_RESET, Severity.INFO),
        (AnomalyType.QUARANTINED_VALUE, Severity.WARNING),
    ]
    assert out[1].end > out[1].start
    with pytest.raises(ValueError, match="unknown meter event kind"):
        rules.meter_events([_Event("bogus", 0, 1, "")])


def test_k_of_n_ignores_isolated_noise_and_covers_persistent_runs() -> None:
    s = np.zeros(20)
    s[3] = 9.0  # one noisy interval
    s[10], s[12], s[13] = 9.0, 9.0, 9.0  # three of four
    p = k_of_n(s, 3, 4)
    assert p[3] < 9.0 and p[:9].max() < 9.0
    assert (p[10:14] == 9.0).all()  # the run, its quiet interval 11 bridged
    assert p[9] < 9.0 and p[14] < 9.0  # not the quiet intervals before or after it
    assert p[16:].max() < 9.0
    assert (k_of_n(s, 1, 1) == s).all()
    with pytest.raises(ValueError):
        k_of_n(s, 5, 4)


def test_k_of_n_score_is_kth_largest_in_best_window() -> None:
    s = np.array([1.0, 5.0, 3.0, 4.0, 0.0, 0.0])
    # windows of 3: [1,5,3] -> 2nd largest 3; [5,3,4] -> 4; [3,4,0] -> 3; [4,0,0] -> 0; best per interval
    # [3,4,4,4,3,0]; capped by the smaller of the highest score within 2 before and within 2 after:
    # [1,5,4,4,0,0] (interval 0 has nothing before it reaching 3, interval 4 nothing after it)
    assert k_of_n(s, 2, 3).tolist() == [1.0, 4.0, 4.0, 4.0, 0.0, 0.0]


def test_surprise_is_monotone_and_calibrated() -> None:
    z = np.array([0.0, 1.0, 3.2905, 8.0, 40.0, np.nan])
    s = surprise(z)
    assert s[0] == pytest.approx(0.0, abs=1e-12)
    assert s[2] == pytest.approx(3.0, abs=1e-3)  # |z| = 3.29 is a two-sided 1e-3 tail
    assert np.all(np.diff(s[:5]) > 0) and np.isfinite(s[4]) and np.isnan(s[5])
