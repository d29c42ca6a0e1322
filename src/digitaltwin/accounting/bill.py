"""Bills with line items: one rule per line, applied to one billing period's intervals.

Inputs are per-interval grid import and export in kWh (both >= 0, NaN where missing) of one
meter, stamped at interval starts, and a :class:`~digitaltwin.accounting.tariff.Tariff`.
Schedules are read on the site's local wall clock (month, hour, Saturday/Sunday = weekend).

The rules, in the order a bill lists them (sources: URDB API documentation, version 8;
NREL SAM Utilityrate5, whose monthly bills the tests reproduce):

* **fixed**: per day x days in the period, per month once, per year / 12.
* **energy** per time-of-use period and tier. Tier limits count the period's kWh in total
  over all TOU periods (``kWh``), times the period's peak kW (``kWh/kW``), times its days
  (``daily``); each TOU period's energy is spread over the tiers in proportion to its share
  of the total (SAM's rule). What counts as billed energy follows the export rule:
  net metering nets import and export per TOU period over the bill; net billing
  (instantaneous) and buy-all/sell-all bill every interval's import and credit its export;
  net billing (hourly) nets within each clock hour first; with no export rule, exports
  earn nothing and offset nothing.
* **export credit**: exported (or net-surplus) kWh at the tier's ``sell`` rate or the
  tariff's feed-in price, negative.
* **demand**: the peak of the period's mean power over each metering interval (or over
  ``demand_window_minutes`` blocks), flat (all hours, by billing month), per TOU demand
  period, and per coincident window; tiered over kW; the flat charge uses the ratcheted
  billing demand when the tariff has a ratchet. Each line names the peak and its time.
* **minimum**: when fixed + energy + demand (at least 0) is below the minimum charge, the
  difference (SAM's rule); an annual minimum is settled on the December bill against the year's
  sum of those amounts.
* **tax**: each tax percentage of the subtotal.

Amounts are kept unrounded; :func:`round_money` rounds line items and the total to cents
(half up; whole won or yen for KRW and JPY) only for display, and the total is the rounded sum of the unrounded items.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from digitaltwin.accounting.demand import demand_series, peak_of, tier_amount, tou_peaks
from digitaltwin.accounting.periods import BillingPeriod
from digitaltwin.accounting.tariff import DemandPeriod, ExportRule, Tariff, TierUnit, TouDemand

_INF = math.inf


#: ISO 4217 minor units of currencies that do not have two (KRW and JPY bills are in whole units).
MINOR_UNITS = {"KRW": 0, "JPY": 0, "ISK": 0, "CLP": 0, "VND": 0, "BHD": 3, "KWD": 3, "OMR": 3, "JOD": 3, "TND": 3}


def round_money(amount: float, currency: str = "USD") -> float:
    """``amount`` rounded to the currency's minor unit (cents for most), halves away from zero."""
    step = Decimal(1).scaleb(-MINOR_UNITS.get(currency, 2))
    return float(Decimal(repr(float(amount))).quantize(step, rounding=ROUND_HALF_UP))


@dataclass(frozen=True, slots=True)
class MeterIntervals:
    """The grid exchange per interval of one meter, or of several meters summed (a site).

    Attributes:
        start_s: interval starts, epoch seconds (int64), ascending, shape ``(n,)``.
        import_kwh, export_kwh: energy from and to the grid per interval (kWh, >= 0;
            NaN import marks an interval without any data).
        interval_s: interval length in seconds (900 for 15-minute data).
        price_per_kwh: dynamic energy price per interval (native tariffs), or None.
        meters: the ids of the summed meters (see :meth:`combine`); empty for one unnamed meter.
        present: shape ``(len(meters), n)`` bool, which meter has data in which interval;
            None when ``meters`` is empty (then a finite import is the presence).
    """

    start_s: np.ndarray
    import_kwh: np.ndarray
    export_kwh: np.ndarray
    interval_s: int
    price_per_kwh: np.ndarray | None = None
    meters: tuple[str, ...] = ()
    present: np.ndarray | None = None

    @classmethod
    def combine(
        cls, start_s: np.ndarray, interval_s: int, meters: Sequence[tuple[str, np.ndarray, np.ndarray]],
        price_per_kwh: np.ndarray | None = None,
    ) -> MeterIntervals:
        """The sum of several meters on one grid: a site's coincident import and export per interval.

        Args:
            start_s: interval starts (epoch seconds), shape ``(n,)``, the grid every meter is on.
            interval_s: interval length in seconds.
            meters: ``(meter id, import kWh, export kWh)`` per meter, arrays of shape ``(n,)``;
                NaN import where the meter has no data, NaN export where nothing meters that side.
            price_per_kwh: dynamic price per interval, or None.

        The rule: every meter's data is summed where it exists. A meter without data in an interval
        contributes 0 kWh there (its absence is kept in :attr:`present`, so a bill can say which
        meter lacks how many intervals); an interval is missing (NaN import) only when no meter has
        data in it. So the sum never drops energy that was metered, and any peak taken from it is
        the sum over the meters with data: a lower bound of the true coincident peak where a meter
        is missing. An unmetered export side counts as 0 kWh.
        """
        if not meters:
            raise ValueError("combine needs at least one meter")
        imports = np.vstack([np.asarray(imp, dtype=np.float64) for _, imp, _ in meters])
        present = np.isfinite(imports)
        import_kwh = np.where(present.any(axis=0), np.where(present, imports, 0.0).sum(axis=0), np.nan)
        export_kwh = np.vstack([np.nan_to_num(np.asarray(exp, dtype=np.float64)) for _, _, exp in meters]).sum(axis=0)
        return cls(np.asarray(start_s), import_kwh, export_kwh, int(interval_s), price_per_kwh,
                   tuple(m for m, _, _ in meters), present)

    def presence(self) -> np.ndarray:
        """Shape ``(max(len(meters), 1), n)`` bool: which meter has data in which interval."""
        return self.present if self.present is not None else np.isfinite(self.import_kwh)[None, :]

    def bounds(self, start: datetime, end: datetime) -> tuple[int, int]:
        """Index range of the intervals starting in ``[start, end)``."""
        a, b = np.searchsorted(self.start_s, [start.timestamp(), end.timestamp()], side="left")
        return int(a), int(b)

    def window(self, start: datetime, end: datetime) -> MeterIntervals:
        """The intervals starting in ``[start, end)``."""
        a, b = self.bounds(start, end)
        price = None if self.price_per_kwh is None else self.price_per_kwh[a:b]
        present = None if self.present is None else self.present[:, a:b]
        return MeterIntervals(self.start_s[a:b], self.import_kwh[a:b], self.export_kwh[a:b], self.interval_s, price,
                              self.meters, present)


@dataclass(frozen=True, slots=True)
class LineItem:
    """One line of a bill; ``amount`` in the bill's currency (unrounded, negative for credits)."""

    kind: str  # fixed | energy | export_credit | demand | minimum | tax
    description: str
    amount: float
    quantity: float | None = None
    unit: str | None = None
    rate: float | None = None
    period: int | None = None
    tier: int | None = None
    peak_kw: float | None = None
    peak_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class MeterCoverage:
    """How many of a billing period's intervals one billed meter has data in."""

    asset_id: str
    expected_intervals: int
    present_intervals: int


@dataclass(frozen=True, slots=True)
class Bill:
    """The bill of one billing period.

    ``expected_intervals`` and ``present_intervals`` state completeness, counted per meter and
    summed over the billed meters (one meter: the period's intervals); ``meters`` gives each
    meter's count. A bill computed on incomplete data is marked (``complete`` False) and its
    notes name each meter that lacks data, instead of under-billing silently.
    """

    period: BillingPeriod
    tariff_name: str
    currency: str
    line_items: list[LineItem]
    import_kwh: float
    export_kwh: float
    peak_kw: float | None
    peak_at: datetime | None
    expected_intervals: int
    present_intervals: int
    notes: list[str] = field(default_factory=list)
    surplus_kwh: tuple[float, ...] | None = None  # net metering: surplus per TOU period left at the end
    minimum_basis: float = 0.0  # fixed + energy + demand, at least 0: what a minimum charge is compared with
    meters: tuple[MeterCoverage, ...] = ()  # per billed meter, when the meter data names its meters

    @property
    def subtotal(self) -> float:
        return sum(i.amount for i in self.line_items if i.kind != "tax")

    @property
    def total(self) -> float:
        return sum(i.amount for i in self.line_items)

    @property
    def completeness(self) -> float:
        return 1.0 if self.expected_intervals == 0 else min(self.present_intervals / self.expected_intervals, 1.0)

    @property
    def complete(self) -> bool:
        return self.present_intervals >= self.expected_intervals


@dataclass(frozen=True, slots=True)
class LocalClock:
    """Local wall-clock fields of each interval start: month (0..11), hour (0..23), weekend flag,
    and ``key`` = month * 48 + weekend * 24 + hour, the index into a flattened pair of schedules."""

    month: np.ndarray
    hour: np.ndarray
    weekend: np.ndarray
    key: np.ndarray

    @classmethod
    def of(cls, start_s: np.ndarray, tz: ZoneInfo) -> LocalClock:
        local = pd.to_datetime(start_s, unit="s", utc=True).tz_convert(tz)
        month, hour = np.asarray(local.month) - 1, np.asarray(local.hour)
        weekend = np.asarray(local.day_of_week) >= 5
        return cls(month, hour, weekend, month * 48 + weekend * 24 + hour)

    def slice(self, a: int, b: int) -> LocalClock:
        return LocalClock(self.month[a:b], self.hour[a:b], self.weekend[a:b], self.key[a:b])

    def take(self, index: np.ndarray) -> LocalClock:
        return LocalClock(self.month[index], self.hour[index], self.weekend[index], self.key[index])

    def period(self, weekday: Sequence[Sequence[int]], weekend: Sequence[Sequence[int]]) -> np.ndarray:
        """The schedule's period index of every interval."""
        table = np.stack([np.asarray(weekday, dtype=np.int64), np.asarray(weekend, dtype=np.int64)], axis=1)  # 12 x 2 x 24
        return table.reshape(-1)[self.key]


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(float(epoch_s), tz=UTC)


def _tier_charges(
    use: np.ndarray, bounds: list[list[float]], rates: list[list[float]]
) -> list[tuple[int, int, float, float]]:
    """SAM's tier rule: (period, tier, kWh, rate) with tier limits on the total over periods."""
    total = float(use.sum())
    out = []
    if total <= 0:
        return out
    for p, energy in enumerate(use.tolist()):
        if energy <= 0:
            continue
        share = energy / total
        lower = 0.0
        for k, upper in enumerate(bounds[p]):
            kwh = share * (min(total, upper) - lower)
            if kwh > 0:
                out.append((p, k, kwh, rates[p][k]))
            if total <= upper:
                break
            lower = upper
    return out


def _energy_lines(
    tariff: Tariff, meter: MeterIntervals, clock: LocalClock, ok: np.ndarray, days: int, peak_kw: float, carried: np.ndarray | None
) -> tuple[list[LineItem], np.ndarray | None]:
    """Energy and export lines, and (net metering) the surplus kWh per TOU period left at the end of the bill."""
    imp = np.where(ok, meter.import_kwh, 0.0)
    exp = np.where(ok, meter.export_kwh, 0.0)
    rule = tariff.export_rule
    if tariff.price_asset_id is not None:
        base = meter.price_per_kwh if meter.price_per_kwh is not None else np.full(imp.size, np.nan)
        price = base + tariff.energy_markup
        priced = ok & np.isfinite(price)
        lines = [LineItem("energy", "energy at the dynamic price", float(np.sum(imp[priced] * price[priced])),
                          float(imp[priced].sum()), "kWh")]
        if rule is not ExportRule.NONE and exp.sum() > 0:
            feed = tariff.feed_in_price
            credit = float(np.sum(exp[priced] * base[priced])) if feed is None else float(exp.sum()) * feed
            lines.append(LineItem("export_credit", "exported energy", -credit, float(exp.sum()), "kWh", feed))
        return lines, None
    if not tariff.energy_periods or tariff.energy_weekday is None or tariff.energy_weekend is None:
        return [], None
    n = len(tariff.energy_periods)
    period = clock.period(tariff.energy_weekday, tariff.energy_weekend)
    if rule is ExportRule.NET_BILLING_HOURLY:
        hour = meter.start_s // 3600
        hours, first, inverse = np.unique(hour, return_index=True, return_inverse=True)
        net = np.bincount(inverse, imp - exp, minlength=hours.size)
        period_h = period[first]
        use = np.bincount(period_h, np.maximum(net, 0.0), minlength=n)
        surplus = np.bincount(period_h, np.maximum(-net, 0.0), minlength=n)
    else:
        imp_p = np.bincount(period, imp, minlength=n)
        exp_p = np.bincount(period, exp, minlength=n)
        if rule is ExportRule.NET_METERING:
            net = imp_p - exp_p - (carried if carried is not None else 0.0)
            use, surplus = np.maximum(net, 0.0), np.maximum(-net, 0.0)
        elif rule is ExportRule.NONE:
            use, surplus = imp_p, np.zeros(n)
        else:
            use, surplus = imp_p, exp_p
    bounds, buy, sell = [], [], []
    for ep in tariff.energy_periods:
        scale = {TierUnit.KWH: 1.0, TierUnit.KWH_PER_KW: peak_kw, TierUnit.KWH_DAILY: float(days),
                 TierUnit.KWH_PER_KW_DAILY: peak_kw * days}[ep.unit]
        bounds.append([_INF if t.max is None else t.max * scale for t in ep.tiers])
        buy.append([t.rate for t in ep.tiers])
        sell.append([t.sell if tariff.feed_in_price is None else tariff.feed_in_price for t in ep.tiers])
    lines = [
        LineItem("energy", f"energy, period {p} tier {k}", kwh * rate, kwh, "kWh", rate, p, k)
        for p, k, kwh, rate in _tier_charges(use, bounds, buy)
    ]
    if rule is ExportRule.NET_METERING:
        # SAM's rule: a period's surplus is not paid monthly; its kWh roll over to the next bill
        for p, kwh in enumerate(surplus.tolist()):
            if kwh > 0:
                lines.append(LineItem("export_credit", f"net metering surplus, period {p}, carried to the next bill", 0.0, kwh, "kWh", 0.0, p))
        return lines, surplus
    for p, k, kwh, rate in _tier_charges(surplus, bounds, sell):
        lines.append(LineItem("export_credit", f"exported energy, period {p} tier {k}", -kwh * rate, kwh, "kWh", rate, p, k))
    return lines, None


#: Weekday hours whose periods pair a month's TOU periods with the next month's for net-metering rollover (SAM).
ROLLOVER_HOURS = (0, 5, 11, 17)


def rollover(tariff: Tariff, surplus: np.ndarray, from_month: int, to_month: int) -> tuple[np.ndarray, float]:
    """Carry net-metering surplus kWh per period of billing month ``from_month`` (1..12) into ``to_month``.

    A period is matched to the next month's period at the same time of day: the first of the weekday
    hours :data:`ROLLOVER_HOURS` at which it runs (SAM Utilityrate5's ``transfer_surplus``). Returns the
    carried kWh per period and the kWh of periods that run at none of those hours (not carried).
    """
    assert tariff.energy_weekday is not None
    source = [tariff.energy_weekday[from_month - 1][h] for h in ROLLOVER_HOURS]
    target = [tariff.energy_weekday[to_month - 1][h] for h in ROLLOVER_HOURS]
    carried, lost = np.zeros(surplus.size), 0.0
    for p, kwh in enumerate(surplus.tolist()):
        if kwh <= 0:
            continue
        if p in source:
            carried[target[source.index(p)]] += kwh
        else:
            lost += kwh
    return carried, lost


def _demand_lines(kind: str, demand: TouDemand, kw: np.ndarray, clock: LocalClock, starts: np.ndarray) -> list[LineItem]:
    period = clock.period(demand.weekday, demand.weekend)
    return [
        LineItem("demand", f"{kind} demand, period {p}", amount, peak, "kW", demand.periods[p].tiers[0].rate, p, None, peak, at)
        for p, peak, at, amount in tou_peaks(demand, kw, period, starts)
    ]


def compute_bill(
    tariff: Tariff,
    meter: MeterIntervals,
    period: BillingPeriod,
    tz: ZoneInfo,
    *,
    prior_peaks_kw: Sequence[tuple[date, float]] = (),
    clock: LocalClock | None = None,
    carried_kwh: np.ndarray | None = None,
    year_to_date: float = 0.0,
) -> Bill:
    """The bill of ``period`` from the intervals of ``meter`` that start in it.

    Args:
        prior_peaks_kw: (first day, peak kW) of earlier billing periods, for a ratchet.
        clock: :meth:`LocalClock.of` the whole ``meter`` when the caller has it already.
        carried_kwh: net metering: surplus kWh per TOU period carried in from the previous bill.
        year_to_date: an annual minimum: the sum of :attr:`Bill.minimum_basis` of the year's earlier bills.
    """
    a, b = meter.bounds(period.start, period.end)
    clock = LocalClock.of(meter.start_s[a:b], tz) if clock is None else clock.slice(a, b)
    meter = meter.window(period.start, period.end)
    ok = np.isfinite(meter.import_kwh)
    expected = int(round((period.end - period.start).total_seconds() / meter.interval_s))
    kw, block_first = demand_series(tariff, meter.start_s, meter.import_kwh, meter.interval_s, ok)
    block_starts = meter.start_s[block_first] if block_first.size else meter.start_s[:0]
    overall = peak_of(kw, np.ones(kw.size, dtype=bool))
    peak_kw = overall[0] if overall else 0.0
    peak_at = _utc(block_starts[overall[1]]) if overall else None

    lines: list[LineItem] = []
    for charge in tariff.fixed:
        count = {"day": period.days, "month": 1, "year": 1 / 12}[charge.per]
        lines.append(LineItem("fixed", f"fixed charge per {charge.per}", charge.amount * count, count, charge.per, charge.amount))
    energy_lines, surplus = _energy_lines(tariff, meter, clock, ok, period.days, max(peak_kw, 0.0), carried_kwh)
    lines += energy_lines

    block_clock = clock.take(block_first)
    if tariff.flat_demand_periods and tariff.flat_demand_months is not None and overall is not None:
        dp: DemandPeriod = tariff.flat_demand_periods[tariff.flat_demand_months[period.month - 1]]
        billing_kw = peak_kw
        if tariff.ratchet is not None and tariff.ratchet.percent > 0:
            r = tariff.ratchet
            earlier = [kw_ for first, kw_ in prior_peaks_kw
                       if 0 < (period.first_day.year - first.year) * 12 + period.first_day.month - first.month <= r.window_months
                       and r.months[first.month - 1]]
            if earlier:
                billing_kw = max(peak_kw, r.percent * max(earlier))
        note = "" if billing_kw == peak_kw else f" (ratchet: billing demand {billing_kw:.3f} kW)"
        lines.append(LineItem("demand", f"flat demand{note}", tier_amount(billing_kw, dp.tiers), billing_kw, "kW",
                              dp.tiers[0].rate, None, None, peak_kw, peak_at))
    if tariff.tou_demand is not None:
        lines += _demand_lines("TOU", tariff.tou_demand, kw, block_clock, block_starts)
    if tariff.coincident is not None:
        lines += _demand_lines("coincident", tariff.coincident, kw, block_clock, block_starts)

    so_far = max(sum(i.amount for i in lines), 0.0)  # what the minimum charge is compared with (SAM)
    if tariff.min_charge is not None and tariff.min_charge.per != "year":
        minimum = tariff.min_charge.amount * (period.days if tariff.min_charge.per == "day" else 1)
        if so_far < minimum:
            lines.append(LineItem("minimum", "minimum charge top-up", minimum - so_far, rate=minimum))
    elif tariff.min_charge is not None and period.month == 12:  # an annual minimum is settled on the December bill
        year_total = year_to_date + so_far
        if year_total < tariff.min_charge.amount:
            lines.append(LineItem("minimum", "annual minimum charge top-up", tariff.min_charge.amount - year_total,
                                  year_total, "year", tariff.min_charge.amount))
    subtotal = sum(i.amount for i in lines)
    for tax in tariff.taxes:
        lines.append(LineItem("tax", tax.name, subtotal * tax.percent / 100.0, subtotal, tariff.currency, tax.percent))

    notes = []
    if carried_kwh is not None and carried_kwh.sum() > 0:
        notes.append(f"{carried_kwh.sum():,.3f} kWh of net metering surplus carried in from the previous bill")
    presence = meter.presence()
    coverage = tuple(MeterCoverage(m, expected, int(presence[i].sum())) for i, m in enumerate(meter.meters))
    for name, present in [(c.asset_id, c.present_intervals) for c in coverage] or [(None, int(ok.sum()))]:
        if present < expected:
            who = f"{name}: " if name is not None else ""
            counted = " (no data there, counted as 0 kWh)" if len(coverage) > 1 else ""
            notes.append(f"{who}{expected - present} of {expected} intervals missing{counted}: "
                         "charges cover the metered intervals only")
    has_demand = bool(tariff.flat_demand_periods) or tariff.tou_demand is not None or tariff.coincident is not None
    if has_demand and presence.shape[0] > 1 and bool((presence.any(axis=0) & ~presence.all(axis=0)).any()):
        notes.append("demand is the sum over the meters with data: where a meter has none it counts as 0 kW, "
                     "so a billed peak may be below the true coincident peak")
    return Bill(
        period, tariff.name, tariff.currency, lines,
        float(np.nansum(meter.import_kwh)), float(np.nansum(meter.export_kwh)),
        peak_kw if overall else None, peak_at, expected * presence.shape[0], int(presence.sum()), notes,
        None if surplus is None else tuple(surplus.tolist()), so_far, coverage,
    )


def compute_bills(tariff: Tariff, meter: MeterIntervals, periods: Sequence[BillingPeriod], tz: ZoneInfo) -> list[Bill]:
    """Bills of consecutive ``periods``; each period's peak feeds the ratchet of later ones.

    Net metering: a bill's surplus kWh roll over to the next bill (see :func:`rollover`) until
    the annual true-up after December (SAM's default true-up month): surplus left then is not
    compensated, because URDB has no year-end rate, and the December bill says so.
    """
    bills: list[Bill] = []
    history: list[tuple[date, float]] = []
    clock = LocalClock.of(meter.start_s, tz)  # once: the local-time conversion is the costly step
    carried: np.ndarray | None = None
    year_to_date: dict[int, float] = {}
    for i, period in enumerate(periods):
        year = period.first_day.year
        bill = compute_bill(tariff, meter, period, tz, prior_peaks_kw=history, clock=clock, carried_kwh=carried,
                            year_to_date=year_to_date.get(year, 0.0))
        year_to_date[year] = year_to_date.get(year, 0.0) + bill.minimum_basis
        if bill.peak_kw is not None:
            history.append((period.first_day, bill.peak_kw))
        carried = None
        if bill.surplus_kwh is not None and sum(bill.surplus_kwh) > 0:
            following = periods[i + 1] if i + 1 < len(periods) else None
            surplus = np.array(bill.surplus_kwh)
            if period.month == 12:
                bill.notes.append(f"{surplus.sum():,.3f} kWh net metering surplus at the annual true-up: not compensated "
                                  "(the tariff states no year-end rate)")
            elif following is not None and following.first_day == period.last_day + timedelta(days=1):
                carried, lost = rollover(tariff, surplus, period.month, following.month)
                if lost > 0:
                    bill.notes.append(f"{lost:,.3f} kWh surplus of a period that runs at none of the weekday hours "
                                      "00, 05, 11, 17 cannot roll over")
        bills.append(bill)
    return bills
