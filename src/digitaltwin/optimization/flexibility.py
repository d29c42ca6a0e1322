"""Flexible assets a schedule may move: batteries, deferrable loads, curtailable PV, the grid connection.

Each is a frozen value checked on construction, so a bad setting is refused with a
:class:`~digitaltwin.domain.errors.ValidationError` naming the attribute before any
problem is built. Powers are in kW, energies in kWh, efficiencies and states of
charge (SOC) as fractions of one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import time as time_of_day

from digitaltwin.domain.errors import ValidationError

# --- Magnitudes ---------------------------------------------------------------------------------
# Bounds of every number the scheduler takes. Beyond them no real asset or tariff exists, and the
# program's coefficients would span more orders of magnitude than HiGHS's feasibility tolerances
# (1e-7) can separate: 1e308 overflows to infinity, 1e200 times a power does too.

#: Power and energy of one asset or connection: 10 GW and 10 GWh, above any single site.
MAX_POWER_KW = 1e7
MAX_ENERGY_KWH = 1e7
#: Smallest battery (kWh): 1 Wh; smaller capacities only make the stored-energy bounds noise.
MIN_CAPACITY_KWH = 1e-3
#: Smallest one-way efficiency: 0.1. Lithium-ion is 0.95-0.98 one way, lead-acid about 0.9,
#: hydrogen storage (30-40 % round trip) about 0.6; the floor keeps ``dt / efficiency`` tame.
MIN_EFFICIENCY = 0.1
#: Largest magnitude of an energy price (currency per kWh, either sign). The highest wholesale price
#: cap in force, the Australian NEM's market price cap (AUD 17,500/MWh for 2024-25, about
#: 11.5 USD/kWh; EU day-ahead coupling caps at 4 EUR/kWh, intraday at 10), stays under it in any
#: currency down to about 85,000 units per US dollar (Vietnamese dong and Indonesian rupiah included).
MAX_PRICE_PER_KWH = 1e6
#: Largest demand charge (currency per kW of the billing period's peak). Real rates reach about
#: 60 USD/kW-month (US commercial tariffs); 1e8 holds ten times that in the same weakest currency.
MAX_DEMAND_RATE_PER_KW = 1e8


def _finite(value: float, *, field: str, low: float | None = None, high: float | None = None, strict_low: bool = False) -> float:
    """``value`` as a float if finite and inside the bounds, else a ValidationError naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError("must be a finite number", field=field)
    if low is not None and (value <= low if strict_low else value < low):
        raise ValidationError(f"must be {'>' if strict_low else '>='} {low:g}", field=field)
    if high is not None and value > high:
        raise ValidationError(f"must be <= {high:g}", field=field)
    return float(value)


@dataclass(frozen=True, slots=True)
class Battery:
    """A stationary battery seen from its AC connection.

    Attributes:
        asset_id: the battery asset.
        capacity_kwh: usable capacity (kWh, :data:`MIN_CAPACITY_KWH` to :data:`MAX_ENERGY_KWH`); SOC fractions refer to it.
        max_charge_kw, max_discharge_kw: AC power limits (kW, 0 to :data:`MAX_POWER_KW`).
        charge_efficiency, discharge_efficiency: one-way efficiencies in [:data:`MIN_EFFICIENCY`, 1]; stored energy
            rises by ``charge_kw * eta_ch * dt`` and falls by ``discharge_kw / eta_dis * dt``.
        soc_min, soc_max: SOC bounds (fractions, ``0 <= soc_min <= soc_max <= 1``).
        soc_initial: SOC at the start of the horizon (from the live state in the service).
        soc_final: SOC the battery must hold at least at the end of the horizon, or None.
        degradation_cost_per_kwh: cost per kWh of throughput (charge plus discharge, AC side),
            in the tariff's currency (0 to :data:`MAX_PRICE_PER_KWH`); 0 by default.
    """

    asset_id: str
    capacity_kwh: float
    max_charge_kw: float
    max_discharge_kw: float
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    soc_min: float = 0.0
    soc_max: float = 1.0
    soc_initial: float = 0.5
    soc_final: float | None = None
    degradation_cost_per_kwh: float = 0.0

    def __post_init__(self) -> None:
        _finite(self.capacity_kwh, field="battery.capacity_kwh", low=MIN_CAPACITY_KWH, high=MAX_ENERGY_KWH)
        _finite(self.max_charge_kw, field="battery.max_charge_kw", low=0.0, high=MAX_POWER_KW)
        _finite(self.max_discharge_kw, field="battery.max_discharge_kw", low=0.0, high=MAX_POWER_KW)
        _finite(self.charge_efficiency, field="battery.charge_efficiency", low=MIN_EFFICIENCY, high=1.0)
        _finite(self.discharge_efficiency, field="battery.discharge_efficiency", low=MIN_EFFICIENCY, high=1.0)
        _finite(self.soc_min, field="battery.soc_min", low=0.0, high=1.0)
        _finite(self.soc_max, field="battery.soc_max", low=0.0, high=1.0)
        _finite(self.soc_initial, field="battery.soc_initial", low=0.0, high=1.0)
        if self.soc_final is not None:
            _finite(self.soc_final, field="battery.soc_final", low=0.0, high=1.0)
        _finite(self.degradation_cost_per_kwh, field="battery.degradation_cost_per_kwh", low=0.0, high=MAX_PRICE_PER_KWH)
        if self.soc_min > self.soc_max:
            raise ValidationError("soc_min must not exceed soc_max", field="battery.soc_min")


@dataclass(frozen=True, slots=True)
class DeferrableLoad:
    """A load that must receive an amount of energy inside a window and may be moved within it.

    Attributes:
        asset_id: the load asset.
        energy_kwh: energy to deliver inside the window (kWh, > 0).
        max_power_kw: the power it draws when on (kW, > 0).
        window_start_step, window_end_step: the window as step indices of the horizon,
            ``[start, end)``; the service converts the site's local-time window to them.
        on_off: True when the load runs only at ``max_power_kw`` or not at all (a mixed-integer
            variable per step; it then runs ``ceil(energy / (max_power * dt))`` whole steps),
            False when any power in ``[0, max_power_kw]`` is allowed.
        contiguous: True when it must run in one uninterrupted block (implies ``on_off``).
    """

    asset_id: str
    energy_kwh: float
    max_power_kw: float
    window_start_step: int
    window_end_step: int
    on_off: bool = False
    contiguous: bool = False

    def __post_init__(self) -> None:
        _finite(self.energy_kwh, field="deferrable.energy_kwh", low=0.0, high=MAX_ENERGY_KWH, strict_low=True)
        _finite(self.max_power_kw, field="deferrable.max_power_kw", low=0.0, high=MAX_POWER_KW, strict_low=True)
        if self.window_start_step < 0 or self.window_end_step <= self.window_start_step:
            raise ValidationError("the window must be a non-empty span inside the horizon", field="deferrable.window")

    @property
    def fixed_power(self) -> bool:
        """Whether the load runs only at its full power (on/off or one contiguous block)."""
        return self.on_off or self.contiguous


@dataclass(frozen=True, slots=True)
class GridConnection:
    """Limits of the site's grid connection (kW, 0 to :data:`MAX_POWER_KW`, None for unlimited)."""

    import_limit_kw: float | None = None
    export_limit_kw: float | None = None

    def __post_init__(self) -> None:
        if self.import_limit_kw is not None:
            _finite(self.import_limit_kw, field="grid.import_limit_kw", low=0.0, high=MAX_POWER_KW)
        if self.export_limit_kw is not None:
            _finite(self.export_limit_kw, field="grid.export_limit_kw", low=0.0, high=MAX_POWER_KW)


# --- Asset attributes ---------------------------------------------------------------------------
# A flexible asset declares itself in its ``attributes``: ``battery`` on a battery, ``deferrable``
# on a load that may move, ``pv`` on a PV system, ``grid_connection`` on the meter of the site's
# grid connection. :func:`check_flexibility_attributes` validates them when an asset is stored, so
# a schedule request never meets a malformed one.

BATTERY = "battery"
DEFERRABLE = "deferrable"
PV = "pv"
GRID_CONNECTION = "grid_connection"

_BATTERY_KEYS = {
    "capacity_kwh", "max_charge_kw", "max_discharge_kw", "charge_efficiency", "discharge_efficiency",
    "soc_min", "soc_max", "soc_initial", "soc_final", "degradation_cost_per_kwh",
}
_BATTERY_REQUIRED = {"capacity_kwh", "max_charge_kw", "max_discharge_kw"}
_DEFERRABLE_KEYS = {"energy_kwh", "max_power_kw", "window_start", "window_end", "on_off", "contiguous"}
_PV_KEYS = {"curtailable"}
_GRID_KEYS = {"import_limit_kw", "export_limit_kw"}


def _object(attributes: dict[str, object], name: str, allowed: set[str], required: frozenset[str] | set[str] = frozenset()) -> dict[str, object]:
    value = attributes[name]
    if not isinstance(value, dict):
        raise ValidationError(f"attributes.{name} must be an object", field=f"attributes.{name}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ValidationError(f"unknown key {unknown[0]!r}; known: {', '.join(sorted(allowed))}",
                              field=f"attributes.{name}.{unknown[0]}")
    missing = sorted(required - set(value))
    if missing:
        raise ValidationError("is required", field=f"attributes.{name}.{missing[0]}")
    return value


def _renamed(exc: ValidationError, prefix: str) -> ValidationError:
    """The same error with its field under ``attributes.`` (``battery.soc_min`` -> ``attributes.battery.soc_min``)."""
    return ValidationError(exc.message, field=f"attributes.{exc.field}" if exc.field else prefix)


def battery_from_attributes(asset_id: str, attributes: dict[str, object], *, soc_initial: float | None = None) -> Battery:
    """The :class:`Battery` an asset's ``attributes.battery`` declares (keys as :class:`Battery`'s fields).

    ``soc_initial`` (fraction) overrides the declared one: the service passes the live state.

    Raises:
        ValidationError: naming ``attributes.battery.<key>``.
    """
    spec = dict(_object(attributes, BATTERY, _BATTERY_KEYS, _BATTERY_REQUIRED))
    if soc_initial is not None:
        spec["soc_initial"] = soc_initial
    try:
        return Battery(asset_id=asset_id, **spec)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise _renamed(exc, "attributes.battery") from None


def _local_time(value: object, *, field: str) -> time_of_day:
    if not isinstance(value, str):
        raise ValidationError("must be a local time HH:MM", field=field)
    try:
        return time_of_day.fromisoformat(value)
    except ValueError:
        raise ValidationError("must be a local time HH:MM", field=field) from None


@dataclass(frozen=True, slots=True)
class DeferrableSpec:
    """A deferrable load as declared: energy per day inside a local-time window (``end`` before ``start`` wraps midnight)."""

    energy_kwh: float
    max_power_kw: float
    window_start: time_of_day
    window_end: time_of_day
    on_off: bool = False
    contiguous: bool = False


def deferrable_from_attributes(attributes: dict[str, object]) -> DeferrableSpec:
    """The :class:`DeferrableSpec` of ``attributes.deferrable``.

    Raises:
        ValidationError: naming ``attributes.deferrable.<key>``.
    """
    spec = _object(attributes, DEFERRABLE, _DEFERRABLE_KEYS, {"energy_kwh", "max_power_kw", "window_start", "window_end"})
    prefix = "attributes.deferrable"
    energy = _finite(spec["energy_kwh"], field=f"{prefix}.energy_kwh", low=0.0, high=MAX_ENERGY_KWH, strict_low=True)  # type: ignore[arg-type]
    power = _finite(spec["max_power_kw"], field=f"{prefix}.max_power_kw", low=0.0, high=MAX_POWER_KW, strict_low=True)  # type: ignore[arg-type]
    start = _local_time(spec["window_start"], field=f"{prefix}.window_start")
    end = _local_time(spec["window_end"], field=f"{prefix}.window_end")
    if start == end:
        raise ValidationError("the window must not be empty", field=f"{prefix}.window_end")
    flags = {}
    for key in ("on_off", "contiguous"):
        value = spec.get(key, False)
        if not isinstance(value, bool):
            raise ValidationError("must be true or false", field=f"{prefix}.{key}")
        flags[key] = value
    return DeferrableSpec(energy, power, start, end, **flags)


def grid_from_attributes(attributes: dict[str, object]) -> GridConnection:
    """The :class:`GridConnection` of ``attributes.grid_connection`` (unlimited when absent).

    Raises:
        ValidationError: naming ``attributes.grid_connection.<key>``.
    """
    if GRID_CONNECTION not in attributes:
        return GridConnection()
    spec = _object(attributes, GRID_CONNECTION, _GRID_KEYS)
    try:
        return GridConnection(**spec)  # type: ignore[arg-type]
    except ValidationError as exc:
        field = exc.field.replace("grid.", "attributes.grid_connection.") if exc.field else None
        raise ValidationError(exc.message, field=field) from None


def pv_curtailable(attributes: dict[str, object]) -> bool:
    """Whether ``attributes.pv`` declares the PV system curtailable (False when absent).

    Raises:
        ValidationError: naming ``attributes.pv.curtailable``.
    """
    if PV not in attributes:
        return False
    value = _object(attributes, PV, _PV_KEYS).get("curtailable", False)
    if not isinstance(value, bool):
        raise ValidationError("must be true or false", field="attributes.pv.curtailable")
    return value


def check_flexibility_attributes(asset_id: str, attributes: dict[str, object]) -> None:
    """Validate whichever of ``battery``, ``deferrable``, ``pv`` and ``grid_connection`` ``attributes`` holds.

    Raises:
        ValidationError: naming ``attributes.<name>.<key>``.
    """
    if BATTERY in attributes:
        battery_from_attributes(asset_id, attributes)
    if DEFERRABLE in attributes:
        deferrable_from_attributes(attributes)
    if PV in attributes:
        pv_curtailable(attributes)
    grid_from_attributes(attributes)
