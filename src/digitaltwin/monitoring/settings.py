"""Validated detector settings (pydantic), so an API can expose them and answer bad values with field-named 422s.

Every duration is given in hours and turned into intervals with the series' own cadence
(:func:`intervals_for`), so one setting serves 15-minute and hourly meters alike.
:func:`parse_settings` turns pydantic's errors into the product's
:class:`~digitaltwin.domain.errors.ValidationError` naming the dotted field (``"persistence.k"``).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic import ValidationError as PydanticValidationError

from digitaltwin.domain.errors import ValidationError


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PersistenceSettings(_Settings):
    """k-of-n persistence: an interval is flagged only when some window of ``n`` consecutive intervals
    containing it holds at least ``k`` intervals at or above the threshold (see :mod:`.persistence`).

    Defaults 3 of 6: anomalies in the LEAD 1.0 buildings last 3 to 73 hours, and on the profile
    detector alone 3-of-6 gave the highest mean ROC AUC (0.911) of 1/1 (0.860), 2/3, 3/4, 4/6, 6/12 and
    8/12 (0.896 to 0.909); one noisy interval alone never raises an alarm.
    """

    k: int = Field(3, ge=1, le=96, description="intervals at or above the threshold within the window")
    n: int = Field(6, ge=1, le=96, description="window length in intervals")

    @field_validator("n")
    @classmethod
    def _n_covers_k(cls, value: int, info: ValidationInfo) -> int:
        if "k" in info.data and value < info.data["k"]:
            raise ValueError(f"n must be at least k ({info.data['k']})")
        return value


class ProfileSettings(_Settings):
    """The seasonal profile baseline: robust hour-of-week statistics of the trailing weeks.

    Attributes:
        weeks: trailing weeks per hour-of-week slot (median and MAD of those values).
        min_weeks: fewest past values per slot before the profile scores (earlier: no score).
        scale_floor_fraction: the spread is at least this share of the slot's median, so a slot whose
            past weeks were nearly identical does not turn a 10 % change into an alarm. The model's spread
            has the same floor. 0.15: on the LEAD buildings 0.05 left many unlabelled small deviations
            scoring as high as the labelled outages (pooled precision 0.11 at the threshold) and 0.25
            pushed real ones below it (bench/anomaly_lead.py; measured when model and profile scores
            were combined by their maximum, before the agreement rule of :mod:`.detector`).
    """

    weeks: int = Field(8, ge=2, le=104)
    min_weeks: int = Field(2, ge=1, le=52)
    scale_floor_fraction: float = Field(0.15, ge=0.0, le=1.0)

    @field_validator("min_weeks")
    @classmethod
    def _min_within_weeks(cls, value: int, info: ValidationInfo) -> int:
        if "weeks" in info.data and value > info.data["weeks"]:
            raise ValueError(f"min_weeks must not exceed weeks ({info.data['weeks']})")
        return value


class ModelSettings(_Settings):
    """The model-based detector: a forecaster refitted on past data only, scored a block (a week) ahead.

    Attributes:
        enabled: use the forecaster (otherwise only the profile baseline scores).
        algorithm: registry name of the forecaster (see ``digitaltwin.forecasting.ALGORITHMS``).
        horizon_days: each block of this many days is predicted from the history before it. A week
            rather than a day: every lag the forecaster reads is then at least a week old, so a
            multi-day anomaly (a holiday week, a partial outage) is not carried into its own expectation
            through yesterday's lags.
        refit_every_days: days between refits; each refit sees only data before its first scored block.
        min_history_days: history needed before the first fit; before that the profile takes over.
        exclude_flagged: intervals already flagged are left out (NaN) of later refits and lags, so an
            outage does not teach the model that outages are normal. Off by default: it also stops the
            model from ever learning a lasting change of regime (one LEAD building moved to a new
            weekday schedule in September and stayed flagged to December), and the L1 objective
            already shrugs off outages (mean ROC AUC 0.933 with, 0.942 without, on LEAD, measured with
            a 5 % spread floor and the maximum combination).
    """

    enabled: bool = True
    algorithm: str = Field("lightgbm", min_length=1, max_length=64)
    horizon_days: int = Field(7, ge=1, le=14)
    refit_every_days: int = Field(28, ge=1, le=366)
    min_history_days: int = Field(28, ge=7, le=730)
    exclude_flagged: bool = False

    @field_validator("algorithm")
    @classmethod
    def _known_algorithm(cls, value: str) -> str:
        from digitaltwin.forecasting import ALGORITHMS, ALIASES

        if value not in ALGORITHMS and value not in ALIASES:
            raise ValueError(f"unknown algorithm {value!r}; known: {', '.join(sorted(ALGORITHMS))}")
        return value


class RuleSettings(_Settings):
    """Thresholds of the rule detectors (:mod:`.rules`); durations in hours.

    Attributes:
        flatline_hours: a run of equal readings at least this long is a stuck or frozen meter.
        flatline_tolerance: readings within this share of the run's level count as equal.
        zero_fraction: a reading at or below this share of the expected value is "zero" ...
        busy_fraction: ... when the expected value is at least this share of the series' typical
            (median) expected value, i.e. in normally busy hours.
        spike_z: a single interval above both neighbours by this many robust spreads of the
            interval-to-interval changes is a spike.
        stale_intervals: no reading for this many expected intervals (per series cadence) makes a
            device stale; shorter holes are data gaps.
    """

    flatline_hours: float = Field(6.0, gt=0, le=24 * 14)
    flatline_tolerance: float = Field(1e-6, ge=0, le=0.1)
    zero_fraction: float = Field(0.05, ge=0, le=0.5)
    busy_fraction: float = Field(0.5, ge=0, le=10)
    spike_z: float = Field(8.0, gt=0, le=1000)
    stale_intervals: int = Field(4, ge=1, le=10_000)


class DetectorSettings(_Settings):
    """All settings of :class:`~digitaltwin.monitoring.detector.ConsumptionDetector`.

    Attributes:
        threshold: surprise (``-log10`` of the tail probability, see :mod:`.tails`) at or above which
            an interval counts towards persistence; 4.0 means a 1-in-10,000 deviation. Chosen once
            and globally (never per building) on the pooled LEAD buildings (bench/anomaly_lead.py,
            which states it with its figures): 3 to 6 gave a pooled F1 of 0.54 to 0.59, 4.0 gave 0.58.
        critical_margin: surprise above ``threshold`` from which an event is critical, not a warning.
    """

    threshold: float = Field(4.0, gt=0, le=300)
    critical_margin: float = Field(3.0, ge=0, le=300)
    persistence: PersistenceSettings = PersistenceSettings()
    profile: ProfileSettings = ProfileSettings()
    model: ModelSettings = ModelSettings()
    rules: RuleSettings = RuleSettings()


def parse_settings(data: dict[str, Any] | None) -> DetectorSettings:
    """Validate a settings mapping (defaults for what is missing).

    Raises:
        ValidationError: the first invalid value, with ``field`` the dotted path (``"rules.spike_z"``).
    """
    try:
        return DetectorSettings.model_validate(data or {})
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or None
        raise ValidationError(f"detector settings: {first.get('msg', 'invalid value')}", field=field) from exc


def intervals_for(hours: float, step_seconds: float) -> int:
    """Whole intervals of ``step_seconds`` covering ``hours`` (at least 1)."""
    if step_seconds <= 0:
        raise ValueError("step_seconds must be positive")
    return max(1, math.ceil(hours * 3600.0 / step_seconds - 1e-9))
