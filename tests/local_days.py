"""Interval-end labelled CSV days as meter exports write them, for the import tests over the library,
HTTP and the command line.

The labels are made forwards, from the true UTC intervals to the wall clock (``zoneinfo``), the
opposite direction to the import, which has to find the instants from the labels alone.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def day_intervals(zone: str, day: date, minutes: int) -> list[datetime]:
    """UTC starts of the ``minutes`` intervals of one local day (100 quarter hours on a 25-hour day)."""
    tz = ZoneInfo(zone)
    first = datetime.combine(day, time(), tz).astimezone(UTC)
    last = datetime.combine(day + timedelta(days=1), time(), tz).astimezone(UTC)
    step = timedelta(minutes=minutes)
    return [first + k * step for k in range((last - first) // step)]


def end_labels(zone: str, day: date, minutes: int) -> list[str]:
    """Each interval of :func:`day_intervals` labelled with the wall-clock time its end shows
    (``2025-10-26 02:00`` twice in Berlin on the fall-back day), the last one ``24:00``."""
    tz = ZoneInfo(zone)
    step = timedelta(minutes=minutes)
    labels = [(start + step).astimezone(tz).strftime("%Y-%m-%d %H:%M") for start in day_intervals(zone, day, minutes)]
    labels[-1] = f"{day.isoformat()} 24:00"
    return labels


def end_labelled_csv(zone: str, day: date, minutes: int) -> tuple[str, dict[datetime, float]]:
    """A ``ts,kwh`` file of one day (values 1.5, 2.5, ... in time order) and the readings it holds,
    ``{UTC interval start: kWh}``."""
    starts = day_intervals(zone, day, minutes)
    labels = end_labels(zone, day, minutes)
    text = "ts,kwh\n" + "".join(f"{label},{k + 1.5}\n" for k, label in enumerate(labels))
    return text, {start: k + 1.5 for k, start in enumerate(starts)}
