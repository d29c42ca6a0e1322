"""Sites and assets (the twins) as plain values."""

from __future__ import annotations

import enum
import functools
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from digitaltwin.domain.errors import ValidationError

_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class AssetKind(str, enum.Enum):
    """What an asset is; ``ev`` is an EV charger; ``weather`` carries exogenous series (temperature,
    irradiance); ``grid`` the supply grid's series (its ``carbon_intensity`` in gCO2/kWh, see
    :mod:`digitaltwin.accounting.carbon`)."""

    MACHINE = "machine"
    METER = "meter"
    BUILDING = "building"
    PV = "pv"
    BATTERY = "battery"
    EV = "ev"
    WEATHER = "weather"
    GRID = "grid"


def check_slug(value: str, *, field: str) -> str:
    """Ids are 1-64 characters of letters, digits, ``.``, ``_`` and ``-`` (they appear in MQTT topics and URLs).

    Raises:
        ValidationError: naming ``field``.
    """
    if not isinstance(value, str) or not _SLUG.fullmatch(value):
        raise ValidationError(
            "must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit", field=field
        )
    return value


def check_country(code: str | None, *, field: str = "country") -> str | None:
    """An ISO 3166-1 alpha-2 code (``DE``, ``KR``) that the installed ``holidays`` package knows, upper-cased; None passes.

    The country only serves the ``is_holiday`` forecasting feature
    (``holidays.country_holidays``), so a code that package does not know (``XX``) is
    refused here rather than failing every later training of the site's assets.

    Raises:
        ValidationError: naming ``field`` for anything else (``"Germany"``, ``"XX"``).
    """
    if code is None:
        return None
    if not isinstance(code, str) or not re.fullmatch(r"[A-Za-z]{2}", code):
        raise ValidationError("must be an ISO 3166-1 alpha-2 country code such as DE", field=field)
    upper = code.upper()
    if upper not in _holiday_countries():
        raise ValidationError(
            f"country {upper!r} is unknown to the holidays package (public holidays); use an ISO 3166-1 alpha-2 code such as DE",
            field=field,
        )
    return upper


@functools.cache
def _holiday_countries() -> frozenset[str]:
    """Codes accepted by ``holidays.country_holidays`` in the installed version (fixed per process)."""
    import holidays

    return frozenset(holidays.list_supported_countries())


def check_site_country(site: Site) -> None:
    """Refuse to forecast for a site whose *stored* country is unknown to ``holidays``.

    A country stored before :func:`check_country` checked the ``holidays`` package (or by
    a newer version of it) would otherwise fail deep inside feature building.

    Raises:
        ValidationError: naming ``country``, with the site and how to correct it.
    """
    if site.country is None:
        return
    try:
        check_country(site.country)
    except ValidationError as exc:
        raise ValidationError(
            f"site {site.id!r} has country {site.country!r}, which is invalid ({exc.message}); "
            f"correct it with PATCH /api/v1/sites/{site.id}",
            field="country",
        ) from None


#: Asset attribute listing the exogenous series its forecasts read (see services.forecasting).
FORECAST_EXOG = "forecast_exog"


def check_forecast_exog(value: Any) -> list[tuple[str, str]]:
    """The ``(asset_id, quantity)`` pairs of a ``forecast_exog`` attribute, checked for shape.

    The value must be a list of objects ``{"asset_id": slug, "quantity": known quantity}``
    with no quantity listed twice (each becomes one feature column named after it).
    An asset may list its own series. Whether the listed assets exist is the caller's
    check (see the assets router).

    Raises:
        ValidationError: naming ``forecast_exog``.
    """
    from digitaltwin.domain.units import quantity_spec

    shape = 'must be a list of {"asset_id": ..., "quantity": ...} objects'
    if not isinstance(value, list):
        raise ValidationError(f"attributes.{FORECAST_EXOG} {shape}", field=FORECAST_EXOG)
    pairs: list[tuple[str, str]] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != {"asset_id", "quantity"}:
            raise ValidationError(f"attributes.{FORECAST_EXOG}[{i}] {shape}", field=FORECAST_EXOG)
        source, quantity = item["asset_id"], item["quantity"]
        try:
            check_slug(source, field=FORECAST_EXOG)
            if not isinstance(quantity, str):
                raise ValidationError("quantity must be a string", field=FORECAST_EXOG)
            quantity_spec(quantity)
        except ValidationError as exc:
            raise ValidationError(f"attributes.{FORECAST_EXOG}[{i}]: {exc.message}", field=FORECAST_EXOG) from None
        if any(q == quantity for _, q in pairs):
            raise ValidationError(f"attributes.{FORECAST_EXOG}: quantity {quantity!r} is listed twice", field=FORECAST_EXOG)
        pairs.append((source, quantity))
    return pairs


@dataclass(frozen=True, slots=True)
class Site:
    """A place with one local calendar.

    Attributes:
        id: slug.
        timezone: IANA zone used for local days, weeks (Monday first) and months.
        country: ISO 3166 code for public holidays, or None.
        attributes: the keys of :data:`SITE_ATTRIBUTES` (checked by :func:`check_site_attributes`)
            and free-form metadata.
    """

    id: str
    name: str
    timezone: str
    country: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Asset:
    """A twin: a machine, meter, building, PV system, battery or weather station.

    Attributes:
        rated_power_kw: nameplate power in kW, or None.
        parent_id: the asset this one belongs to (hierarchy), or None.
        attributes: free-form metadata.
    """

    id: str
    site_id: str
    name: str
    kind: AssetKind
    parent_id: str | None = None
    rated_power_kw: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


#: Site attributes with a meaning, and the plausible range of each number. The carbon intensity
#: asset is a slug (its existence is the caller's check, as for ``forecast_exog``).
SITE_ATTRIBUTES: dict[str, tuple[float, float] | None] = {
    "co2_factor_g_per_kwh": (0.0, 2000.0),  # constant grid emission factor, gCO2/kWh
    "carbon_intensity_asset_id": None,  # asset whose carbon_intensity series applies (wins over the factor)
    "connection_capacity_kw": (0.0, 1e7),  # grid connection capacity, kW
    "latitude": (-90.0, 90.0),
    "longitude": (-180.0, 180.0),
}
#: Largest attributes object of one site, as JSON.
MAX_SITE_ATTRIBUTES_BYTES = 16 * 1024


#: Deepest nesting of objects and lists in a site's or asset's attributes (the API answers them in
#: every listing; far deeper documents cannot be serialised back).
MAX_ATTRIBUTES_DEPTH = 32


def check_attributes_depth(value: Any, *, field: str = "attributes") -> None:
    """Refuse attributes nested deeper than :data:`MAX_ATTRIBUTES_DEPTH` levels.

    Raises:
        ValidationError: naming ``field``.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_ATTRIBUTES_DEPTH:
                raise ValidationError(f"{field} are nested deeper than {MAX_ATTRIBUTES_DEPTH} levels", field=field)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))


def check_site_attributes(attributes: Any) -> dict[str, Any]:
    """A site's attributes, checked: an object of at most :data:`MAX_SITE_ATTRIBUTES_BYTES` as JSON
    whose keys of :data:`SITE_ATTRIBUTES` hold a finite number in range (or a slug for
    ``carbon_intensity_asset_id``); other keys are free-form metadata. ``null`` values are dropped.

    Raises:
        ValidationError: naming the offending key (e.g. ``co2_factor_g_per_kwh``) or ``attributes``.
    """
    if not isinstance(attributes, dict):
        raise ValidationError("attributes must be an object", field="attributes")
    check_attributes_depth(attributes)
    if len(json.dumps(attributes)) > MAX_SITE_ATTRIBUTES_BYTES:
        raise ValidationError(f"attributes larger than {MAX_SITE_ATTRIBUTES_BYTES} bytes as JSON", field="attributes")
    out = {k: v for k, v in attributes.items() if v is not None}
    for key, bounds in SITE_ATTRIBUTES.items():
        if key not in out:
            continue
        value = out[key]
        if bounds is None:
            check_slug(value, field=key)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValidationError(f"{key} must be a finite number", field=key)
        if not bounds[0] <= value <= bounds[1]:
            raise ValidationError(f"{key} {value:g} is outside {bounds[0]:g}..{bounds[1]:g}", field=key)
        out[key] = float(value)
    return out


#: Asset attribute holding a building's floor area (gross internal area) in m2, for energy per m2.
FLOOR_AREA = "floor_area_m2"


def check_asset_accounting_attributes(attributes: dict[str, Any]) -> None:
    """``floor_area_m2``, when present, is a finite number of m2 above 0 (at most 10 km2).

    Raises:
        ValidationError: naming ``floor_area_m2``.
    """
    if FLOOR_AREA not in attributes or attributes[FLOOR_AREA] is None:
        return
    value = attributes[FLOOR_AREA]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 < value <= 1e7:
        raise ValidationError(f"{FLOOR_AREA} must be a number of m2 above 0 and at most 1e7", field=FLOOR_AREA)


def check_no_nul(entity: Site | Asset) -> None:
    """Refuse a NUL character (U+0000) in any text of a site or asset, as telemetry does.

    PostgreSQL text cannot hold NUL (the statement fails), while SQLite stores it; refusing it
    on both keeps the backends alike. Checked: every string field, and the keys and string
    values of ``attributes`` at any depth.

    Raises:
        ValidationError: naming the field (``name``, ``attributes.label``, ``attributes.tags.1``).
    """
    stack: list[tuple[str, Any]] = [(name, getattr(entity, name)) for name in reversed(entity.__slots__)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise ValidationError(f"{path} contains a NUL character (U+0000), which cannot be stored", field=path)
        elif isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{key}".replace("\x00", "\\u0000")
                if isinstance(key, str) and "\x00" in key:
                    raise ValidationError(f"{child} contains a NUL character (U+0000), which cannot be stored", field=child)
                stack.append((child, item))
        elif isinstance(value, list | tuple):
            stack.extend((f"{path}.{i}", item) for i, item in enumerate(value))
