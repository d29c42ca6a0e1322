"""Readings and the normalisation of one telemetry item into readings.

A reading is one value of one quantity of one asset at one UTC instant, in the
quantity's canonical unit. :func:`parse_item` accepts the shapes integrators
send (HTTP batch items, MQTT payloads, the replaced system's messages):

* canonical: ``{"asset_id", "ts", "quantity", "value", "unit"}``
* measurement fields named with their unit: ``{"device_id", "ts", "power_w": 750}``
  or ``{"device_id", "ts", "energy_total": 1500000, "unit": "Wh"}``
* a ``values`` object of such fields: ``{"device_id", "ts", "values": {"power_w": 750}}``

``device_id`` and ``machine_id`` are accepted as aliases of ``asset_id``, and
``timestamp`` of ``ts``. A value's unit is required: from ``unit`` or from the
field name; values outside the quantity's plausible range are rejected
(:func:`~digitaltwin.domain.units.check_range`). Values must be finite numbers; plain decimal strings
(``"4000"``) are coerced, anything else (``"4,000 W"``, ``"unavailable"``, null,
NaN, Infinity) rejects the item naming the field (field cases
``payload/numeric-strings``, ``payload/nan-and-infinity``), and so do 'not available'
sentinels such as 65535 or -1 for a register (:mod:`digitaltwin.domain.sentinels`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from digitaltwin.domain.durations import parse_duration
from digitaltwin.domain.errors import ValidationError
from digitaltwin.domain.sentinels import check_sentinel
from digitaltwin.domain.series_attributes import check_serial
from digitaltwin.domain.timestamps import parse_instant
from digitaltwin.domain.units import FIELD_ALIASES, check_range, quantity_spec, to_canonical

#: A plain decimal of ASCII digits: a regex ``\d`` (and ``float()``) also takes other scripts' digits ('٥' is 5.0).
_DECIMAL = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$")
_ASSET_KEYS = ("asset_id", "device_id", "machine_id")
_TS_KEYS = ("ts", "timestamp", "time")
_ENVELOPE_KEYS = {*_ASSET_KEYS, *_TS_KEYS, "quantity", "value", "unit", "values", "status", "site_id", "interval", "meter_serial"}


def item_interval_seconds(item: object) -> int | None:
    """The interval an item declares for its interval quantities (``"interval": "PT15M"``), in seconds.

    Interval energy without a declared interval has its length inferred from the
    spacing of readings at query time; declaring it makes totals exact at any range.

    Raises:
        ValidationError: naming ``interval`` when it is not a positive ISO 8601 duration of at most a day.
    """
    if not isinstance(item, Mapping) or item.get("interval") is None:
        return None
    raw = item["interval"]
    if not isinstance(raw, str):
        raise ValidationError("interval must be an ISO 8601 duration such as PT15M", field="interval")
    seconds = int(parse_duration(raw, field="interval").total_seconds())
    if not 0 < seconds <= 86_400:
        raise ValidationError("interval must be between 1 second and 1 day", field="interval")
    return seconds


def item_meter_serial(item: object) -> str | None:
    """The serial of the meter that took an item's readings (``"meter_serial": "1ESY1160012345"``), if any.

    A counter series whose serial changes between readings has had its meter replaced (see
    :func:`digitaltwin.services.meter.apply_serials`).

    Raises:
        ValidationError: naming ``meter_serial`` when it is not 1-64 printable characters.
    """
    if not isinstance(item, Mapping) or item.get("meter_serial") is None:
        return None
    return check_serial(item["meter_serial"], field="meter_serial")


@dataclass(frozen=True, slots=True)
class Reading:
    """One stored value.

    Attributes:
        asset_id: the asset (twin) the value belongs to.
        quantity: a name from :data:`~digitaltwin.domain.units.QUANTITIES`.
        ts: UTC instant; for interval quantities the *start* of the interval.
        value: in the quantity's canonical unit (kW, kWh, ...).
    """

    asset_id: str
    quantity: str
    ts: datetime
    value: float


def parse_value(raw: object, *, field: str) -> float:
    """A finite float from a JSON number or a plain decimal string.

    Raises:
        ValidationError: naming ``field`` for null, booleans, non-finite numbers,
            and strings that are not plain decimals.
    """
    if raw is None:
        raise ValidationError("value is null (unavailable)", field=field)
    if isinstance(raw, bool):
        raise ValidationError("value must be a number, not a boolean", field=field)
    if isinstance(raw, int | float):
        try:
            value = float(raw)
        except OverflowError:  # a JSON integer beyond the float range
            raise ValidationError("value is not a finite number (out of range)", field=field) from None
    elif isinstance(raw, str):
        if not _DECIMAL.fullmatch(raw.strip()):
            raise ValidationError(f"value {raw[:40]!r} is not a number", field=field)
        value = float(raw)
    else:
        raise ValidationError(f"value must be a number, not {type(raw).__name__}", field=field)
    if not math.isfinite(value):
        raise ValidationError("value is not a finite number (NaN or Infinity)", field=field)
    return value


def _first(item: Mapping[str, object], keys: tuple[str, ...]) -> tuple[str, object] | None:
    for key in keys:
        if key in item:
            return key, item[key]
    return None


def parse_item(
    item: object,
    *,
    asset_id: str | None = None,
    tz: ZoneInfo | None = None,
) -> list[Reading]:
    """Normalise one telemetry item into readings (all or nothing).

    Args:
        item: a JSON object in one of the shapes in the module docstring.
        asset_id: the asset when the transport names it (an MQTT topic); a
            conflicting id in the item is rejected.
        tz: timezone for offset-less timestamps (the site's or the file's).

    Returns:
        One reading per measurement in the item.

    Raises:
        ValidationError: naming the offending field; nothing of the item is kept.
    """
    if not isinstance(item, Mapping):
        raise ValidationError(f"item must be a JSON object, not {type(item).__name__}", field="item")
    found_asset = _first(item, _ASSET_KEYS)
    if found_asset is not None:
        key, value = found_asset
        if not isinstance(value, str) or not value.strip():
            raise ValidationError("asset id must be a non-empty string", field=key)
        if asset_id is not None and value != asset_id:
            raise ValidationError(f"{key} {value!r} does not match the asset {asset_id!r} of the topic", field=key)
        asset_id = value
    if asset_id is None:
        raise ValidationError("asset id is missing", field="asset_id")
    found_ts = _first(item, _TS_KEYS)
    if found_ts is None:
        raise ValidationError("timestamp is missing", field="ts")
    ts = parse_instant(found_ts[1], field=found_ts[0], tz=tz)

    unit = item.get("unit")
    if unit is not None and not isinstance(unit, str):
        raise ValidationError("unit must be a string", field="unit")
    measurements: list[tuple[str, str, object, str | None]] = []  # (field, quantity, raw, unit)
    if "quantity" in item or "value" in item:
        quantity = item.get("quantity")
        if not isinstance(quantity, str):
            raise ValidationError("quantity must be a string", field="quantity")
        if "value" not in item:
            raise ValidationError("value is missing", field="value")
        measurements.append(("value", quantity, item["value"], unit))
    values = item.get("values")
    if values is not None:
        if not isinstance(values, Mapping):
            raise ValidationError("values must be a JSON object", field="values")
        extra = values
    else:
        extra = {k: v for k, v in item.items() if k not in _ENVELOPE_KEYS}
    for key, raw in extra.items():
        alias = FIELD_ALIASES.get(key)
        if alias is None:
            if values is not None:
                raise ValidationError(f"unknown measurement {key!r}", field=key)
            continue  # ignore unrelated metadata in flat items
        quantity, alias_unit = alias
        measurements.append((key, quantity, raw, alias_unit if alias_unit is not None else unit))
    if not measurements:
        raise ValidationError("no measurement in item (expected quantity/value or a field such as power_kw)", field="value")

    readings: list[Reading] = []
    for field, quantity, raw, in_unit in measurements:
        quantity_spec(quantity, field="quantity")
        value = check_sentinel(quantity, parse_value(raw, field=field), field=field)
        if in_unit is None:
            # Guessing the canonical unit would turn a device sending W into a 1000x error.
            raise ValidationError(f"unit is missing for {field!r}; name it (e.g. \"unit\": \"kW\") or use a field such as power_kw", field="unit")
        canonical = to_canonical(quantity, value, in_unit, field="unit")
        readings.append(Reading(asset_id, quantity, ts, check_range(quantity, canonical, field=field)))
    return readings
