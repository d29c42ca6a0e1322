"""The stale-device check: a series that sent nothing for ``missed_intervals`` of its cadence.

It runs on a timer (a device that stopped sending produces no batch to react to). The
cadence of a series is its declared interval length (interval meters) or the median spacing
of its latest readings (power samples, counters); ``missed_intervals`` of 3 tolerates one
late message without an alarm. Severity grows with the silence: ``warning`` from
``missed_intervals``, ``critical`` from ``critical_intervals`` (default 4 x as many).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from digitaltwin.domain.errors import ValidationError
from digitaltwin.monitoring.alarms import Detection, Severity, evidence

TYPE = "stale_device"


@dataclass(frozen=True, slots=True)
class StaleSettings:
    """``missed_intervals``: intervals without a reading that raise a warning (>= 1);
    ``critical_intervals``: that raise it to critical (>= ``missed_intervals``).

    Raises:
        ValidationError: naming the field.
    """

    missed_intervals: float = 3.0
    critical_intervals: float = 12.0

    def __post_init__(self) -> None:
        if not (isinstance(self.missed_intervals, (int, float)) and self.missed_intervals >= 1):
            raise ValidationError("missed_intervals must be a number >= 1", field="missed_intervals")
        if not (isinstance(self.critical_intervals, (int, float)) and self.critical_intervals >= self.missed_intervals):
            raise ValidationError("critical_intervals must be a number >= missed_intervals", field="critical_intervals")


def check_stale(asset_id: str, quantity: str, *, last_ts: datetime, cadence_s: float, now: datetime,
                settings: StaleSettings = StaleSettings()) -> Detection:
    """The stale-device detection of one series at ``now`` (UTC).

    Args:
        last_ts: timestamp of the newest stored reading of the series.
        cadence_s: expected seconds between readings (> 0).

    Returns:
        An active detection when ``now - last_ts > missed_intervals * cadence_s``, else an
        inactive one; ``score`` = intervals missed; evidence ``actual`` = seconds of silence,
        ``expected`` = ``[0, missed_intervals * cadence_s]``.
    """
    if cadence_s <= 0:
        raise ValidationError("cadence must be positive", field="cadence_s")
    silence_s = max((now - last_ts).total_seconds(), 0.0)
    missed = silence_s / cadence_s
    limit_s = settings.missed_intervals * cadence_s
    severity = Severity.CRITICAL if missed >= settings.critical_intervals else Severity.WARNING
    return Detection(
        asset_id=asset_id,
        type=TYPE,
        severity=severity,
        start=last_ts + timedelta(seconds=cadence_s) if silence_s > limit_s else last_ts,
        end=now,
        score=missed,
        evidence=evidence(silence_s, 0.0, limit_s, quantity=quantity, last_reading=last_ts.isoformat(),
                          cadence_s=cadence_s, missed_intervals=round(missed, 2)),
        active=silence_s > limit_s,
    )
