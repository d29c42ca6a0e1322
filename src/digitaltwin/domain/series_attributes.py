"""What a series declares about itself, and what an asset declares about its energy flow.

Series attributes (``PATCH /api/v1/assets/{asset_id}/series/{quantity}``), all optional:

* ``sign_convention``: ``import_positive`` (positive values are energy drawn from the grid, i.e.
  consumed) or ``export_positive`` (positive values are energy delivered, i.e. produced). Applies
  to ``power`` and ``energy`` series; the default follows the asset's ``energy_flow``.
* ``direction``: ``import`` or ``export``, the direction a counter register counts (OBIS 1.8.0 is
  import, 2.8.0 export). Applies to ``energy_total`` (default from the asset's ``energy_flow``);
  ``energy_export_total`` and ``energy_export`` are export by definition.
* ``counter_modulus_kwh``: the register modulus in kWh (the value it wraps to 0 at), or
  ``counter_modulus`` with ``counter_modulus_unit`` in the register's raw unit (``Wh``, ``kWh``,
  ``MWh``), stored converted to ``counter_modulus_kwh``. Counters only.
* ``resolution_kwh``: one register step in kWh (default 1 kWh), allowed above the power limit.
* ``meter_serial``: the serial of the meter now installed (set by a meter replacement).

Asset attributes (on the asset, ``PATCH /api/v1/assets/{asset_id}``):

* ``energy_flow``: ``consume``, ``produce`` or ``both``; default ``produce`` for ``pv``, ``both``
  for ``battery`` and ``consume`` otherwise (an EV charger consumes unless it declares ``both``
  for vehicle-to-grid).
* ``connection_capacity_kw``: the grid connection's capacity (kW); the power limit of the
  plausibility check when the asset has no ``rated_power_kw``.
"""

from __future__ import annotations

import math
from typing import Any

from digitaltwin.domain.errors import ValidationError
from digitaltwin.domain.units import SeriesKind, quantity_spec, to_canonical

SIGN_CONVENTIONS = ("import_positive", "export_positive")
DIRECTIONS = ("import", "export")
ENERGY_FLOWS = ("consume", "produce", "both")
#: Quantities that are the export side by definition.
EXPORT_QUANTITIES = frozenset({"energy_export_total", "energy_export"})
_SIGNED = frozenset({"power", "energy"})
_KEYS = ("sign_convention", "direction", "counter_modulus_kwh", "counter_modulus", "counter_modulus_unit", "resolution_kwh", "meter_serial")


def _positive(value: Any, *, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValidationError(f"{field} must be a positive number", field=field)
    return float(value)


def _choice(value: Any, choices: tuple[str, ...], *, field: str) -> str:
    if value not in choices:
        raise ValidationError(f"{field} must be one of {', '.join(choices)}", field=field)
    return str(value)


def check_series_attributes(quantity: str, attributes: Any) -> dict[str, Any]:
    """Validated, normalised attributes of a series of ``quantity`` (see the module docstring).

    Returns:
        The attributes to store: ``counter_modulus`` and ``counter_modulus_unit`` become
        ``counter_modulus_kwh``.

    Raises:
        ValidationError: naming the offending key (``attributes`` when it is not an object).
    """
    spec = quantity_spec(quantity)
    if not isinstance(attributes, dict):
        raise ValidationError("attributes must be a JSON object", field="attributes")
    for key in attributes:
        if key not in _KEYS:
            raise ValidationError(f"unknown series attribute {key!r}; known: {', '.join(_KEYS)}", field=str(key))
    out: dict[str, Any] = {}
    if "sign_convention" in attributes:
        if quantity not in _SIGNED:
            raise ValidationError(f"sign_convention applies to power and energy, not {quantity}", field="sign_convention")
        out["sign_convention"] = _choice(attributes["sign_convention"], SIGN_CONVENTIONS, field="sign_convention")
    if "direction" in attributes:
        direction = _choice(attributes["direction"], DIRECTIONS, field="direction")
        if spec.kind is not SeriesKind.CUMULATIVE and quantity not in EXPORT_QUANTITIES:
            raise ValidationError(f"direction applies to counter registers, not {quantity}; use sign_convention", field="direction")
        if quantity in EXPORT_QUANTITIES and direction != "export":
            raise ValidationError(f"{quantity} is an export register by definition", field="direction")
        out["direction"] = direction
    if "counter_modulus_kwh" in attributes or "counter_modulus" in attributes:
        if spec.kind is not SeriesKind.CUMULATIVE:
            field = "counter_modulus_kwh" if "counter_modulus_kwh" in attributes else "counter_modulus"
            raise ValidationError(f"a register modulus applies to counters, not {quantity}", field=field)
        if "counter_modulus_kwh" in attributes and "counter_modulus" in attributes:
            raise ValidationError("give counter_modulus_kwh or counter_modulus with its unit, not both", field="counter_modulus")
        if "counter_modulus_kwh" in attributes:
            out["counter_modulus_kwh"] = _positive(attributes["counter_modulus_kwh"], field="counter_modulus_kwh")
        else:
            raw = _positive(attributes["counter_modulus"], field="counter_modulus")
            unit = attributes.get("counter_modulus_unit")
            if not isinstance(unit, str):
                raise ValidationError("counter_modulus needs counter_modulus_unit (Wh, kWh or MWh)", field="counter_modulus_unit")
            out["counter_modulus_kwh"] = to_canonical(quantity, raw, unit, field="counter_modulus_unit")
    elif "counter_modulus_unit" in attributes:
        raise ValidationError("counter_modulus_unit without counter_modulus", field="counter_modulus_unit")
    if "resolution_kwh" in attributes:
        out["resolution_kwh"] = _positive(attributes["resolution_kwh"], field="resolution_kwh")
    if "meter_serial" in attributes:
        out["meter_serial"] = check_serial(attributes["meter_serial"], field="meter_serial")
    return out


def check_serial(value: Any, *, field: str) -> str:
    """A meter serial: 1-64 printable characters.

    Raises:
        ValidationError: naming ``field``.
    """
    if not isinstance(value, str) or not 0 < len(value) <= 64 or not value.isprintable():
        raise ValidationError("a meter serial is 1-64 printable characters", field=field)
    return value


def check_asset_energy_attributes(attributes: dict[str, Any]) -> None:
    """Check ``energy_flow`` and ``connection_capacity_kw`` of an asset's attributes, when present.

    Raises:
        ValidationError: naming the key.
    """
    if "energy_flow" in attributes:
        _choice(attributes["energy_flow"], ENERGY_FLOWS, field="energy_flow")
    if "connection_capacity_kw" in attributes:
        _positive(attributes["connection_capacity_kw"], field="connection_capacity_kw")


def energy_flow(kind: str, attributes: dict[str, Any]) -> str:
    """The asset's declared ``energy_flow``, else the default of its kind (``pv`` produces, ``battery`` both)."""
    declared = attributes.get("energy_flow")
    if declared in ENERGY_FLOWS:
        return str(declared)
    return {"pv": "produce", "battery": "both"}.get(kind, "consume")


def export_positive(quantity: str, series_attributes: dict[str, Any], flow: str) -> bool:
    """Whether positive values of a series count as export (see the module docstring).

    Export quantities always do; a counter follows its ``direction``; a signed series its
    ``sign_convention``; the default is export for a producing asset, import otherwise.
    """
    if quantity in EXPORT_QUANTITIES:
        return True
    if "direction" in series_attributes:
        return bool(series_attributes["direction"] == "export")
    if "sign_convention" in series_attributes:
        return bool(series_attributes["sign_convention"] == "export_positive")
    return flow == "produce"
