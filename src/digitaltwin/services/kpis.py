"""KPIs of an asset or a site over a period, and the site's metering tree.

Energy is taken on a grid of 15-minute cells of the site's calendar (the demand interval of
:mod:`digitaltwin.accounting.kpis`); a site's profile is the sum of its root meters
(:mod:`digitaltwin.accounting.metering_tree`), so no child is counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np

from digitaltwin.accounting.carbon import bucket_emissions, split_net
from digitaltwin.accounting.kpis import LoadKpis, load_kpis, per_quantity
from digitaltwin.accounting.metering_tree import MeteringTree, TreeInput, build_tree
from digitaltwin.analytics.buckets import Bucket
from digitaltwin.analytics.energy import aggregate, segments_for
from digitaltwin.domain.assets import FLOOR_AREA, Asset, Site
from digitaltwin.domain.errors import ValidationError
from digitaltwin.domain.timestamps import zone
from digitaltwin.services.carbon import energy_segments, site_intensity
from digitaltwin.services.energy import ENERGY_QUANTITIES, pick_energy_series, read_window, window_edges_us
from digitaltwin.storage.repository import Repository, SeriesInfo

#: The cumulative counter of units produced, for energy per unit.
PRODUCTION_QUANTITY = "production_total"
#: Longest KPI period (a 15-minute grid of it must stay under the bucket cap).
MAX_PERIOD = timedelta(days=5 * 366)


@dataclass(frozen=True, slots=True)
class Kpis:
    """KPIs of one asset or site over ``[start, end)`` (see :mod:`digitaltwin.accounting.kpis`).

    ``co2_kg`` is None when the site names no carbon intensity (``co2_source`` None);
    ``cost_per_kwh`` (in ``currency``) is None without a tariff for the period (:func:`cost_per_kwh`).
    """

    subject: str
    start: datetime
    end: datetime
    timezone: str
    load: LoadKpis
    floor_area_m2: float | None
    energy_per_m2_kwh: float | None
    production_units: float | None
    energy_per_unit_kwh: float | None
    cost_per_kwh: float | None
    currency: str | None
    co2_kg: float | None
    avoided_co2_kg: float | None
    co2_uncovered_kwh: float | None
    co2_source: str | None
    assets: list[str]


def _check_period(start: datetime, end: datetime) -> None:
    if end <= start:
        raise ValidationError("end must be after start", field="end")
    if end - start > MAX_PERIOD:
        raise ValidationError(f"period longer than {MAX_PERIOD.days} days", field="end")


def _energy_series(repo: Repository, asset_id: str) -> SeriesInfo | None:
    for quantity in ENERGY_QUANTITIES:
        info = repo.find_series(asset_id, quantity)
        if info is not None:
            return info
    return None


def _production(repo: Repository, asset_ids: list[str], start: datetime, end: datetime) -> float | None:
    """Units produced over ``[start, end)``: the increase of each asset's ``production_total`` counter, summed."""
    total, found = 0.0, False
    for asset_id in asset_ids:
        info = repo.find_series(asset_id, PRODUCTION_QUANTITY)
        if info is None:
            continue
        readings = read_window(repo, info, start, end)
        seg = segments_for(info.kind, readings.ts_s, readings.values, interval_s=None, max_hold_s=0.0, until_s=end.timestamp())
        value = aggregate(seg, np.array([start.timestamp(), end.timestamp()]), readings.ts_s).energy_kwh[0]
        if np.isfinite(value):
            total, found = total + float(value), True
    return total if found else None


def cost_per_kwh(
    repo: Repository, asset_ids: list[str], *, start: datetime, end: datetime, energy_kwh: float | None,
    max_hold: timedelta, site_id: str | None = None,
) -> tuple[float | None, str | None]:
    """Cost per kWh over ``[start, end)`` and the tariff's currency: the bills' cost over the bills' energy.

    For whole billing periods it is the bills' totals (fixed, energy, demand, minimum charges,
    taxes) over the net energy (import - export, kWh) those bills count: the site's bills for a
    site (``site_id``, the sum of the meters the site's bill reads), or for an asset its own
    tariff's bills, else, when it is its site's only billed meter, the site's. For a range that
    cuts a billing period, or an asset billed as part of several meters, only the energy charges
    of the range's intervals are known (``accounting.cost``, as ``energy?with=cost``): those over
    the net energy of the same intervals. So the figure always matches the bill's own cost and
    energy; a meter without data in an interval counts nothing there, as in the bill. None (and
    no currency) without a tariff; None with the currency when that energy is 0 or there is no data.
    """
    from digitaltwin.domain.errors import NotFoundError
    from digitaltwin.services.billing import BillingService
    from digitaltwin.services.energy_cost import bucket_costs, site_bucket_costs

    if not energy_kwh:
        return None, None
    service = BillingService(repo, max_hold=max_hold)

    def whole_bills(**subject: str) -> list | None:  # noqa: ANN202
        try:
            bills = service.bills(start=start, end=end, **subject)
        except NotFoundError:
            return None
        inside = bool(bills) and all(start <= b.bill.period.start and b.bill.period.end <= end for b in bills)
        return bills if inside else None

    candidates: list[dict[str, str]] = [{"site_id": site_id}] if site_id is not None else []
    if site_id is None and len(asset_ids) == 1:
        asset = repo.get_asset(asset_ids[0])
        candidates.append({"asset_id": asset.id})
        billed = service.site_meters(asset.site_id)
        if billed == [asset.id]:
            candidates.append({"site_id": asset.site_id})
    for subject in candidates:
        bills = whole_bills(**subject)
        if bills is not None:
            billed_kwh = sum(b.bill.import_kwh - b.bill.export_kwh for b in bills)
            currency = bills[0].bill.currency
            return (sum(b.bill.total for b in bills) / billed_kwh if billed_kwh else None), currency
    parts = ([site_bucket_costs(service, site_id, [start, end])] if site_id is not None
             else [bucket_costs(service, a, [start, end]) for a in asset_ids])
    cost = kwh = 0.0
    currency = None
    for part in parts:
        if part.currency is None:
            return None, None
        currency = part.currency
        if part.costs[0] is not None and part.energy_kwh[0] is not None:
            cost, kwh = cost + part.costs[0], kwh + part.energy_kwh[0]
    return (cost / kwh if kwh else None), currency


def _kpis(
    repo: Repository, site: Site, subject: str, meters: list[tuple[Asset, SeriesInfo]], *,
    start: datetime, end: datetime, max_hold: timedelta, now: datetime | None,
    floor_area: float | None, production_assets: list[str], site_kpis: bool = False,
) -> Kpis:
    tz = zone(site.timezone)
    edges_us = window_edges_us(start, end, Bucket.QUARTER_HOUR, tz)
    edges_s = edges_us / 1e6
    n = edges_s.size - 1
    energy = np.full(n, np.nan)
    covered_sum = np.zeros(n)  # hours covered, summed over the meters (completeness)
    covered_any = np.zeros(n)  # hours covered by at least the best-covered meter (power)
    intensity = site_intensity(repo, site, start=start, end=end)
    co2 = avoided = uncovered = 0.0
    co2_any = False
    for meter, info in meters:
        seg = energy_segments(repo, meter, info, start=start, end=end, max_hold=max_hold, now=now)
        totals = aggregate(seg, edges_s, np.empty(0))
        energy = np.where(np.isnan(energy), totals.energy_kwh, energy + np.nan_to_num(totals.energy_kwh))
        covered_sum += totals.covered_hours
        covered_any = np.maximum(covered_any, totals.covered_hours)
        if intensity is not None:
            imports, exports = split_net(seg)
            em = bucket_emissions(imports, exports, np.array([edges_s[0], edges_s[-1]]), intensity)
            if np.isfinite(em.co2_kg[0]):
                co2, avoided, co2_any = co2 + float(em.co2_kg[0]), avoided + float(em.avoided_co2_kg[0]), True
            uncovered += float(em.uncovered_kwh[0])
    now_s = (now or datetime.now(UTC)).timestamp()
    expected_h = max(min(end.timestamp(), now_s) - start.timestamp(), 0.0) / 3600.0
    load = load_kpis(energy, covered_any, edges_s, tz=tz, expected_hours=expected_h)
    if meters and expected_h > 0:  # the share of every meter's expected hours covered
        load = replace(load, completeness=min(float(covered_sum.sum()) / (expected_h * len(meters)), 1.0))
    production = _production(repo, production_assets, start, end)
    ids = [a.id for a, _ in meters]
    cost, currency = cost_per_kwh(repo, ids, start=start, end=end, energy_kwh=load.energy_kwh, max_hold=max_hold,
                                  site_id=site.id if site_kpis else None)
    return Kpis(
        subject=subject, start=start, end=end, timezone=site.timezone, load=load,
        floor_area_m2=floor_area, energy_per_m2_kwh=per_quantity(load.energy_kwh, floor_area),
        production_units=production, energy_per_unit_kwh=per_quantity(load.energy_kwh, production),
        cost_per_kwh=cost, currency=currency,
        co2_kg=co2 if co2_any else None,
        avoided_co2_kg=avoided if co2_any else None,
        co2_uncovered_kwh=uncovered if intensity is not None else None,
        co2_source=intensity.source if intensity is not None else None,
        assets=ids,
    )


def asset_kpis(
    repo: Repository, asset_id: str, *, start: datetime, end: datetime, max_hold: timedelta, now: datetime | None = None
) -> Kpis:
    """KPIs of one asset's energy over ``[start, end)``; floor area from its ``floor_area_m2``
    attribute, units produced from its ``production_total`` counter.

    Raises:
        NotFoundError: unknown asset, or an asset without an energy-carrying series (naming ``quantity``).
        ValidationError: naming ``end`` for an empty or over-long period (:data:`MAX_PERIOD`).
    """
    _check_period(start, end)
    asset = repo.get_asset(asset_id)
    site = repo.get_site(asset.site_id)
    info = pick_energy_series(repo, asset_id)
    area = _area(asset)
    return _kpis(
        repo, site, asset_id, [(asset, info)], start=start, end=end, max_hold=max_hold, now=now,
        floor_area=area, production_assets=[asset_id],
    )


def _area(asset: Asset) -> float | None:
    value = asset.attributes.get(FLOOR_AREA)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def _meters(repo: Repository, site_id: str) -> tuple[list[Asset], dict[str, SeriesInfo]]:
    assets = repo.list_assets(site_id=site_id)
    series = {a.id: info for a in assets if (info := _energy_series(repo, a.id)) is not None}
    return assets, series


def site_kpis(
    repo: Repository, site_id: str, *, start: datetime, end: datetime, max_hold: timedelta, now: datetime | None = None
) -> Kpis:
    """KPIs of a site: the summed profile of its root meters (see :func:`metering_tree`).

    Floor area is the sum of the root meters' ``floor_area_m2`` (None if any root lacks it);
    units produced are summed over every asset of the site with a ``production_total`` counter.

    Raises:
        NotFoundError: unknown site.
        ValidationError: naming ``end`` for an empty or over-long period.
    """
    _check_period(start, end)
    site = repo.get_site(site_id)
    assets, series = _meters(repo, site_id)
    tree = build_tree([TreeInput(a.id, a.parent_id, a.id in series) for a in assets])
    by_id = {a.id: a for a in assets}
    roots = [(by_id[r], series[r]) for r in tree.roots]
    areas = [_area(a) for a, _ in roots]
    area = float(sum(areas)) if roots and all(x is not None for x in areas) else None  # type: ignore[misc]
    return _kpis(
        repo, site, site_id, roots, start=start, end=end, max_hold=max_hold, now=now,
        floor_area=area, production_assets=[a.id for a in assets], site_kpis=True,
    )


@dataclass(frozen=True, slots=True)
class SiteTree:
    """A site's metering tree over a period, with each meter's series quantity."""

    site_id: str
    start: datetime
    end: datetime
    tree: MeteringTree
    quantities: dict[str, str]


def metering_tree(
    repo: Repository, site_id: str, *, start: datetime, end: datetime, max_hold: timedelta, now: datetime | None = None
) -> SiteTree:
    """Each meter's energy over ``[start, end)``, its metered children and unmetered remainder
    (:func:`digitaltwin.accounting.metering_tree.build_tree`).

    Raises:
        NotFoundError: unknown site.
        ValidationError: naming ``end`` for an empty or over-long period.
    """
    _check_period(start, end)
    repo.get_site(site_id)
    assets, series = _meters(repo, site_id)
    edges_s = np.array([start.timestamp(), end.timestamp()])
    inputs = []
    for asset in assets:
        info = series.get(asset.id)
        energy = None
        if info is not None:
            seg = energy_segments(repo, asset, info, start=start, end=end, max_hold=max_hold, now=now)
            value = aggregate(seg, edges_s, np.empty(0)).energy_kwh[0]
            energy = float(value) if np.isfinite(value) else None
        inputs.append(TreeInput(asset.id, asset.parent_id, info is not None, energy))
    return SiteTree(site_id, start, end, build_tree(inputs), {k: v.quantity for k, v in series.items()})
