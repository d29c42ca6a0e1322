"""'Not available' sentinels: register values devices send instead of a measurement.

Modbus devices have no null: a register that cannot be read (sensor missing, value not
implemented, read-out failed) holds a reserved value. SunSpec (Modbus information model) reserves
``0xFFFF`` (uint16), ``0x8000`` (int16), ``0xFFFFFFFF`` (uint32), ``0x80000000`` (int32) and the
64-bit equivalents as "not implemented"; many meters and inverters use the largest signed value
(``0x7FFF``, ``0x7FFFFFFF``, ``0x7FFFFFFFFFFFFFFF``) the same way, and ``-1`` is the common marker
of a quantity that cannot be negative (a register, an amount of CO2). Stored as numbers they would
be booked as 65.535 kW or 4.29 GWh. They are rejected by the exact raw value *as sent* (before
unit conversion), even when that value lies within the quantity's plausible range.

The price: a true reading of exactly one of these integers is rejected too (a power of exactly
65535 W). Such a reading is rare and its neighbours carry the energy; a sentinel taken for a
reading corrupts a bill.
"""

from __future__ import annotations

from digitaltwin.domain.errors import ValidationError
from digitaltwin.domain.units import QUANTITIES

#: Raw values that mean "not available", with their name (as floats: JSON numbers become floats).
SENTINELS: dict[float, str] = {
    float(0xFFFF): "0xFFFF (uint16 all ones)",
    float(0xFFFFFFFF): "0xFFFFFFFF (uint32 all ones)",
    float(0xFFFFFFFFFFFFFFFF): "0xFFFFFFFFFFFFFFFF (uint64 all ones)",
    float(0x7FFF): "0x7FFF (int16 maximum)",
    float(0x7FFFFFFF): "0x7FFFFFFF (int32 maximum)",
    float(0x7FFFFFFFFFFFFFFF): "0x7FFFFFFFFFFFFFFF (int64 maximum)",
    -float(0x8000): "0x8000 (int16 minimum)",
    -float(0x80000000): "0x80000000 (int32 minimum)",
    -float(0x8000000000000000): "0x8000000000000000 (int64 minimum)",
}

#: Quantities that cannot be negative (their plausible range starts at 0), for which -1 is a sentinel.
NON_NEGATIVE = frozenset(name for name, spec in QUANTITIES.items() if spec.bounds[0] >= 0)


def sentinel_name(quantity: str, raw: float) -> str | None:
    """The name of the sentinel ``raw`` (the value as sent) is, or None for a real value."""
    name = SENTINELS.get(raw)
    if name is None and raw == -1.0 and quantity in NON_NEGATIVE:
        name = f"-1 ({quantity} cannot be negative)"
    return name


def check_sentinel(quantity: str, raw: float, *, field: str) -> float:
    """Return ``raw`` unless it is a 'not available' sentinel.

    Raises:
        ValidationError: naming ``field``, with the sentinel.
    """
    name = sentinel_name(quantity, raw)
    if name is not None:
        raise ValidationError(f"value {raw:.0f} is the 'not available' sentinel {name}, not a measurement", field=field)
    return raw
