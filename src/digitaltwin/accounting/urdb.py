"""Import of OpenEI Utility Rate Database (URDB) records, as the URDB API returns them.

Every field of a record is either *billed* (turned into a rule of
:class:`~digitaltwin.accounting.tariff.Tariff`), *informational* (descriptions, applicability,
dates: kept with the source, listed back to the caller, never billed), or refused by name:
a field that would change a bill but that the engine does not implement is never dropped
silently. Field meanings follow the URDB API documentation (version 8):
https://openei.org/services/doc/rest/util_rates/?version=8

Checks made here (each failure is a :class:`ValidationError` naming the field, e.g.
``energyweekdayschedule[0][0]``): schedules are 12 x 24 integers naming periods that the
matching rate structure has; tiers are ascending with numeric rates; units are ones URDB
defines. The input dict is never modified.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from digitaltwin.accounting.tariff import (
    Charge,
    DemandPeriod,
    EnergyPeriod,
    ExportRule,
    Ratchet,
    Schedule,
    Tariff,
    Tier,
    TierUnit,
    TouDemand,
)
from digitaltwin.domain.errors import ValidationError

#: Fields turned into billing rules.
BILLED_FIELDS = frozenset(
    {
        "energyratestructure", "energyweekdayschedule", "energyweekendschedule",
        "demandratestructure", "demandweekdayschedule", "demandweekendschedule",
        "flatdemandstructure", "flatdemandmonths",
        "coincidentratestructure", "coincidentrateschedule",
        "fixedchargefirstmeter", "fixedchargeunits", "fixedmonthlycharge",
        "mincharge", "minchargeunits", "dgrules",
        "lookbackpercent", "lookbackrange", "lookbackmonths", "demandwindow",
        # units of the demand structures: checked to be kW
        "demandrateunit", "flatdemandunit", "demandunits", "coincidentrateunit",
    }
)

#: Fields that describe the record or who may take the tariff; they change no bill.
INFORMATIONAL_FIELDS = frozenset(
    {
        "label", "uri", "name", "utility", "eiaid", "sector", "description", "source", "sourceparent",
        "startdate", "enddate", "revisions", "approved", "supersedes", "superseded_by", "is_default",
        "country", "servicetype", "voltagecategory", "phasewiring",
        "peakkwcapacitymin", "peakkwcapacitymax", "peakkwcapacityhistory",
        "peakkwhusagemin", "peakkwhusagemax", "peakkwhusagehistory",
        "voltageminimum", "voltagemaximum",
        "energyattrs", "demandattrs", "fixedattrs",
        "energycomments", "demandcomments", "basicinformationcomments", "dgrulescomments",
    }
)

_TIER_UNITS = {u.value.lower(): u for u in TierUnit}
_DGRULES = {
    "Net Metering": ExportRule.NET_METERING,
    "Net Billing Instantaneous": ExportRule.NET_BILLING_INSTANTANEOUS,
    "Net Billing Hourly": ExportRule.NET_BILLING_HOURLY,
    "Buy All Sell All": ExportRule.BUY_ALL_SELL_ALL,
}
_CHARGE_UNITS = {"$/day": "day", "$/month": "month", "$/year": "year"}


def _number(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"{field} must be a finite number, got {value!r}", field=field)
    return float(value)


def _tiers(raw: object, field: str, *, energy: bool) -> tuple[tuple[Tier, ...], TierUnit]:
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise ValidationError(f"{field} must be a non-empty list of tiers", field=field)
    allowed = {"rate", "adj", "max", "unit", "sell"} if energy else {"rate", "adj", "max", "unit"}
    tiers: list[Tier] = []
    units: set[TierUnit] = set()
    previous_max = -math.inf
    for j, entry in enumerate(raw):
        where = f"{field}[{j}]"
        if not isinstance(entry, Mapping):
            raise ValidationError(f"{where} must be an object", field=where)
        for key in entry:
            if key not in allowed:
                raise ValidationError(f"{where}.{key} is not implemented by the bill engine", field=f"{where}.{key}")
        if "rate" not in entry and "adj" not in entry:
            raise ValidationError(f"{where} has neither rate nor adj", field=f"{where}.rate")
        rate = _number(entry.get("rate", 0.0), f"{where}.rate") + _number(entry.get("adj", 0.0), f"{where}.adj")
        upper = None if entry.get("max") is None else _number(entry["max"], f"{where}.max")
        if upper is not None and (upper <= previous_max or upper < 0):
            raise ValidationError(f"{where}.max must be above the previous tier's max", field=f"{where}.max")
        if upper is None and j < len(raw) - 1:
            raise ValidationError(f"{where} has no max but is not the last tier", field=f"{where}.max")
        previous_max = upper if upper is not None else math.inf
        unit_text = str(entry.get("unit", "kWh" if energy else "kW"))
        if energy:
            unit = _TIER_UNITS.get(unit_text.lower())
            if unit is None:
                raise ValidationError(f"{where}.unit {unit_text!r} is not a URDB energy unit", field=f"{where}.unit")
            units.add(unit)
        elif unit_text.lower() != "kw":
            raise ValidationError(f"{where}.unit {unit_text!r}: only kW demand is implemented", field=f"{where}.unit")
        sell = _number(entry.get("sell", 0.0), f"{where}.sell")
        tiers.append(Tier(upper, rate, sell))
    if len(units) > 1:
        raise ValidationError(f"{field} mixes tier units {sorted(u.value for u in units)}", field=field)
    return tuple(tiers), (units.pop() if units else TierUnit.KWH)


def _structure(record: Mapping[str, Any], name: str, *, energy: bool) -> list[tuple[tuple[Tier, ...], TierUnit]]:
    raw = record[name]
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise ValidationError(f"{name} must be a non-empty list of periods", field=name)
    return [_tiers(period, f"{name}[{i}]", energy=energy) for i, period in enumerate(raw)]


def _schedule(record: Mapping[str, Any], name: str, periods: int, structure: str) -> Schedule:
    raw = record.get(name)
    if not isinstance(raw, Sequence) or isinstance(raw, str) or len(raw) != 12:
        raise ValidationError(f"{name} must be 12 rows (January..December) of 24 hours", field=name)
    rows = []
    for m, row in enumerate(raw):
        if not isinstance(row, Sequence) or isinstance(row, str) or len(row) != 24:
            raise ValidationError(f"{name}[{m}] must have 24 hourly entries", field=f"{name}[{m}]")
        for h, value in enumerate(row):
            where = f"{name}[{m}][{h}]"
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValidationError(f"{where} must be a period index (integer >= 0), got {value!r}", field=where)
            if value >= periods:
                raise ValidationError(
                    f"{where} names period {value}, but {structure} has {periods} period(s) (0..{periods - 1})",
                    field=where,
                )
        rows.append(tuple(row))
    return tuple(rows)


def _months(record: Mapping[str, Any], name: str, periods: int, structure: str) -> tuple[int, ...]:
    raw = record[name]
    if not isinstance(raw, Sequence) or isinstance(raw, str) or len(raw) != 12:
        raise ValidationError(f"{name} must list 12 months", field=name)
    for m, value in enumerate(raw):
        where = f"{name}[{m}]"
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < periods:
            raise ValidationError(f"{where} names period {value!r}, but {structure} has {periods} period(s)", field=where)
    return tuple(raw)


def _charge(record: Mapping[str, Any], amount_field: str, unit_field: str, default_unit: str) -> Charge:
    amount = _number(record[amount_field], amount_field)
    unit = record.get(unit_field, default_unit)
    if unit not in _CHARGE_UNITS:
        raise ValidationError(f"{unit_field} {unit!r} is not one of {', '.join(_CHARGE_UNITS)}", field=unit_field)
    return Charge(amount, _CHARGE_UNITS[unit])


def informational_fields(record: Mapping[str, Any]) -> list[str]:
    """The fields of ``record`` that are kept but not billed (sorted)."""
    return sorted(k for k in record if k in INFORMATIONAL_FIELDS)


def parse_urdb(record: object, *, currency: str = "USD") -> Tariff:
    """Turn one URDB record (a dict as the API returns it) into a :class:`Tariff`.

    Raises:
        ValidationError: naming the first offending field, e.g. a field the engine does not
            implement (``fueladjustmentsmonthly``), a schedule entry naming a missing period
            (``energyweekdayschedule[0][0]``), or a malformed tier.
    """
    if not isinstance(record, Mapping):
        raise ValidationError("a URDB tariff is a JSON object", field="body")
    for key in record:
        if key not in BILLED_FIELDS and key not in INFORMATIONAL_FIELDS:
            raise ValidationError(f"URDB field {key!r} is not implemented by the bill engine; refusing rather than ignoring it", field=key)
    for unit_field in ("demandrateunit", "flatdemandunit", "demandunits", "coincidentrateunit"):
        if unit_field in record and str(record[unit_field]).lower() != "kw":
            raise ValidationError(f"{unit_field} {record[unit_field]!r}: only kW demand is implemented", field=unit_field)

    kwargs: dict[str, Any] = {}
    if "energyratestructure" in record:
        structure = _structure(record, "energyratestructure", energy=True)
        kwargs["energy_periods"] = tuple(EnergyPeriod(t, u) for t, u in structure)
        for name in ("energyweekdayschedule", "energyweekendschedule"):
            kwargs[name.replace("energy", "energy_").replace("schedule", "")] = _schedule(record, name, len(structure), "energyratestructure")
    elif "energyweekdayschedule" in record or "energyweekendschedule" in record:
        raise ValidationError("an energy schedule without energyratestructure", field="energyratestructure")

    if "demandratestructure" in record:
        structure = _structure(record, "demandratestructure", energy=False)
        kwargs["tou_demand"] = TouDemand(
            tuple(DemandPeriod(t) for t, _ in structure),
            _schedule(record, "demandweekdayschedule", len(structure), "demandratestructure"),
            _schedule(record, "demandweekendschedule", len(structure), "demandratestructure"),
        )
    elif "demandweekdayschedule" in record or "demandweekendschedule" in record:
        raise ValidationError("a demand schedule without demandratestructure", field="demandratestructure")

    if "flatdemandstructure" in record:
        structure = _structure(record, "flatdemandstructure", energy=False)
        kwargs["flat_demand_periods"] = tuple(DemandPeriod(t) for t, _ in structure)
        if "flatdemandmonths" in record:
            kwargs["flat_demand_months"] = _months(record, "flatdemandmonths", len(structure), "flatdemandstructure")
        elif len(structure) == 1:
            kwargs["flat_demand_months"] = (0,) * 12
        else:
            raise ValidationError("flatdemandstructure has several periods but no flatdemandmonths", field="flatdemandmonths")
    elif "flatdemandmonths" in record:
        raise ValidationError("flatdemandmonths without flatdemandstructure", field="flatdemandstructure")

    if "coincidentratestructure" in record:
        structure = _structure(record, "coincidentratestructure", energy=False)
        schedule = _schedule(record, "coincidentrateschedule", len(structure), "coincidentratestructure")
        kwargs["coincident"] = TouDemand(tuple(DemandPeriod(t) for t, _ in structure), schedule, schedule)
    elif "coincidentrateschedule" in record:
        raise ValidationError("coincidentrateschedule without coincidentratestructure", field="coincidentratestructure")

    fixed = []
    if "fixedchargefirstmeter" in record:
        fixed.append(_charge(record, "fixedchargefirstmeter", "fixedchargeunits", "$/month"))
    elif "fixedchargeunits" in record:
        raise ValidationError("fixedchargeunits without fixedchargefirstmeter", field="fixedchargefirstmeter")
    if "fixedmonthlycharge" in record:  # the older field: always per month
        fixed.append(Charge(_number(record["fixedmonthlycharge"], "fixedmonthlycharge"), "month"))
    kwargs["fixed"] = tuple(fixed)
    if "mincharge" in record:
        kwargs["min_charge"] = _charge(record, "mincharge", "minchargeunits", "$/month")
    elif "minchargeunits" in record:
        raise ValidationError("minchargeunits without mincharge", field="mincharge")

    if "dgrules" in record:
        rule = _DGRULES.get(record["dgrules"])
        if rule is None:
            raise ValidationError(f"dgrules {record['dgrules']!r} is not one of {', '.join(_DGRULES)}", field="dgrules")
        kwargs["export_rule"] = rule

    if "lookbackpercent" in record or "lookbackrange" in record or "lookbackmonths" in record:
        percent = _number(record.get("lookbackpercent", 0.0), "lookbackpercent")
        if not 0 <= percent <= 1:
            raise ValidationError("lookbackpercent is a fraction between 0 and 1", field="lookbackpercent")
        span = record.get("lookbackrange", 12)
        if isinstance(span, bool) or not isinstance(span, int) or not 0 <= span <= 36:
            raise ValidationError("lookbackrange must be a number of months (0..36)", field="lookbackrange")
        months = record.get("lookbackmonths", [True] * 12)
        if not isinstance(months, Sequence) or isinstance(months, str) or len(months) != 12:
            raise ValidationError("lookbackmonths must list 12 months", field="lookbackmonths")
        kwargs["ratchet"] = Ratchet(percent, span, tuple(bool(x) for x in months))

    if "demandwindow" in record:
        window = _number(record["demandwindow"], "demandwindow")
        if window <= 0 or window != int(window) or 1440 % int(window):
            raise ValidationError("demandwindow must be whole minutes dividing a day (15, 30, 60 ...)", field="demandwindow")
        kwargs["demand_window_minutes"] = int(window)

    has_charge = kwargs.get("energy_periods") or kwargs.get("tou_demand") or kwargs.get("flat_demand_periods") or fixed
    if not has_charge:
        raise ValidationError("the record has no energy, demand or fixed charge", field="energyratestructure")
    name = str(record.get("name") or record.get("label") or "URDB tariff")
    return Tariff(name=name, currency=currency, **kwargs)
