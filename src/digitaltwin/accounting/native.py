"""The native tariff form: the common European (and simple industrial) case without URDB's matrices.

A JSON object with ``"format": "native"``::

    {"format": "native", "name": "...", "currency": "EUR",
     "fixed": [{"amount": 0.45, "per": "day"}],                 # per day or month
     "energy": {"default_price": 0.21,                           # per kWh, local wall clock
                "windows": [{"price": 0.32, "from": "08:00", "to": "20:00",
                             "days": "weekdays", "months": [1, 2, 12]}]},
     # or "energy": {"price_asset": "epex-day-ahead", "markup": 0.02}  (a dynamic price series)
     "demand": {"price_per_kw": 8.5, "window_minutes": 15,
                "ratchet": {"percent": 100, "months": 11, "from_months": [1, 2, 7, 8, 9, 12]}},
     "feed_in_price": 0.08, "min_charge": {"amount": 10, "per": "month"},
     "taxes": [{"name": "VAT", "percent": 19}]}

Windows are whole local hours (``to`` exclusive, ``24:00`` allowed); a later window overrides an
earlier one where they overlap; ``days`` is ``all``, ``weekdays`` or ``weekends`` (Saturday and
Sunday); ``months`` defaults to all. A dynamic price series is read from the named asset's
``price`` readings (per kWh in the tariff's currency, negative prices allowed), each price
holding until the next. An unknown key is refused by name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from digitaltwin.accounting.tariff import (
    Charge,
    DemandPeriod,
    EnergyPeriod,
    ExportRule,
    Ratchet,
    Tariff,
    Tax,
    Tier,
)
from digitaltwin.domain.errors import ValidationError

_KEYS = {"format", "id", "name", "currency", "fixed", "energy", "demand", "feed_in_price", "min_charge", "taxes", "export"}
_EXPORT = {"none": ExportRule.NONE, "net_metering": ExportRule.NET_METERING, "net_billing": ExportRule.NET_BILLING_INSTANTANEOUS}


#: Largest magnitude of any amount in a tariff (a price per kWh, a fee, a rate per kW): far above any real
#: tariff in any currency, and far below where money arithmetic overflows.
MAX_AMOUNT = 1e9


def _num(value: object, field: str, *, low: float = -MAX_AMOUNT, high: float = MAX_AMOUNT) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not low <= value <= high:
        raise ValidationError(f"{field} must be a finite number from {low:g} to {high:g}", field=field)
    return float(value)


def _only(obj: object, allowed: set[str], field: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise ValidationError(f"{field} must be an object", field=field)
    for key in obj:
        if key not in allowed:
            raise ValidationError(f"{field}.{key} is not a field of the native tariff form", field=f"{field}.{key}")
    return obj


def _hour(text: object, field: str) -> int:
    if not isinstance(text, str) or len(text) != 5 or text[2] != ":" or text[3:] != "00" or not (text[:2].isascii() and text[:2].isdigit()):
        raise ValidationError(f"{field} must be a whole local hour HH:00, got {text!r}", field=field)
    hour = int(text[:2])
    if hour > 24:
        raise ValidationError(f"{field} must be 00:00..24:00", field=field)
    return hour


def _charge(obj: object, field: str, pers: tuple[str, ...]) -> Charge:
    body = _only(obj, {"amount", "per"}, field)
    per = body.get("per", "month")
    if per not in pers:
        raise ValidationError(f"{field}.per must be one of {', '.join(pers)}", field=f"{field}.per")
    return Charge(_num(body.get("amount"), f"{field}.amount", low=0), per)


def _energy(body: Mapping[str, Any], kwargs: dict[str, Any]) -> None:
    energy = _only(body["energy"], {"default_price", "windows", "price_asset", "markup"}, "energy")
    if "price_asset" in energy:
        if "windows" in energy or "default_price" in energy:
            raise ValidationError("energy.price_asset excludes windows and default_price", field="energy.price_asset")
        if not isinstance(energy["price_asset"], str) or not energy["price_asset"]:
            raise ValidationError("energy.price_asset must name an asset", field="energy.price_asset")
        kwargs["price_asset_id"] = energy["price_asset"]
        markup = _num(energy.get("markup", 0.0), "energy.markup")
        kwargs["energy_markup"] = markup
        return
    default = _num(energy.get("default_price"), "energy.default_price")
    grid = [[default] * 24 for _ in range(24)]  # 12 weekday rows, then 12 weekend rows
    windows = energy.get("windows", [])
    if not isinstance(windows, list):
        raise ValidationError("energy.windows must be a list", field="energy.windows")
    for i, raw in enumerate(windows):
        where = f"energy.windows[{i}]"
        w = _only(raw, {"price", "from", "to", "days", "months"}, where)
        price = _num(w.get("price"), f"{where}.price")
        start, stop = _hour(w.get("from"), f"{where}.from"), _hour(w.get("to"), f"{where}.to")
        if stop <= start:
            raise ValidationError(f"{where}.to must be after from (split a window over midnight in two)", field=f"{where}.to")
        days = w.get("days", "all")
        if days not in ("all", "weekdays", "weekends"):
            raise ValidationError(f"{where}.days must be all, weekdays or weekends", field=f"{where}.days")
        months = w.get("months", list(range(1, 13)))
        if not isinstance(months, list) or not all(isinstance(m, int) and 1 <= m <= 12 for m in months):
            raise ValidationError(f"{where}.months must list months 1..12", field=f"{where}.months")
        for m in months:
            for offset in ((0,) if days == "weekdays" else (12,) if days == "weekends" else (0, 12)):
                for h in range(start, stop):
                    grid[offset + m - 1][h] = price
    prices = sorted({p for row in grid for p in row})
    index = {p: i for i, p in enumerate(prices)}
    kwargs["energy_periods"] = tuple(EnergyPeriod((Tier(None, p),)) for p in prices)
    kwargs["energy_weekday"] = tuple(tuple(index[p] for p in grid[m]) for m in range(12))
    kwargs["energy_weekend"] = tuple(tuple(index[p] for p in grid[12 + m]) for m in range(12))


def parse_native(body: object) -> Tariff:
    """Turn the native form into a :class:`Tariff`.

    Raises:
        ValidationError: naming the offending field (``energy.windows[0].from`` ...).
    """
    body = _only(body, _KEYS, "tariff")
    if body.get("format") != "native":
        raise ValidationError("format must be 'native'", field="format")
    currency = body.get("currency")
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha() or not currency.isupper():
        raise ValidationError("currency must be an ISO 4217 code such as EUR", field="currency")
    kwargs: dict[str, Any] = {}
    if "energy" in body:
        _energy(body, kwargs)
    markup = kwargs.pop("energy_markup", 0.0)
    fixed = body.get("fixed", [])
    if not isinstance(fixed, list):
        raise ValidationError("fixed must be a list", field="fixed")
    kwargs["fixed"] = tuple(_charge(c, f"fixed[{i}]", ("day", "month")) for i, c in enumerate(fixed))
    if "demand" in body:
        demand = _only(body["demand"], {"price_per_kw", "window_minutes", "ratchet"}, "demand")
        kwargs["flat_demand_periods"] = (DemandPeriod((Tier(None, _num(demand.get("price_per_kw"), "demand.price_per_kw", low=0)),)),)
        kwargs["flat_demand_months"] = (0,) * 12
        if "window_minutes" in demand:
            window = _num(demand["window_minutes"], "demand.window_minutes", low=1)
            if window != int(window) or 1440 % int(window):
                raise ValidationError("demand.window_minutes must divide a day (15, 30, 60 ...)", field="demand.window_minutes")
            kwargs["demand_window_minutes"] = int(window)
        if "ratchet" in demand:
            r = _only(demand["ratchet"], {"percent", "months", "from_months"}, "demand.ratchet")
            # a percentage (0-100) of the look-back peak, as taxes are percentages; the engine takes a fraction
            percent = _num(r.get("percent"), "demand.ratchet.percent", low=0, high=100) / 100.0
            span = r.get("months", 11)
            if isinstance(span, bool) or not isinstance(span, int) or not 0 <= span <= 36:
                raise ValidationError("demand.ratchet.months must be 0..36", field="demand.ratchet.months")
            from_months = r.get("from_months", list(range(1, 13)))
            if not isinstance(from_months, list) or not all(isinstance(m, int) and 1 <= m <= 12 for m in from_months):
                raise ValidationError("demand.ratchet.from_months must list months 1..12", field="demand.ratchet.from_months")
            kwargs["ratchet"] = Ratchet(percent, span, tuple(m + 1 in from_months for m in range(12)))
    if "feed_in_price" in body:
        kwargs["feed_in_price"] = _num(body["feed_in_price"], "feed_in_price")
    export = body.get("export", "net_billing" if "feed_in_price" in body else "none")
    if export not in _EXPORT:
        raise ValidationError(f"export must be one of {', '.join(_EXPORT)}", field="export")
    kwargs["export_rule"] = _EXPORT[export]
    if "min_charge" in body:
        kwargs["min_charge"] = _charge(body["min_charge"], "min_charge", ("day", "month"))
    taxes = body.get("taxes", [])
    if not isinstance(taxes, list):
        raise ValidationError("taxes must be a list", field="taxes")
    parsed_taxes = []
    for i, raw in enumerate(taxes):
        t = _only(raw, {"name", "percent"}, f"taxes[{i}]")
        if not isinstance(t.get("name"), str) or not t["name"]:
            raise ValidationError(f"taxes[{i}].name must be text", field=f"taxes[{i}].name")
        parsed_taxes.append(Tax(t["name"], _num(t.get("percent"), f"taxes[{i}].percent", low=0, high=100)))
    kwargs["taxes"] = tuple(parsed_taxes)
    if not (kwargs.get("energy_periods") or kwargs.get("price_asset_id") or kwargs["fixed"] or kwargs.get("flat_demand_periods")):
        raise ValidationError("the tariff has no energy, demand or fixed charge", field="energy")
    tariff = Tariff(name=str(body.get("name") or "native tariff"), currency=currency, energy_markup=markup, **kwargs)
    return tariff
