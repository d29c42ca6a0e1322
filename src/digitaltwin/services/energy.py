"""Energy per bucket of an asset, on its site's local calendar."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from digitaltwin.analytics.buckets import Bucket, bucket_edges
from digitaltwin.analytics.energy import aggregate, segments_for
from digitaltwin.domain.errors import NotFoundError, ValidationError
from digitaltwin.domain.timestamps import zone
from digitaltwin.domain.units import SeriesKind
from digitaltwin.storage.repository import Repository, SeriesInfo

#: Quantities that carry energy, in the order an asset's energy is taken from when none is named.
ENERGY_QUANTITIES = ("energy", "energy_total", "power")


@dataclass(frozen=True, slots=True)
class EnergyBucketRow:
    """One bucket. Energy in kWh, power in kW; None where there is no data.

    ``expected_count`` and ``missing_count`` are given for interval series of
    known interval length (completeness); None otherwise.
    """

    start: datetime
    end: datetime
    energy_kwh: float | None
    mean_power_kw: float | None
    peak_power_kw: float | None
    sample_count: int
    expected_count: int | None
    missing_count: int | None


@dataclass(frozen=True, slots=True)
class EnergyReport:
    """Energy of one asset over ``[start, end)`` in ``bucket`` buckets of ``timezone``'s calendar."""

    asset_id: str
    quantity: str
    kind: SeriesKind
    timezone: str
    bucket: Bucket
    rows: list[EnergyBucketRow]

    @property
    def total_energy_kwh(self) -> float:
        return float(sum(r.energy_kwh for r in self.rows if r.energy_kwh is not None))


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def pick_energy_series(repo: Repository, asset_id: str, quantity: str | None = None) -> SeriesInfo:
    """The series that carries an asset's energy: ``quantity`` if given, else the first of :data:`ENERGY_QUANTITIES`.

    Raises:
        ValidationError: ``quantity`` does not carry energy.
        NotFoundError: the asset has no such series.
    """
    if quantity is not None and quantity not in ENERGY_QUANTITIES:
        raise ValidationError(f"{quantity!r} does not carry energy; use one of {', '.join(ENERGY_QUANTITIES)}", field="quantity")
    for name in (quantity,) if quantity else ENERGY_QUANTITIES:
        info = repo.find_series(asset_id, name)
        if info is not None:
            return info
    raise NotFoundError(f"asset {asset_id!r} has no {quantity or 'energy or power'} readings", field="quantity")


def energy_report(
    repo: Repository,
    asset_id: str,
    *,
    start: datetime,
    end: datetime,
    bucket: Bucket,
    max_hold: timedelta,
    quantity: str | None = None,
    now: datetime | None = None,
) -> EnergyReport:
    """Energy, mean and peak power and sample counts per bucket (see :mod:`digitaltwin.analytics.energy`).

    Args:
        start, end: UTC range; buckets are those of the site calendar covering it,
            the first and last clipped to the range (each row's ``start`` and
            ``end`` give the span it covers, so a partial week has a partial
            ``expected_count``).
        bucket: bucket size.
        max_hold: longest hold of one power sample.
        quantity: ``energy``, ``energy_total`` or ``power``; the first present by default.
        now: power samples are not held past this instant (default: the current time).

    Raises:
        NotFoundError: unknown asset or no energy-carrying series.
        ValidationError: ``end`` not after ``start`` or too many buckets.
    """
    asset = repo.get_asset(asset_id)
    site = repo.get_site(asset.site_id)
    tz = zone(site.timezone)
    info = pick_energy_series(repo, asset_id, quantity)
    edges = bucket_edges(start, end, bucket, tz)
    # The totals are those of the requested range: partial first and last buckets are clipped.
    edges[0], edges[-1] = max(edges[0], start), min(edges[-1], end)
    ts_s, values = repo.series_arrays(info.id, start=edges[0], end=edges[-1])
    previous = repo.previous_reading(info.id, edges[0])
    if previous is not None:
        prev_s = previous[0].timestamp()
        ts_s = np.concatenate(([prev_s], ts_s))
        values = np.concatenate(([previous[1]], values))
    # A counter's increase over [t_i, t_i+1) needs the reading that closes the last bucket's span.
    following = repo.next_reading(info.id, edges[-1]) if info.kind is SeriesKind.CUMULATIVE else None
    if following is not None:
        ts_s = np.append(ts_s, following[0].timestamp())
        values = np.append(values, following[1])
    edges_s = np.array([e.timestamp() for e in edges])
    until = min(edges[-1], now or datetime.now(UTC))
    seg = segments_for(
        info.kind,
        ts_s,
        values,
        interval_s=info.interval_seconds,
        max_hold_s=max_hold.total_seconds(),
        until_s=until.timestamp(),
    )
    totals = aggregate(seg, edges_s, ts_s)
    rows = []
    for i in range(len(edges) - 1):
        expected = missing = None
        if info.kind is SeriesKind.INTERVAL and info.interval_seconds:
            expected = int(round((edges_s[i + 1] - edges_s[i]) / info.interval_seconds))
            missing = max(expected - int(totals.sample_count[i]), 0)
        rows.append(
            EnergyBucketRow(
                start=edges[i],
                end=edges[i + 1],
                energy_kwh=_finite(totals.energy_kwh[i]),
                mean_power_kw=_finite(totals.mean_power_kw[i]),
                peak_power_kw=_finite(totals.peak_power_kw[i]),
                sample_count=int(totals.sample_count[i]),
                expected_count=expected,
                missing_count=missing,
            )
        )
    return EnergyReport(asset_id, info.quantity, info.kind, site.timezone, bucket, rows)

