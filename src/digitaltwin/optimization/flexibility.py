"""Flexible assets a schedule may move: batteries, deferrable loads, curtailable PV, the grid connection.

Each is a frozen value checked on construction, so a bad setting is refused with a
:class:`~digitaltwin.domain.errors.ValidationError` naming the attribute before any
problem is built. Powers are in kW, energies in kWh, efficiencies and states of
charge (SOC) as fractions of one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from digitaltwin.domain.errors import ValidationError


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
        capacity_kwh: usable capacity (kWh, > 0); SOC fractions refer to it.
        max_charge_kw, max_discharge_kw: AC power limits (kW, >= 0).
        charge_efficiency, discharge_efficiency: one-way efficiencies in (0, 1]; stored energy
            rises by ``charge_kw * eta_ch * dt`` and falls by ``discharge_kw / eta_dis * dt``.
        soc_min, soc_max: SOC bounds (fractions, ``0 <= soc_min <= soc_max <= 1``).
        soc_initial: SOC at the start of the horizon (from the live state in the service).
        soc_final: SOC the battery must hold at least at the end of the horizon, or None.
        degradation_cost_per_kwh: cost per kWh of throughput (charge plus discharge, AC side),
            in the tariff's currency; 0 by default.
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
        _finite(self.capacity_kwh, field="battery.capacity_kwh", low=0.0, strict_low=True)
        _finite(self.max_charge_kw, field="battery.max_charge_kw", low=0.0)
        _finite(self.max_discharge_kw, field="battery.max_discharge_kw", low=0.0)
        _finite(self.charge_efficiency, field="battery.charge_efficiency", low=0.0, high=1.0, strict_low=True)
        _finite(self.discharge_efficiency, field="battery.discharge_efficiency", low=0.0, high=1.0, strict_low=True)
        _finite(self.soc_min, field="battery.soc_min", low=0.0, high=1.0)
        _finite(self.soc_max, field="battery.soc_max", low=0.0, high=1.0)
        _finite(self.soc_initial, field="battery.soc_initial", low=0.0, high=1.0)
        if self.soc_final is not None:
            _finite(self.soc_final, field="battery.soc_final", low=0.0, high=1.0)
        _finite(self.degradation_cost_per_kwh, field="battery.degradation_cost_per_kwh", low=0.0)
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
        _finite(self.energy_kwh, field="deferrable.energy_kwh", low=0.0, strict_low=True)
        _finite(self.max_power_kw, field="deferrable.max_power_kw", low=0.0, strict_low=True)
        if self.window_start_step < 0 or self.window_end_step <= self.window_start_step:
            raise ValidationError("the window must be a non-empty span inside the horizon", field="deferrable.window")

    @property
    def fixed_power(self) -> bool:
        """Whether the load runs only at its full power (on/off or one contiguous block)."""
        return self.on_off or self.contiguous


@dataclass(frozen=True, slots=True)
class GridConnection:
    """Limits of the site's grid connection (kW, None for unlimited)."""

    import_limit_kw: float | None = None
    export_limit_kw: float | None = None

    def __post_init__(self) -> None:
        if self.import_limit_kw is not None:
            _finite(self.import_limit_kw, field="grid.import_limit_kw", low=0.0)
        if self.export_limit_kw is not None:
            _finite(self.export_limit_kw, field="grid.export_limit_kw", low=0.0)
