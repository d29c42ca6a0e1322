"""What the detectors hand to an alarm layer: typed, scored events with their evidence.

An :class:`AnomalyEvent` spans ``[start, end)`` (UTC interval starts, ``end`` exclusive) and
carries the surprise score (``-log10`` tail probability, see :mod:`.tails`), a severity, and the
evidence an operator needs: the actual value and the expected value and range at the worst
interval. Events are plain frozen dataclasses with :meth:`AnomalyEvent.to_dict` for JSON.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from digitaltwin.monitoring.alarms import Severity  # one severity scale for detections and alarms


class AnomalyType(str, enum.Enum):
    """Which detector raised an event."""

    MODEL_RESIDUAL = "model_residual"  # actual outside the forecaster's calibrated distribution
    PROFILE_RESIDUAL = "profile_residual"  # actual outside the robust hour-of-week profile
    FLATLINE = "flatline"  # stuck or frozen meter
    ZERO_IN_BUSY_HOURS = "zero_in_busy_hours"
    SPIKE = "spike"
    DATA_GAP = "data_gap"
    STALE_DEVICE = "stale_device"
    METER_RESET = "meter_reset"
    METER_ROLLOVER = "meter_rollover"
    METER_REPLACEMENT = "meter_replacement"
    METER_GLITCH = "meter_glitch"
    QUARANTINED_VALUE = "quarantined_value"


@dataclass(frozen=True)
class AnomalyEvent:
    """One anomaly of one series.

    Attributes:
        type: the detector that raised it.
        severity: see :class:`Severity`.
        start: UTC start of the first interval.
        end: UTC end of the event (start of the first interval after it); ``end > start``.
        score: highest surprise within the event (``-log10`` tail probability; ``inf`` for rules
            that are certain, e.g. a gap).
        actual: the reading at the worst interval (target unit, e.g. kWh), ``None`` when missing.
        expected: the expected value there, ``None`` when the detector has none.
        expected_low, expected_high: the expected range there (same unit), ``None`` when none.
        detail: a sentence for a person, with the values involved.
    """

    type: AnomalyType
    severity: Severity
    start: pd.Timestamp
    end: pd.Timestamp
    score: float
    actual: float | None = None
    expected: float | None = None
    expected_low: float | None = None
    expected_high: float | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: enums as their values, stamps as ISO 8601 UTC, ``inf`` score as ``None``."""
        return {
            "type": self.type.value,
            "severity": self.severity.value,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "score": None if not np.isfinite(self.score) else float(self.score),
            "actual": self.actual,
            "expected": self.expected,
            "expected_low": self.expected_low,
            "expected_high": self.expected_high,
            "detail": self.detail,
        }


def optional(value: float) -> float | None:
    """``value`` as a float, ``None`` when it is NaN (evidence a detector does not have)."""
    return None if value is None or not np.isfinite(value) else float(value)


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(first, last + 1)`` index pairs of the runs of ``True`` in a boolean array."""
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return []
    edges = np.diff(np.concatenate([[0], m.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))
