"""CO2 of an asset's energy at its site's carbon intensity (see :mod:`digitaltwin.accounting.carbon`).

A site names its intensity in its attributes: ``carbon_intensity_asset_id`` (an asset, usually
of kind ``grid``, with a ``carbon_intensity`` series in gCO2/kWh), which wins, or
``co2_factor_g_per_kwh`` (one constant factor). A site with neither has no CO2 figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from digitaltwin.accounting.carbon import BucketEmissions, Intensity, bucket_emissions, constant_intensity, intensity_steps, split_net
from digitaltwin.analytics.buckets import Bucket
from digitaltwin.analytics.energy import Segments
from digitaltwin.domain.assets import Asset, Site
from digitaltwin.domain.errors import NotFoundError
from digitaltwin.domain.timestamps import zone
from digitaltwin.services.energy import metered_series, pick_energy_series, window_edges_us
from digitaltwin.storage.repository import Repository, SeriesInfo
from digitaltwin.storage.tables import from_epoch_us, to_epoch_us

#: The quantity of a grid asset that carries its carbon intensity (gCO2/kWh).
INTENSITY_QUANTITY = "carbon_intensity"


def site_intensity(repo: Repository, site: Site, *, start: datetime, end: datetime) -> Intensity | None:
    """The carbon intensity that applies to ``site`` over ``[start, end)``, or None if it names none.

    Raises:
        NotFoundError: naming ``carbon_intensity_asset_id`` when the named asset is gone or has
            no ``carbon_intensity`` series.
    """
    asset_id = site.attributes.get("carbon_intensity_asset_id")
    if asset_id:
        info = repo.find_series(asset_id, INTENSITY_QUANTITY)
        if info is None:
            raise NotFoundError(
                f"site {site.id!r} names carbon intensity asset {asset_id!r}, which has no {INTENSITY_QUANTITY} series",
                field="carbon_intensity_asset_id",
            )
        ts_s, values = repo.series_arrays(info.id, start=start, end=end)
        previous = repo.previous_reading(info.id, start)  # the interval reaching into the range
        if previous is not None:
            ts_s = np.concatenate(([previous[0].timestamp()], ts_s))
            values = np.concatenate(([previous[1]], values))
        return intensity_steps(ts_s, values, interval_s=info.interval_seconds, source=f"asset:{asset_id}")
    factor = site.attributes.get("co2_factor_g_per_kwh")
    if factor is not None:
        return constant_intensity(float(factor), start_s=start.timestamp(), end_s=end.timestamp(), source=f"site factor {factor:g} gCO2/kWh")
    return None


def energy_segments(
    repo: Repository, asset: Asset, info: SeriesInfo, *, start: datetime, end: datetime, max_hold: timedelta, now: datetime | None
) -> Segments:
    """Energy segments (kWh) of an energy-carrying series over ``[start, end)`` under its meter rules.

    The segments of the energy report's raw path (:func:`digitaltwin.services.energy.metered_series`):
    counter resets, rollovers, declared replacements, glitches and quarantined increases are
    booked as there, so KPIs, the metering tree and CO2 add up to the energy report's totals.
    ``asset`` is the series' asset (its rated power bounds plausible counter increases).
    Power is not held past ``now`` (default: the current time).
    """
    until_us = min(to_epoch_us(end), to_epoch_us(now or datetime.now(UTC)))  # power is not held into the future
    _, metered, _ = metered_series(repo, asset, info, start, end, max_hold=max_hold, until_us=until_us)
    return metered.segments


@dataclass(frozen=True, slots=True)
class EnergyCo2:
    """CO2 per bucket of an energy report, with where the intensity came from (None: the site names none)."""

    emissions: BucketEmissions | None
    source: str | None


def energy_co2(
    repo: Repository,
    asset_id: str,
    *,
    start: datetime,
    end: datetime,
    bucket: Bucket,
    max_hold: timedelta,
    quantity: str | None = None,
    now: datetime | None = None,
) -> EnergyCo2:
    """CO2 (kg) and avoided CO2 (kg) per bucket of :func:`digitaltwin.services.energy.energy_report`'s buckets.

    Same arguments and errors as ``energy_report``; the buckets are the same (same edges).
    Until the meter arithmetic splits import from export, export is the negative part of the
    net energy of each interval.
    """
    asset = repo.get_asset(asset_id)
    site = repo.get_site(asset.site_id)
    info = pick_energy_series(repo, asset_id, quantity)
    edges_us = window_edges_us(start, end, bucket, zone(site.timezone))
    first, last = from_epoch_us(int(edges_us[0])), from_epoch_us(int(edges_us[-1]))
    intensity = site_intensity(repo, site, start=first, end=last)
    if intensity is None:
        return EnergyCo2(None, None)
    seg = energy_segments(repo, asset, info, start=first, end=last, max_hold=max_hold, now=now)
    imports, exports = split_net(seg)
    return EnergyCo2(bucket_emissions(imports, exports, edges_us / 1e6, intensity), intensity.source)
