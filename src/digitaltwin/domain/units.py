"""Quantities, series kinds and unit conversion to canonical units.

Every stored value is in its quantity's canonical unit (power in kW, energy in
kWh, ...). Conversion happens once, at the edge, through :func:`to_canonical`;
an unknown unit is rejected by name (:class:`~digitaltwin.domain.errors.UnknownUnitError`)
rather than guessed, because a Wh/kWh mix-up silently scales energy and cost by
1000 (field case ``payload/wh-vs-kwh-units``).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from digitaltwin.domain.errors import UnknownUnitError, ValidationError


class SeriesKind(str, enum.Enum):
    """How the values of a series relate to time.

    * ``instantaneous``: a sample at an instant (power in kW, temperature).
    * ``interval``: an amount over the interval starting at the timestamp
      (energy in kWh per 15-min interval).
    * ``cumulative``: a monotonically increasing counter (meter register in kWh),
      like Home Assistant's ``total_increasing``.
    """

    INSTANTANEOUS = "instantaneous"
    INTERVAL = "interval"
    CUMULATIVE = "cumulative"


@dataclass(frozen=True, slots=True)
class QuantitySpec:
    """A physical quantity with its canonical unit and accepted input units.

    ``factors`` maps each accepted unit spelling to the factor that converts a
    value in that unit into the canonical unit (value_canonical = value * factor),
    or to an affine pair (factor, offset) for temperatures.

    ``bounds`` is the plausible range of a canonical value. Power and energy
    bounds are sized to the largest single plants (10 GW, 10 GWh per interval),
    not to one asset, so they only catch unit mix-ups, overflow and garbage.
    """

    name: str
    kind: SeriesKind
    canonical_unit: str
    factors: dict[str, tuple[float, float]]
    bounds: tuple[float, float] = (-1e7, 1e7)


def _scaled(base: str) -> dict[str, tuple[float, float]]:
    """Accepted spellings of W/kW/MW-style units scaled to the k-prefixed unit."""
    lower = base.lower()
    out = {
        base: (1e-3, 0.0),
        "k" + base: (1.0, 0.0),
        "K" + base: (1.0, 0.0),
        "k" + lower: (1.0, 0.0),
        "M" + base: (1e3, 0.0),
    }
    if lower != base:
        out[lower] = (1e-3, 0.0)
    return out


_ENERGY_UNITS = _scaled("Wh") | {"KWH": (1.0, 0.0)}
_POWER_UNITS = _scaled("W")
_REACTIVE_ENERGY_UNITS = {"varh": (1e-3, 0.0), "kvarh": (1.0, 0.0), "kVArh": (1.0, 0.0), "kVarh": (1.0, 0.0), "Mvarh": (1e3, 0.0)}
_INTENSITY_UNITS = {
    unit: (factor, 0.0)
    for units, factor in (
        (("gCO2/kWh", "g/kWh", "gCO2e/kWh", "kgCO2/MWh", "kg/MWh"), 1.0),
        (("kgCO2/kWh", "kg/kWh", "kgCO2e/kWh", "tCO2/MWh", "t/MWh", "tCO2e/MWh"), 1e3),
    )
    for unit in units
}
_REACTIVE_POWER_UNITS = {"var": (1e-3, 0.0), "kvar": (1.0, 0.0), "kVAr": (1.0, 0.0), "kVar": (1.0, 0.0), "Mvar": (1e3, 0.0)}

QUANTITIES: dict[str, QuantitySpec] = {
    spec.name: spec
    for spec in (
        QuantitySpec("power", SeriesKind.INSTANTANEOUS, "kW", _POWER_UNITS),
        QuantitySpec("energy", SeriesKind.INTERVAL, "kWh", _ENERGY_UNITS),
        QuantitySpec("energy_total", SeriesKind.CUMULATIVE, "kWh", _ENERGY_UNITS, (0.0, 1e12)),
        # The export side of a grid connection metered in both directions (OBIS 2.8.0 register,
        # 2.29.0 interval profile); energy_total / energy are the import side (1.8.0 / 1.29.0).
        QuantitySpec("energy_export_total", SeriesKind.CUMULATIVE, "kWh", _ENERGY_UNITS, (0.0, 1e12)),
        QuantitySpec("energy_export", SeriesKind.INTERVAL, "kWh", _ENERGY_UNITS, (0.0, 1e7)),
        QuantitySpec("reactive_power", SeriesKind.INSTANTANEOUS, "kvar", _REACTIVE_POWER_UNITS),
        QuantitySpec("reactive_energy", SeriesKind.INTERVAL, "kvarh", _REACTIVE_ENERGY_UNITS),
        QuantitySpec("voltage", SeriesKind.INSTANTANEOUS, "V", {"V": (1.0, 0.0), "kV": (1e3, 0.0), "mV": (1e-3, 0.0)}, (-2e6, 2e6)),
        QuantitySpec("current", SeriesKind.INSTANTANEOUS, "A", {"A": (1.0, 0.0), "mA": (1e-3, 0.0), "kA": (1e3, 0.0)}, (-1e6, 1e6)),
        QuantitySpec(
            "temperature",
            SeriesKind.INSTANTANEOUS,
            "degC",
            {"degC": (1.0, 0.0), "°C": (1.0, 0.0), "C": (1.0, 0.0), "K": (1.0, -273.15), "degF": (5 / 9, -32 * 5 / 9), "°F": (5 / 9, -32 * 5 / 9)},
            (-100.0, 1000.0),
        ),
        QuantitySpec("irradiance", SeriesKind.INSTANTANEOUS, "W/m2", {"W/m2": (1.0, 0.0), "W/m²": (1.0, 0.0), "kW/m2": (1e3, 0.0)}, (-50.0, 2000.0)),
        QuantitySpec("power_factor", SeriesKind.INSTANTANEOUS, "%", {"%": (1.0, 0.0), "ratio": (100.0, 0.0)}, (-100.0, 100.0)),
        # accounting: a dynamic energy price (day-ahead market) per kWh in the tariff's currency; negative allowed
        QuantitySpec("price", SeriesKind.INSTANTANEOUS, "per_kWh", {"per_kWh": (1.0, 0.0), "per_MWh": (1e-3, 0.0)}, (-1e5, 1e5)),
        # A battery's state of charge, in percent of its usable capacity (the scheduler's starting point).
        QuantitySpec("state_of_charge", SeriesKind.INSTANTANEOUS, "%", {"%": (1.0, 0.0), "ratio": (100.0, 0.0)}, (0.0, 100.0)),
        QuantitySpec("co2", SeriesKind.INTERVAL, "kg", {"kg": (1.0, 0.0), "g": (1e-3, 0.0), "t": (1e3, 0.0), "tCO2": (1e3, 0.0), "kgCO2": (1.0, 0.0)}, (0.0, 1e9)),
        # Grid carbon intensity: a rate, not an amount; the value holds over the interval starting at
        # its timestamp (accounting.carbon averages it, never sums it). 1 kg/kWh = 1 t/MWh = 1000 g/kWh.
        QuantitySpec("carbon_intensity", SeriesKind.INTERVAL, "gCO2/kWh", _INTENSITY_UNITS, (0.0, 2000.0)),
        # Production counter (units produced, e.g. tonnes of steel or pieces) for energy per unit produced.
        QuantitySpec("production_total", SeriesKind.CUMULATIVE, "unit", {"unit": (1.0, 0.0), "units": (1.0, 0.0)}, (0.0, 1e15)),
    )
}


def quantity_spec(name: str, *, field: str = "quantity") -> QuantitySpec:
    """Look up a quantity by name.

    Raises:
        ValidationError: naming ``field`` when the quantity is unknown.
    """
    try:
        return QUANTITIES[name]
    except (KeyError, TypeError):
        raise ValidationError(
            f"unknown quantity {name!r}; known: {', '.join(sorted(QUANTITIES))}", field=field
        ) from None


def check_range(quantity: str, value: float, *, field: str) -> float:
    """Return ``value`` (canonical unit) if it lies within the quantity's plausible ``bounds``.

    Raises:
        ValidationError: naming ``field``, with the range.
    """
    low, high = quantity_spec(quantity).bounds
    if not low <= value <= high:
        unit = QUANTITIES[quantity].canonical_unit
        raise ValidationError(f"{value:g} {unit} is outside the plausible range {low:g}..{high:g} {unit}", field=field)
    return value


def accepted_units(quantity: str) -> list[str]:
    """Unit spellings accepted for ``quantity`` (empty for an unknown quantity)."""
    spec = QUANTITIES.get(quantity)
    return sorted(spec.factors) if spec else []


def to_canonical(quantity: str, value: float, unit: str | None, *, field: str = "unit") -> float:
    """Convert ``value`` given in ``unit`` to the quantity's canonical unit.

    ``unit=None`` means the value is already canonical.

    Examples: ``to_canonical("power", 2500, "W") == 2.5`` (kW);
    ``to_canonical("energy_total", 1_502_500, "Wh") == 1502.5`` (kWh).

    Raises:
        UnknownUnitError: naming ``field`` when ``unit`` is not accepted.
        ValidationError: naming ``field`` when the converted value is not finite
            (e.g. ``1e306`` MW overflows in kW); a stored Infinity would poison sums.
    """
    spec = quantity_spec(quantity)
    if unit is None:
        return value
    try:
        factor, offset = spec.factors[unit]
    except (KeyError, TypeError):
        raise UnknownUnitError(unit, quantity, field=field) from None
    converted = value * factor + offset
    if not math.isfinite(converted):
        raise ValidationError(f"{value!r} {unit} is out of range in {spec.canonical_unit}", field=field)
    return converted


def _field_aliases() -> dict[str, tuple[str, str | None]]:
    """Payload field names that carry both quantity and unit, e.g. ``power_w``.

    Generated from :data:`QUANTITIES`: ``<quantity>`` (unit from a ``unit`` key),
    ``<quantity>_<unit>`` in lower case, and for cumulative energy also
    ``energy_<unit>_total`` and ``energy_import_<unit>_total``.
    """
    aliases: dict[str, tuple[str, str | None]] = {}
    for spec in QUANTITIES.values():
        aliases[spec.name] = (spec.name, None)
        for unit in spec.factors:
            key = f"{spec.name}_{unit.lower()}"
            if key.isidentifier() and key not in aliases:
                aliases[key] = (spec.name, unit)
    for unit in ("Wh", "kWh", "MWh"):
        aliases[f"energy_{unit.lower()}_total"] = ("energy_total", unit)
        aliases[f"energy_import_{unit.lower()}_total"] = ("energy_total", unit)
        aliases[f"energy_total_{unit.lower()}"] = ("energy_total", unit)
        aliases[f"energy_export_{unit.lower()}_total"] = ("energy_export_total", unit)
    # The replaced system's MQTT contract names its power field power_kW.
    aliases["power_kW"] = ("power", "kW")
    aliases["power_W"] = ("power", "W")
    return aliases


#: Measurement field name -> (quantity, unit or None when a ``unit`` key applies).
FIELD_ALIASES: dict[str, tuple[str, str | None]] = _field_aliases()
