"""Billing periods on the site's local calendar.

A billing period runs from local midnight of its first day to local midnight of the day
after its last, so a period holding a DST change has 743 or 745 hours. Without a bill day
periods are calendar months; with ``bill_day`` D (1..28) a period runs from day D of one
month to day D of the next (meter-reading cycles; 28 at most so every month has the day).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from digitaltwin.domain.errors import ValidationError

#: Most billing periods one request may produce (ten years of months).
MAX_PERIODS = 120


@dataclass(frozen=True, slots=True)
class BillingPeriod:
    """``[start, end)`` in UTC with the local dates ``first_day`` .. ``last_day`` (inclusive)."""

    start: datetime
    end: datetime
    first_day: date
    last_day: date

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1

    @property
    def month(self) -> int:
        """The billing month (1..12): the month of the period's first day; month-keyed rules use it."""
        return self.first_day.month


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """UTC instant of local midnight starting ``day`` (the first instant at or after it, if DST skips it)."""
    naive = datetime(day.year, day.month, day.day)
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) < naive:
        first = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    return first


def _add_month(day: date) -> date:
    return date(day.year + (day.month == 12), day.month % 12 + 1, day.day)


def period_containing(instant: datetime, tz: ZoneInfo, bill_day: int | None) -> date:
    """First local day of the billing period holding ``instant``."""
    local = instant.astimezone(tz).date()
    anchor = bill_day or 1
    if local.day >= anchor:
        return local.replace(day=anchor)
    year, month = (local.year - 1, 12) if local.month == 1 else (local.year, local.month - 1)
    first = date(year, month, anchor)
    return first


def billing_periods(start: datetime, end: datetime, tz: ZoneInfo, *, bill_day: int | None = None) -> list[BillingPeriod]:
    """The whole billing periods overlapping ``[start, end)`` (UTC), oldest first.

    Raises:
        ValidationError: naming ``end`` when ``end <= start`` or the range holds more than
            :data:`MAX_PERIODS` periods; naming ``bill_day`` outside 1..28.
    """
    if end <= start:
        raise ValidationError("end must be after start", field="end")
    if bill_day is not None and not 1 <= bill_day <= 28:
        raise ValidationError("bill_day must be between 1 and 28", field="bill_day")
    first = period_containing(start, tz, bill_day)
    periods: list[BillingPeriod] = []
    while True:
        nxt = _add_month(first)
        period = BillingPeriod(local_midnight(first, tz), local_midnight(nxt, tz), first, nxt - timedelta(days=1))
        if period.start >= end:
            break
        periods.append(period)
        if len(periods) > MAX_PERIODS:
            raise ValidationError(f"range holds more than {MAX_PERIODS} billing periods", field="end")
        first = nxt
    return periods
