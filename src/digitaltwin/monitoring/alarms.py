"""The alarm model every detector feeds: a :class:`Detection` in, an alarm life cycle out.

A detector (rule, model, stale-device, forecast drift) looks at data and returns one
:class:`Detection` per asset and alarm type it evaluated, *active or not*: an inactive
detection says "the condition is absent now", which is what clears an alarm. The life cycle
(:func:`transition`) is pure; storage and notification live in ``services/alarms.py``.

Life cycle (one open alarm per asset and type, deduplicated; cleared ones stay as history)::

    (none) --active detection--> ACTIVE --operator acknowledges--> ACKNOWLEDGED
    ACTIVE | ACKNOWLEDGED --condition absent for `clear_after` evaluations--> CLEARED (by "auto")
    ACTIVE | ACKNOWLEDGED --operator clears--> CLEARED (by the operator)

While open, further active detections update ``last_seen_at``, the evidence and the score,
and raise the severity (never lower it). After a clear, the next active detection opens a
new alarm. Hysteresis is twofold: detectors raise and clear at different levels where they
have a level (forecast drift: raise above ``factor``, clear below ``factor * clear_ratio``),
and the life cycle clears only after ``clear_after`` consecutive inactive evaluations, so a
condition flapping at its threshold does not raise and clear on every batch.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any

from digitaltwin.domain.errors import ConflictError, ValidationError

#: Alarm type names: lower-case words with ``_`` (``stale_device``, ``forecast_drift``, ``flatline``).
TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


class Severity(StrEnum):
    """How urgent an alarm is; ordered ``info < warning < critical``."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class AlarmState(StrEnum):
    """Where an alarm is in its life cycle (see the module docstring)."""

    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"


#: The ``cleared_by`` of alarms cleared because their condition ended.
AUTO = "auto"


@dataclass(frozen=True, slots=True)
class Detection:
    """What any detector returns for one asset and alarm type.

    Attributes:
        asset_id: the asset evaluated.
        type: alarm type (:data:`TYPE_PATTERN`), e.g. ``stale_device``.
        severity: how urgent the condition is.
        start, end: UTC instants of the data the detection covers (the anomalous interval when
            active; the evaluated span otherwise).
        score: the detector's strength of the finding (e.g. missed intervals, error ratio,
            tail probability's ``-log10``); larger is worse.
        evidence: JSON-able facts for the operator; by convention ``actual`` (the observed value)
            and ``expected`` (``[low, high]``, the range it should have been in), plus any
            detector-specific keys (see :func:`evidence`).
        active: the condition holds now; ``False`` reports it absent (used to auto-clear).

    Raises:
        ValidationError: naming the field, for a bad type, naive or reversed instants, or a
            score that is not a finite number.
    """

    asset_id: str
    type: str
    severity: Severity
    start: datetime
    end: datetime
    score: float
    evidence: dict[str, Any] = field(default_factory=dict)
    active: bool = True

    def __post_init__(self) -> None:
        if not TYPE_PATTERN.match(self.type):
            raise ValidationError(f"alarm type {self.type!r} must match {TYPE_PATTERN.pattern}", field="type")
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValidationError("detection instants must carry a timezone", field="start")
        if self.end < self.start:
            raise ValidationError("detection end is before its start", field="end")
        if not math.isfinite(self.score):
            raise ValidationError("detection score must be a finite number", field="score")
        object.__setattr__(self, "severity", Severity(self.severity))


def evidence(actual: float | None, low: float | None, high: float | None, **extra: Any) -> dict[str, Any]:
    """The conventional evidence dict: ``{"actual": v, "expected": [low, high], **extra}``
    (non-finite floats become ``None`` so the evidence stays JSON)."""

    def clean(value: float | None) -> float | None:
        return None if value is None or not math.isfinite(float(value)) else float(value)

    return {"actual": clean(actual), "expected": [clean(low), clean(high)], **extra}


@dataclass(frozen=True, slots=True)
class Alarm:
    """One alarm as stored (``id`` None before it is stored). Instants are UTC."""

    id: int | None
    asset_id: str
    site_id: str
    type: str
    severity: Severity
    state: AlarmState
    started_at: datetime
    last_seen_at: datetime
    score: float
    evidence: dict[str, Any]
    inactive_count: int = 0
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    acknowledged_comment: str | None = None
    cleared_at: datetime | None = None
    cleared_by: str | None = None
    cleared_comment: str | None = None

    @property
    def open(self) -> bool:
        return self.state is not AlarmState.CLEARED


@dataclass(frozen=True, slots=True)
class Hysteresis:
    """How many consecutive inactive detections clear an open alarm (at least 1)."""

    clear_after: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.clear_after, int) or self.clear_after < 1:
            raise ValidationError("clear_after must be an integer >= 1", field="clear_after")


class Change(Enum):
    """What a detection did to the open alarm of its asset and type."""

    NONE = "none"  # nothing open and nothing detected
    RAISED = "raised"  # a new alarm
    UPDATED = "updated"  # still active: last seen, evidence, score (no notification)
    ESCALATED = "escalated"  # still active, at a higher severity (notified)
    CLEARING = "clearing"  # condition absent, not yet for `clear_after` evaluations
    CLEARED = "cleared"  # condition absent long enough: auto-cleared (notified)


def transition(current: Alarm | None, detection: Detection, *, site_id: str, now: datetime,
               hysteresis: Hysteresis = Hysteresis()) -> tuple[Change, Alarm | None]:
    """Apply ``detection`` to the open alarm ``current`` of its asset and type (None if none).

    Returns:
        The change and the alarm after it (``None`` for :attr:`Change.NONE`); a raised alarm has
        ``id`` None. ``now`` stamps an auto-clear.
    """
    if current is None or not current.open:
        if not detection.active:
            return Change.NONE, None
        alarm = Alarm(
            id=None, asset_id=detection.asset_id, site_id=site_id, type=detection.type, severity=detection.severity,
            state=AlarmState.ACTIVE, started_at=detection.start, last_seen_at=detection.end, score=detection.score,
            evidence=dict(detection.evidence),
        )
        return Change.RAISED, alarm
    if detection.active:
        escalated = detection.severity.rank > current.severity.rank
        alarm = replace(
            current,
            severity=detection.severity if escalated else current.severity,
            last_seen_at=max(current.last_seen_at, detection.end),
            started_at=min(current.started_at, detection.start),  # late data may show an earlier start
            score=detection.score,
            evidence=dict(detection.evidence),
            inactive_count=0,
        )
        return (Change.ESCALATED if escalated else Change.UPDATED), alarm
    count = current.inactive_count + 1
    if count >= hysteresis.clear_after:
        return Change.CLEARED, replace(
            current, state=AlarmState.CLEARED, inactive_count=count, cleared_at=now, cleared_by=AUTO,
            cleared_comment="condition ended", evidence={**current.evidence, "cleared_with": dict(detection.evidence)},
        )
    return Change.CLEARING, replace(current, inactive_count=count)


def acknowledge(alarm: Alarm, *, by: str, comment: str | None, now: datetime) -> Alarm:
    """``ACTIVE -> ACKNOWLEDGED`` by an operator.

    Raises:
        ConflictError: naming ``state`` when the alarm is not active (already acknowledged or cleared).
    """
    if alarm.state is not AlarmState.ACTIVE:
        raise ConflictError(f"alarm {alarm.id} is {alarm.state.value}; only an active alarm can be acknowledged", field="state")
    return replace(alarm, state=AlarmState.ACKNOWLEDGED, acknowledged_at=now, acknowledged_by=by, acknowledged_comment=comment)


def clear(alarm: Alarm, *, by: str, comment: str | None, now: datetime) -> Alarm:
    """``ACTIVE | ACKNOWLEDGED -> CLEARED`` by an operator; if the condition persists the next
    detection opens a new alarm.

    Raises:
        ConflictError: naming ``state`` when the alarm is already cleared.
    """
    if not alarm.open:
        raise ConflictError(f"alarm {alarm.id} is already cleared", field="state")
    return replace(alarm, state=AlarmState.CLEARED, cleared_at=now, cleared_by=by, cleared_comment=comment)
