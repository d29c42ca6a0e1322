"""ISO 8601 durations of the API (``PT24H``, ``PT15M``, ``P1D``)."""

from __future__ import annotations

import re
from datetime import timedelta

from digitaltwin.domain.errors import ValidationError

#: Longest accepted duration; longer ones are surely mistakes and overflow date arithmetic.
MAX_DURATION = timedelta(days=3660)
_DURATION = re.compile(r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?$", re.ASCII)  # ASCII digits only


def parse_duration(text: str, *, field: str) -> timedelta:
    """Parse days, hours, minutes and seconds of an ISO 8601 duration (no years or months: their length varies).

    Raises:
        ValidationError: naming ``field`` for anything else, a zero duration, or one
            longer than :data:`MAX_DURATION`.
    """
    match = _DURATION.fullmatch(text.strip().upper()) if isinstance(text, str) else None
    # "P" and "PT" alone, and a "T" with no time part ("P1DT"), are not durations (ISO 8601-1 5.5.2.4)
    if not match or text.strip().upper() in ("P", "PT") or text.strip().upper().endswith("T"):
        if isinstance(text, str) and re.match(r"^P[^T]*[YM]", text.strip().upper()):
            raise ValidationError(f"{text!r}: years and months vary in length; give days, e.g. P30D", field=field)
        raise ValidationError(f"{text!r} is not an ISO 8601 duration such as PT24H", field=field)
    parts = {k: int(v) for k, v in match.groupdict().items() if v}
    try:
        delta = timedelta(days=parts.get("d", 0), hours=parts.get("h", 0), minutes=parts.get("m", 0), seconds=parts.get("s", 0))
    except OverflowError:
        raise ValidationError(f"duration longer than {MAX_DURATION.days} days", field=field) from None
    if delta <= timedelta(0):
        raise ValidationError("duration must be positive", field=field)
    if delta > MAX_DURATION:
        raise ValidationError(f"duration longer than {MAX_DURATION.days} days", field=field)
    return delta
