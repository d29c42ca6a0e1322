"""Tariffs and bills: import, assignment to sites and assets, and bills from stored energy.

Meter data: a bill reads import and export per 15 minutes (per hour for hourly series) with
:func:`~digitaltwin.services.interval_flows.interval_flows`, the energy report's rules: each
interval's energy split into import and export before any netting, by the series' declared
sign convention or its separate import and export registers. An asset's bill reads the asset; a site's bill sums the
site's top-level meters (assets of kind ``meter`` without a parent that carry energy, power or a counter): each
meter's data counts where it exists, a meter without data in an interval counts 0 kWh there, and the bill names
each meter that lacks data and how many intervals it lacks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from digitaltwin.accounting.bill import Bill, MeterIntervals, compute_bills
from digitaltwin.services.interval_flows import interval_flows
from digitaltwin.accounting.native import parse_native
from digitaltwin.accounting.periods import BillingPeriod, billing_periods, local_midnight
from digitaltwin.accounting.tariff import ExportRule, Tariff
from digitaltwin.accounting.urdb import informational_fields, parse_urdb
from digitaltwin.analytics.buckets import Bucket
from digitaltwin.domain.assets import AssetKind, check_slug
from digitaltwin.domain.errors import NotFoundError, ValidationError
from digitaltwin.domain.timestamps import zone
from digitaltwin.services.energy import ENERGY_QUANTITIES, bucket_totals, hold_until_us, pick_energy_series, read_window, window_edges_us
from digitaltwin.storage.repository import Repository
from digitaltwin.storage.tables import from_epoch_us
from digitaltwin.storage.tariffs import Assignment, StoredTariff, TariffStore

#: Longest a dynamic price reading holds when no newer one follows (a day-ahead price is hourly or finer).
PRICE_MAX_HOLD = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class ImportedTariff:
    """A stored tariff with what the import made of it."""

    stored: StoredTariff
    tariff: Tariff
    informational_fields: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SiteBill:
    """A bill with the assignment it was computed under."""

    bill: Bill
    tariff_id: str
    timezone: str


def parse_tariff(record: object, *, currency: str | None = None) -> tuple[str, Tariff]:
    """(format, Tariff) of a record: the native form when ``format`` is ``native``, else URDB.

    A URDB API answer (``{"items": [record]}``) with exactly one record is accepted as it comes.
    """
    if isinstance(record, dict) and record.get("format") == "native":
        return "native", parse_native(record)
    if isinstance(record, dict) and set(record) == {"items"}:
        items = record["items"]
        if not isinstance(items, list) or len(items) != 1:
            raise ValidationError("a URDB answer must hold exactly one record in items", field="items")
        record = items[0]
    return "urdb", parse_urdb(record, currency=currency or "USD")


def _default_id(record: dict[str, Any], tariff: Tariff) -> str:
    raw = str(record.get("id") or record.get("label") or tariff.name)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-._")[:64]
    return slug or "tariff"


class BillingService:
    """Tariff import and assignment, and monthly bills of sites and assets.

    Args:
        repo: the repository (its engine also holds the tariff tables).
        max_hold: longest hold of one power sample (as for energy reports).
    """

    def __init__(self, repo: Repository, *, max_hold: timedelta) -> None:
        self.repo = repo
        self.store = TariffStore(repo.engine)
        self.max_hold = max_hold

    # -- tariffs ---------------------------------------------------------------------------------
    def import_tariff(self, record: object, *, tariff_id: str | None = None) -> ImportedTariff:
        """Parse, check and store a tariff (URDB or native).

        Raises:
            ValidationError: 422 naming the offending field (a schedule entry, an unimplemented field).
            ConflictError: the id exists.
        """
        fmt, tariff = parse_tariff(record)
        source = record if isinstance(record, dict) else {}
        if fmt == "urdb" and set(source) == {"items"}:
            source = source["items"][0]
        new_id = check_slug(tariff_id, field="id") if tariff_id else _default_id(source, tariff)
        stored = self.store.create(StoredTariff(new_id, tariff.name[:200], fmt, tariff.currency, source))
        return ImportedTariff(stored, tariff, informational_fields(source) if fmt == "urdb" else [])

    def tariff(self, tariff_id: str) -> ImportedTariff:
        stored = self.store.get(tariff_id)
        _, tariff = parse_tariff(stored.source, currency=stored.currency)
        return ImportedTariff(stored, tariff, informational_fields(stored.source) if stored.format == "urdb" else [])

    def assign(
        self, tariff_id: str, *, site_id: str | None = None, asset_id: str | None = None,
        valid_from: date, valid_to: date | None = None, bill_day: int | None = None,
    ) -> Assignment:
        """Assign a tariff to one site or one asset from ``valid_from`` (local date) to ``valid_to`` (exclusive).

        Raises:
            ValidationError: naming ``site_id`` when both or neither owner is given, ``valid_to``
                not after ``valid_from``, or ``bill_day`` outside 1..28.
            NotFoundError: unknown tariff, site or asset.
            ConflictError: naming ``valid_from`` when it overlaps another assignment.
        """
        if (site_id is None) == (asset_id is None):
            raise ValidationError("assign to exactly one site or one asset", field="site_id")
        if valid_to is not None and valid_to <= valid_from:
            raise ValidationError("valid_to must be after valid_from", field="valid_to")
        if bill_day is not None and not 1 <= bill_day <= 28:
            raise ValidationError("bill_day must be between 1 and 28", field="bill_day")
        self.store.get(tariff_id)
        if site_id is not None:
            self.repo.get_site(site_id)
        else:
            self.repo.get_asset(asset_id)  # type: ignore[arg-type]
        return self.store.assign(Assignment(0, tariff_id, site_id, asset_id, valid_from, valid_to, bill_day))

    # -- bills -----------------------------------------------------------------------------------
    def site_meters(self, site_id: str) -> list[str]:
        """The meters a site's bill sums: top-level assets of kind ``meter`` that carry energy, power or a counter."""
        return [
            a.id for a in self.repo.list_assets(site_id=site_id, kind=AssetKind.METER)
            if a.parent_id is None and any(self.repo.find_series(a.id, q) for q in ENERGY_QUANTITIES)
        ]

    def bills(
        self, *, site_id: str | None = None, asset_id: str | None = None, start: datetime, end: datetime,
        now: datetime | None = None,
    ) -> list[SiteBill]:
        """One bill per billing period overlapping ``[start, end)`` (UTC), under the assignment valid then.

        A period is billed whole, under the assignment valid on its first day; a period whose first
        day no assignment covers is left out.

        Raises:
            NotFoundError: unknown site or asset, no meter, or no tariff assignment (naming ``tariff``).
            ValidationError: ``end`` not after ``start`` or too many periods.
        """
        if site_id is not None:
            site = self.repo.get_site(site_id)
            meters = self.site_meters(site_id)
            if not meters:
                raise NotFoundError(f"site {site_id!r} has no top-level meter to bill", field="site_id")
            assignments = self.store.assignments(site_id=site_id)
        else:
            asset = self.repo.get_asset(asset_id)  # type: ignore[arg-type]
            site = self.repo.get_site(asset.site_id)
            meters = [asset.id]
            assignments = self.store.assignments(asset_id=asset_id)
        if not assignments:
            raise NotFoundError(f"{'site ' + site_id if site_id else 'asset ' + str(asset_id)} has no tariff assignment", field="tariff")
        tz = zone(site.timezone)
        out: list[SiteBill] = []
        for assignment in assignments:
            periods = [
                p for p in billing_periods(start, end, tz, bill_day=assignment.bill_day)
                if p.first_day >= assignment.valid_from and (assignment.valid_to is None or p.first_day < assignment.valid_to)
            ]
            if not periods:
                continue
            tariff = self.tariff(assignment.tariff_id).tariff
            lookback = self._lookback(tariff, periods[0], tz, assignment)
            all_periods = lookback + periods
            meter = self.meter(meters, all_periods[0].start, all_periods[-1].end, tz, tariff, now)
            bills = compute_bills(tariff, meter, all_periods, tz)[len(lookback):]
            clock_now = now or datetime.now(UTC)
            for bill in bills:
                if bill.period.end > clock_now:
                    bill.notes.append("the billing period has not ended yet: a running bill of the data so far")
            out += [SiteBill(b, assignment.tariff_id, site.timezone) for b in bills]
        return sorted(out, key=lambda sb: sb.bill.period.start)

    @staticmethod
    def _lookback(tariff: Tariff, first: BillingPeriod, tz: ZoneInfo, assignment: Assignment) -> list[BillingPeriod]:
        """Earlier periods (within the assignment) that the first requested bill depends on: the months a
        ratchet looks back at; for net metering the bills since January, whose surplus rolls over, and for an
        annual minimum charge the bills since January, which it is compared with."""
        begins = []
        if tariff.ratchet is not None and tariff.ratchet.percent > 0:
            year, month = divmod(first.first_day.year * 12 + first.first_day.month - 1 - tariff.ratchet.window_months, 12)
            begins.append(date(year, month + 1, min(first.first_day.day, 28)))
        if tariff.export_rule is ExportRule.NET_METERING or (tariff.min_charge is not None and tariff.min_charge.per == "year"):
            begins.append(date(first.first_day.year, 1, assignment.bill_day or 1))
        if not begins:
            return []
        begin = max(min(begins), assignment.valid_from)
        if begin >= first.first_day:
            return []
        return [p for p in billing_periods(local_midnight(begin, tz), first.start, tz, bill_day=assignment.bill_day)
                if p.first_day >= assignment.valid_from and p.end <= first.start]

    def meter(self, asset_ids: list[str], start: datetime, end: datetime, tz: ZoneInfo, tariff: Tariff, now: datetime | None) -> MeterIntervals:
        """Import/export per 15 minutes (hourly when every series is hourly and the site's hours are
        whole UTC hours) of the summed assets over ``[start, end)``, split per interval by
        :func:`~digitaltwin.services.interval_flows.interval_flows` (the meter rules and sign
        conventions of the energy report), and summed by :meth:`MeterIntervals.combine`: every meter's
        data counts where it exists, a meter without data in an interval contributes 0 kWh there
        (the result keeps which meter lacks which intervals, for the bill's completeness and notes),
        and an interval is missing only when no meter has data in it. A meter without an export
        side exports nothing. Meters of different cadences share the finer grid: an hourly value is
        spread evenly over its quarter hours, as in the energy report."""
        infos = [pick_energy_series(self.repo, a) for a in asset_ids]
        hourly = all((i.interval_seconds or 0) >= 3600 for i in infos)
        edges_us = window_edges_us(start, end, Bucket.HOUR if hourly else Bucket.QUARTER_HOUR, tz)
        first, last = int(edges_us[0]), int(edges_us[-1])
        step = 3600 if hourly and first % 3_600_000_000 == 0 and last % 3_600_000_000 == 0 else 900
        # A range that does not start or end on the grid (a cost query from 10:07) takes whole intervals.
        step_us = step * 1_000_000
        first, last = first - first % step_us, -(-last // step_us) * step_us
        parts = []
        for asset_id in asset_ids:
            flows = interval_flows(self.repo, asset_id, start=from_epoch_us(first), end=from_epoch_us(last),
                                   step=timedelta(seconds=step), max_hold=self.max_hold, now=now)
            parts.append((asset_id, flows.import_kwh, flows.export_kwh))
        starts = first // 1_000_000 + step * np.arange((last - first) // step_us, dtype=np.int64)
        price = self._prices(tariff, starts) if tariff.price_asset_id else None
        return MeterIntervals.combine(starts, step, parts, price)

    def dynamic_prices(self, tariff: Tariff, starts: np.ndarray) -> np.ndarray:
        """The dynamic price (per kWh) at each interval start (epoch seconds) of a tariff with a price asset."""
        return self._prices(tariff, starts)

    def _prices(self, tariff: Tariff, starts: np.ndarray) -> np.ndarray:
        """The dynamic price at each interval start: the latest ``price`` reading at or before it, for up to a day."""
        info = self.repo.find_series(tariff.price_asset_id, "price")  # type: ignore[arg-type]
        if info is None:
            raise NotFoundError(f"price asset {tariff.price_asset_id!r} has no price readings", field="price_asset")
        first = datetime.fromtimestamp(float(starts[0]), UTC) - PRICE_MAX_HOLD
        last = datetime.fromtimestamp(float(starts[-1]) + 1, UTC)
        ts, values = self.repo.series_arrays(info.id, start=first, end=last)
        idx = np.searchsorted(ts, starts, side="right") - 1
        ok = (idx >= 0) & (starts - ts[np.clip(idx, 0, None)] <= PRICE_MAX_HOLD.total_seconds()) if ts.size else np.zeros(starts.size, bool)
        return np.where(ok, values[np.clip(idx, 0, max(ts.size - 1, 0))] if ts.size else np.nan, np.nan)

