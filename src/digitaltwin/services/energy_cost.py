"""Energy cost per bucket of an asset (``GET /api/v1/assets/{id}/energy?with=cost``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from digitaltwin.accounting.cost import interval_costs
from digitaltwin.domain.timestamps import zone
from digitaltwin.services.billing import BillingService


@dataclass(frozen=True, slots=True)
class BucketCosts:
    """Energy cost per bucket (None where there is no data or no tariff) in ``currency``, and the net
    energy (import - export, kWh) of the intervals priced in each bucket (None where none is)."""

    currency: str | None
    costs: list[float | None]
    energy_kwh: list[float | None]


def _local_dates(start_s: np.ndarray, tz: ZoneInfo) -> np.ndarray:
    local = pd.to_datetime(start_s, unit="s", utc=True).tz_convert(tz).tz_localize(None)
    return np.asarray(local.normalize().values.astype("datetime64[D]"))


def bucket_costs(service: BillingService, asset_id: str, edges: list[datetime], *, now: datetime | None = None) -> BucketCosts:
    """Energy cost (see :mod:`digitaltwin.accounting.cost`) of each bucket ``[edges[i], edges[i+1])``.

    The asset's own tariff assignments are used, or its site's when it has none; each 15-minute
    (or hourly) interval is priced under the assignment valid on its local date.
    """
    asset = service.repo.get_asset(asset_id)
    site = service.repo.get_site(asset.site_id)
    assignments = service.store.assignments(asset_id=asset_id) or service.store.assignments(site_id=site.id)
    return _costs(service, [asset_id], assignments, zone(site.timezone), edges, now)


def site_bucket_costs(service: BillingService, site_id: str, edges: list[datetime], *, now: datetime | None = None) -> BucketCosts:
    """As :func:`bucket_costs` for a site: the energy cost of the meters its bill sums
    (:meth:`BillingService.site_meters`, combined as for the bill: a meter without data in an
    interval counts nothing there) under the site's assignments. No meter: no cost."""
    site = service.repo.get_site(site_id)
    meters = service.site_meters(site_id)
    assignments = service.store.assignments(site_id=site_id) if meters else []
    return _costs(service, meters, assignments, zone(site.timezone), edges, now)


def _costs(
    service: BillingService, meters: list[str], assignments: list, tz: ZoneInfo, edges: list[datetime], now: datetime | None,
) -> BucketCosts:
    n = len(edges) - 1
    if not assignments or n <= 0:
        return BucketCosts(None, [None] * max(n, 0), [None] * max(n, 0))
    edges_s = np.array([e.timestamp() for e in edges])
    total, energy, covered = np.zeros(n), np.zeros(n), np.zeros(n, dtype=bool)
    currency = None
    for assignment in assignments:
        tariff = service.tariff(assignment.tariff_id).tariff
        currency = currency or tariff.currency
        meter = service.meter(meters, edges[0], edges[-1], tz, tariff, now)
        days = _local_dates(meter.start_s, tz)
        valid = days >= np.datetime64(assignment.valid_from)
        if assignment.valid_to is not None:
            valid &= days < np.datetime64(assignment.valid_to)
        cost = interval_costs(tariff, meter, tz)
        index = np.searchsorted(edges_s, meter.start_s, side="right") - 1
        inside = valid & np.isfinite(cost) & (index >= 0) & (index < n)
        np.add.at(total, index[inside], cost[inside])
        np.add.at(energy, index[inside], (meter.import_kwh - meter.export_kwh)[inside])
        covered[np.unique(index[inside])] = True
    return BucketCosts(
        currency,
        [float(c) if has else None for c, has in zip(total.tolist(), covered.tolist(), strict=True)],
        [float(e) if has else None for e, has in zip(energy.tolist(), covered.tolist(), strict=True)],
    )
