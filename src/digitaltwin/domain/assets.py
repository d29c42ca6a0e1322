"""Sites and assets (the twins) as plain values."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any

from digitaltwin.domain.errors import ValidationError

_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class AssetKind(str, enum.Enum):
    """What an asset is; ``weather`` carries exogenous series (temperature, irradiance)."""

    MACHINE = "machine"
    METER = "meter"
    BUILDING = "building"
    PV = "pv"
    BATTERY = "battery"
    WEATHER = "weather"


def check_slug(value: str, *, field: str) -> str:
    """Ids are 1-64 characters of letters, digits, ``.``, ``_`` and ``-`` (they appear in MQTT topics and URLs).

    Raises:
        ValidationError: naming ``field``.
    """
    if not isinstance(value, str) or not _SLUG.match(value):
        raise ValidationError(
            "must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit", field=field
        )
    return value


def check_country(code: str | None, *, field: str = "country") -> str | None:
    """An ISO 3166-1 alpha-2 code (``DE``, ``KR``) for public holidays, upper-cased; None passes.

    Raises:
        ValidationError: naming ``field`` for anything else (``"Germany"``).
    """
    if code is None:
        return None
    if not isinstance(code, str) or not re.fullmatch(r"[A-Za-z]{2}", code):
        raise ValidationError("must be an ISO 3166-1 alpha-2 country code such as DE", field=field)
    return code.upper()


@dataclass(frozen=True, slots=True)
class Site:
    """A place with one local calendar.

    Attributes:
        id: slug.
        timezone: IANA zone used for local days, weeks (Monday first) and months.
        country: ISO 3166 code for public holidays, or None.
    """

    id: str
    name: str
    timezone: str
    country: str | None = None


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
