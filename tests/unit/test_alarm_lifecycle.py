"""The alarm life cycle, the stale-device check, forecast skill formulas, drift hysteresis and webhook signing (pure)."""

from __future__ import annotations

import hashlib
import hmac
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from digitaltwin.domain.errors import ConflictError, ValidationError
from digitaltwin.monitoring.alarms import (
    AUTO,
    AlarmState,
    Change,
    Detection,
    Hysteresis,
    Severity,
    acknowledge,
    clear,
    evidence,
    transition,
)
from digitaltwin.monitoring.skill import DriftSettings, SkillRow, drift_detection, skill_table
from digitaltwin.monitoring.stale_device import StaleSettings, check_stale
from digitaltwin.services.webhooks import sign, verify

T0 = datetime(2025, 5, 1, 10, tzinfo=UTC)


def det(active: bool = True, severity: Severity = Severity.WARNING, at: int = 0, score: float = 1.0) -> Detection:
    ts = T0 + timedelta(minutes=at)
    return Detection("a1", "flatline", severity, ts, ts + timedelta(minutes=15), score, evidence(0.0, 1.0, 5.0), active)


def test_raise_update_escalate_and_clear_after_hysteresis() -> None:
    h = Hysteresis(clear_after=2)
    change, alarm = transition(None, det(active=False), site_id="s", now=T0)
    assert change is Change.NONE and alarm is None
    change, alarm = transition(None, det(), site_id="s", now=T0, hysteresis=h)
    assert change is Change.RAISED and alarm is not None and alarm.state is AlarmState.ACTIVE and alarm.site_id == "s"
    assert alarm.evidence == {"actual": 0.0, "expected": [1.0, 5.0]}
    change, alarm = transition(alarm, det(at=15, score=2.0), site_id="s", now=T0, hysteresis=h)
    assert change is Change.UPDATED and alarm.last_seen_at == T0 + timedelta(minutes=30) and alarm.score == 2.0
    change, alarm = transition(alarm, det(severity=Severity.CRITICAL, at=30), site_id="s", now=T0, hysteresis=h)
    assert change is Change.ESCALATED and alarm.severity is Severity.CRITICAL
    change, alarm = transition(alarm, det(severity=Severity.INFO, at=45), site_id="s", now=T0, hysteresis=h)
    assert change is Change.UPDATED and alarm.severity is Severity.CRITICAL  # never lowered while open
    # one absent evaluation is not enough (hysteresis), a present one resets the count
    change, alarm = transition(alarm, det(active=False), site_id="s", now=T0, hysteresis=h)
    assert change is Change.CLEARING and alarm.state is AlarmState.ACTIVE and alarm.inactive_count == 1
    change, alarm = transition(alarm, det(at=60), site_id="s", now=T0, hysteresis=h)
    assert change is Change.UPDATED and alarm.inactive_count == 0
    transition_now = T0 + timedelta(hours=2)
    _, alarm = transition(alarm, det(active=False), site_id="s", now=transition_now, hysteresis=h)
    change, alarm = transition(alarm, det(active=False), site_id="s", now=transition_now, hysteresis=h)
    assert change is Change.CLEARED and alarm.state is AlarmState.CLEARED
    assert alarm.cleared_by == AUTO and alarm.cleared_at == transition_now and not alarm.open
    # after a clear, the next active detection is a new alarm
    change, again = transition(alarm, det(at=120), site_id="s", now=T0, hysteresis=h)
    assert change is Change.RAISED and again is not None and again.id is None


def test_late_data_moves_the_start_earlier() -> None:
    _, alarm = transition(None, det(at=60), site_id="s", now=T0)
    _, alarm = transition(alarm, det(at=0), site_id="s", now=T0)
    assert alarm.started_at == T0 and alarm.last_seen_at == T0 + timedelta(minutes=75)


def test_acknowledge_and_clear_by_an_operator() -> None:
    _, alarm = transition(None, det(), site_id="s", now=T0)
    acked = acknowledge(alarm, by="user:op", comment="on it", now=T0)
    assert acked.state is AlarmState.ACKNOWLEDGED and acked.acknowledged_by == "user:op" and acked.acknowledged_comment == "on it"
    with pytest.raises(ConflictError) as exc:
        acknowledge(acked, by="user:op", comment=None, now=T0)
    assert exc.value.field == "state"
    # an acknowledged alarm still auto-clears when its condition ends
    _, still = transition(acked, det(active=False), site_id="s", now=T0, hysteresis=Hysteresis(1))
    assert still.state is AlarmState.CLEARED
    cleared = clear(acked, by="user:op", comment="fixed the meter", now=T0)
    assert cleared.cleared_by == "user:op" and cleared.cleared_comment == "fixed the meter"
    with pytest.raises(ConflictError):
        clear(cleared, by="user:op", comment=None, now=T0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"type": "Bad Type"}, "type"),
        ({"start": datetime(2025, 5, 1)}, "start"),
        ({"end": T0 - timedelta(hours=1)}, "end"),
        ({"score": math.nan}, "score"),
    ],
)
def test_a_bad_detection_names_its_field(kwargs: dict, field: str) -> None:
    base = {"asset_id": "a", "type": "spike", "severity": Severity.INFO, "start": T0, "end": T0, "score": 1.0}
    with pytest.raises(ValidationError) as exc:
        Detection(**(base | kwargs))
    assert exc.value.field == field


def test_settings_are_checked_by_field() -> None:
    for build, field in [
        (lambda: Hysteresis(0), "clear_after"),
        (lambda: StaleSettings(missed_intervals=0.5), "missed_intervals"),
        (lambda: StaleSettings(3, 2), "critical_intervals"),
        (lambda: DriftSettings(factor=1.0), "factor"),
        (lambda: DriftSettings(clear_ratio=0), "clear_ratio"),
        (lambda: DriftSettings(min_points=0), "min_points"),
    ]:
        with pytest.raises(ValidationError) as exc:
            build()
        assert exc.value.field == field


def test_stale_device_by_cadence() -> None:
    last = T0
    fresh = check_stale("a", "energy", last_ts=last, cadence_s=900, now=last + timedelta(minutes=44))
    assert not fresh.active and fresh.evidence["expected"] == [0.0, 2700.0]
    stale = check_stale("a", "energy", last_ts=last, cadence_s=900, now=last + timedelta(minutes=46))
    assert stale.active and stale.severity is Severity.WARNING and stale.evidence["actual"] == 46 * 60
    assert stale.start == last + timedelta(minutes=15)
    dead = check_stale("a", "energy", last_ts=last, cadence_s=900, now=last + timedelta(hours=3))
    assert dead.severity is Severity.CRITICAL and dead.score == 12


def points_frame(ts: pd.DatetimeIndex, values: list[float], lead_h: float, lo: float, hi: float, source: str = "model:m") -> pd.DataFrame:
    return pd.DataFrame({
        "source": source, "ts": ts, "lead_time_s": lead_h * 3600, "value": values,
        "q_low": lo, "q_high": hi, "q_low_level": 0.1, "q_high_level": 0.9,
    })


def test_skill_formulas_by_window_and_lead() -> None:
    end = datetime(2025, 5, 31, tzinfo=UTC)
    ts = pd.date_range(end - timedelta(hours=4), periods=4, freq="1h", tz="UTC")
    actual = pd.Series([10.0, 10.0, 20.0, 20.0], index=ts)
    forecast = [12.0, 8.0, 23.0, 21.0]  # errors +2 -2 +3 +1
    frame = pd.concat([points_frame(ts[:2], forecast[:2], 0.5, 9.0, 11.0), points_frame(ts[2:], forecast[2:], 30, 20.5, 25)])
    old = points_frame(pd.date_range(end - timedelta(days=20), periods=1, freq="1h", tz="UTC"), [0.0], 2, 0, 1)
    rows = skill_table(pd.concat([frame, old]), pd.concat([actual, pd.Series([4.0], index=old["ts"])]), end=end)
    by = {(r.window, r.lead): r for r in rows}
    row = by[("7d", "all")]
    e = np.array([2, -2, 3, 1.0])
    assert row.n == 4 and row.mae == pytest.approx(2.0) and row.bias == pytest.approx(1.0)
    assert row.rmse == pytest.approx(math.sqrt(np.mean(e**2))) and row.cv_rmse == pytest.approx(row.rmse / 15)
    assert row.nmbe == pytest.approx(4 / 60) and row.coverage == pytest.approx(2 / 4) and row.interval == (0.1, 0.9)
    assert by[("7d", "0-1h")].n == 2 and by[("7d", "0-1h")].mae == pytest.approx(2.0)
    assert by[("7d", "24-48h")].mae == pytest.approx(2.0) and by[("7d", "24-48h")].bias == pytest.approx(2.0)
    assert by[("30d", "all")].n == 5 and ("7d", "1-6h") not in by and by[("30d", "1-6h")].mae == pytest.approx(4.0)


def test_points_without_actuals_are_not_scored() -> None:
    end = datetime(2025, 5, 31, tzinfo=UTC)
    ts = pd.date_range(end - timedelta(hours=2), periods=2, freq="1h", tz="UTC")
    rows = skill_table(points_frame(ts, [1.0, 2.0], 1, np.nan, np.nan), pd.Series([1.0, np.nan], index=ts), end=end)
    assert {(r.window, r.lead): r.n for r in rows}[("7d", "all")] == 1 and rows[0].coverage is None


def test_drift_raises_above_the_factor_and_clears_below_the_lower_level() -> None:
    s = DriftSettings(factor=1.5, clear_ratio=0.8, min_points=3)

    def row(mae: float, n: int = 24) -> SkillRow:
        return SkillRow("model:m", "7d", "all", n, mae, None, None, None, None, None, None)

    def drift(mae: float, is_open: bool, n: int = 24) -> Detection | None:
        return drift_detection("a", source="model:m", row=row(mae, n), backtest_mae=2.0, is_open=is_open, start=T0, end=T0, settings=s)

    assert drift(3.1, False).active and drift(3.1, False).score == pytest.approx(1.55)
    assert not drift(2.9, False).active  # 1.45 < 1.5
    assert drift(2.9, True).active  # open: clears only below 1.5 * 0.8 = 1.2
    assert not drift(2.3, True).active
    assert drift(6.1, False).severity is Severity.CRITICAL
    assert drift(9.0, False, n=2) is None  # too few points to decide
    assert drift_detection("a", source="m", row=row(3), backtest_mae=math.nan, is_open=False, start=T0, end=T0) is None


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"event":"raised"}'
    header = sign("s3cret-s3cret-s3", 1_700_000_000, body)
    expected = hmac.new(b"s3cret-s3cret-s3", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify("s3cret-s3cret-s3", header, body, now=1_700_000_100)
    assert not verify("s3cret-s3cret-s3", header, body + b" ", now=1_700_000_100)
    assert not verify("other-secret-xxxx", header, body, now=1_700_000_100)
    assert not verify("s3cret-s3cret-s3", header, body, now=1_700_001_000)  # too old: a replay
    assert not verify("s3cret-s3cret-s3", "garbage", body)


def test_intervals_close_when_a_later_one_opens_and_late_data_reopens_its_own() -> None:
    from digitaltwin.services.detection import Touched, closed_intervals

    def touched(start_min: int, end_min: int) -> Touched:
        return Touched("a", "power", T0 + timedelta(minutes=start_min), T0 + timedelta(minutes=end_min), 2)

    starts, newest = closed_intervals(touched(1, 14), 900, None)  # inside the first quarter hour: still open
    assert starts == [] and newest == T0
    starts, newest = closed_intervals(touched(16, 16), 900, newest)  # the next one opens: 10:00 closes
    assert starts == [T0] and newest == T0 + timedelta(minutes=15)
    starts, newest = closed_intervals(touched(20, 50), 900, newest)  # spans 10:15-10:45: 10:15 and 10:30 closed
    assert starts == [T0 + timedelta(minutes=15), T0 + timedelta(minutes=30)] and newest == T0 + timedelta(minutes=45)
    starts, same = closed_intervals(touched(3, 4), 900, newest)  # late data: its own closed interval again
    assert starts == [T0] and same == newest
    starts, _ = closed_intervals(touched(46, 47), 900, newest)  # more of the open interval: nothing closed
    assert starts == []


def test_monitoring_settings_name_the_variable() -> None:
    from pydantic import ValidationError as SettingsError

    from digitaltwin.config import Settings

    assert Settings(_env_file=None, FORECAST_ISSUE_LOCAL_TIME="").forecast_issue_local_time is None  # as in .env.example
    settings = Settings(_env_file=None, FORECAST_ISSUE_LOCAL_TIME="06:00", FORECAST_ISSUE_ASSETS="a, b")
    assert settings.forecast_issue_local_time.hour == 6 and settings.forecast_issue_assets == ["a", "b"]
    for name, value in [("FORECAST_ISSUE_LOCAL_TIME", "25:00"), ("DRIFT_FACTOR", "1.0"), ("ALARM_CLEAR_AFTER", "0"),
                        ("STALE_MISSED_INTERVALS", "0.5"), ("WEBHOOK_MAX_ATTEMPTS", "0"), ("DRIFT_CLEAR_RATIO", "1.5")]:
        with pytest.raises(SettingsError) as exc:
            Settings(_env_file=None, **{name: value})
        assert name in str(exc.value)
