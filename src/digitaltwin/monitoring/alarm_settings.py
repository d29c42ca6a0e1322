"""Per-asset detector settings: one JSON object per asset and detector, checked by the detector's own rules.

Each detector registers how its settings are checked (:func:`register`); a check builds the
detector's settings object, whose constructor raises :class:`ValidationError` naming the field.
:func:`check` adds the detector's name to that field (``stale_device.missed_intervals``), refuses
unknown keys by name and unknown detectors naming ``detector``, so the API answers a 422 that
names exactly what is wrong. Anomaly detectors register theirs the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from digitaltwin.domain.errors import ValidationError
from digitaltwin.monitoring.skill import DRIFT_TYPE, DriftSettings
from digitaltwin.monitoring.stale_device import TYPE as STALE_TYPE
from digitaltwin.monitoring.stale_device import StaleSettings

_FACTORIES: dict[str, Callable[..., Any]] = {}


def register(detector: str, factory: Callable[..., Any]) -> None:
    """Check the settings of ``detector`` with ``factory(**settings)`` (a dataclass whose fields are the keys)."""
    _FACTORIES[detector] = factory


def detectors() -> list[str]:
    """Detectors with settings, sorted."""
    return sorted(_FACTORIES)


def check(detector: str, settings: object) -> Any:
    """The settings object of ``detector`` built from the JSON object ``settings``.

    Raises:
        ValidationError: naming ``detector`` (unknown), ``settings`` (not an object), or
            ``<detector>.<key>`` (an unknown key or a bad value).
    """
    factory = _FACTORIES.get(detector)
    if factory is None:
        raise ValidationError(f"unknown detector {detector!r}; one of {', '.join(detectors())}", field="detector")
    if not isinstance(settings, dict):
        raise ValidationError("settings must be a JSON object", field="settings")
    if dataclasses.is_dataclass(factory):
        known = {f.name for f in dataclasses.fields(factory)}
        for key in settings:
            if key not in known:
                raise ValidationError(f"unknown setting {key!r}; one of {', '.join(sorted(known))}", field=f"{detector}.{key}")
    for key, value in settings.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValidationError("must be a number", field=f"{detector}.{key}")
    try:
        return factory(**settings)
    except ValidationError as exc:
        raise ValidationError(exc.message, field=f"{detector}.{exc.field}") from None


def merged(detector: str, defaults: Any, overrides: dict[str, Any] | None) -> Any:
    """``defaults`` with the stored ``overrides`` of one asset applied (checked again)."""
    if not overrides:
        return defaults
    return check(detector, {**dataclasses.asdict(defaults), **overrides})


register(STALE_TYPE, StaleSettings)
register(DRIFT_TYPE, DriftSettings)
