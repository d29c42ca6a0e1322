"""Per-interval import and export energy of an asset on a fixed UTC grid: the input of bills.

:func:`interval_flows` is what a tariff or bill engine calls: for ``[start, end)`` on a grid of
``step`` (15 minutes by default) it returns import and export kWh per interval, each with the
share of the interval its meter covers, and the meter events of the range. The numbers are those
of ``GET /api/v1/assets/{asset_id}/energy`` (same series choice, same meter policies, same split
of import and export segment by segment), only bucketed on UTC multiples of ``step``; a 15-minute
grid is also a local quarter-hour grid in every timezone in use (all offsets are multiples of
15 minutes), so local tariff periods can be cut from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from digitaltwin.analytics.buckets import MAX_BUCKETS
from digitaltwin.analytics.meter import MeterEvent
from digitaltwin.domain.errors import ValidationError
from digitaltwin.services.energy import PAIRS, events_in_range, flow_segments, metered_series, pick_energy_series, side_energy
from digitaltwin.services.energy_rollups import rollup_totals
from digitaltwin.services.energy_rollups import settings as rollup_settings
from digitaltwin.storage.repository import Repository
from digitaltwin.storage.rollups import CELL_SECONDS
from digitaltwin.storage.tables import from_epoch_us, to_epoch_us

#: Grid steps accepted (seconds): divisors of an hour, so intervals nest in hours.
STEPS_S = (300, 900, 1800, 3600)
#: Coverage at or above this share of an interval counts as covered (float rounding of spans).
COVERED = 1.0 - 1e-9


@dataclass(frozen=True, slots=True)
class IntervalFlows:
    """Import and export per interval of a fixed UTC grid.

    Attributes:
        asset_id: the asset.
        quantity: the series the energy comes from (``energy``, ``energy_total``, ``power``, ...).
        start: UTC start of the first interval; interval ``i`` is ``[start + i*step, start + (i+1)*step)``.
        step: the interval length.
        import_kwh, export_kwh: shape ``(n,)`` float64, kWh drawn from / delivered to the grid in
            each interval; NaN where nothing meters that side in the interval.
        import_coverage, export_coverage: shape ``(n,)``, share (0..1) of each interval its
            meter covers; energy of a partly covered interval is that of the covered part.
        covered: shape ``(n,)`` bool, both sides fully covered (safe to bill as is).
        events: meter events (reset, rollover, replacement, glitch, quarantined) in the range.
    """

    asset_id: str
    quantity: str
    start: datetime
    step: timedelta
    import_kwh: np.ndarray
    export_kwh: np.ndarray
    import_coverage: np.ndarray
    export_coverage: np.ndarray
    covered: np.ndarray
    events: tuple[MeterEvent, ...]

    @property
    def starts(self) -> list[datetime]:
        """UTC start of each interval."""
        return [self.start + i * self.step for i in range(self.import_kwh.size)]


def interval_flows(
    repo: Repository,
    asset_id: str,
    *,
    start: datetime,
    end: datetime,
    step: timedelta = timedelta(minutes=15),
    max_hold: timedelta,
    quantity: str | None = None,
    now: datetime | None = None,
    use_rollups: bool | None = None,
) -> IntervalFlows:
    """Import and export kWh per ``step`` interval of ``[start, end)`` (UTC), with coverage and events.

    Args:
        repo: storage.
        asset_id: the asset (a grid connection, PV system, battery, EV charger, machine ...).
        start, end: aware datetimes on the UTC grid of ``step`` (multiples of ``step`` since the epoch).
        step: one of :data:`STEPS_S` seconds (5, 15, 30 or 60 minutes).
        max_hold: longest hold of one power sample (``Settings.power_max_hold``).
        quantity: the series to take; default as the energy report (``energy``, ``energy_total``, ``power``, ...).
        now: power samples are not held past this instant (default: the current time).
        use_rollups: take whole 15-minute cells from the energy rollups (steps of 15, 30 and 60
            minutes); False reads every reading (the reference; same numbers up to float
            summation order). Default: the ``ENERGY_ROLLUPS`` setting (on).

    Raises:
        NotFoundError: unknown asset or no energy-carrying series.
        ValidationError: naming ``step`` (not an accepted step), ``start``/``end`` (not on the
            grid, naive, ``end <= start``, more than ``MAX_BUCKETS`` intervals) or ``quantity``.
    """
    step_s = step.total_seconds()
    if step_s not in STEPS_S:
        raise ValidationError(f"step must be one of {', '.join(f'{s // 60} min' for s in STEPS_S)}", field="step")
    for value, name in ((start, "start"), (end, "end")):
        if value.tzinfo is None:
            raise ValidationError(f"{name} must be timezone-aware", field=name)
        if to_epoch_us(value) % int(step_s * 1_000_000):
            raise ValidationError(f"{name} must be on the UTC grid of {int(step_s // 60)} minutes", field=name)
    if end <= start:
        raise ValidationError("end must be after start", field="end")
    count = int((end - start) / step)
    if count > MAX_BUCKETS:
        raise ValidationError(f"range holds more than {MAX_BUCKETS} intervals", field="end")
    asset = repo.get_asset(asset_id)
    info = pick_energy_series(repo, asset_id, quantity)
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    until_us = min(to_epoch_us(end), to_epoch_us(now or datetime.now(UTC)))
    edges_s = to_epoch_us(start) / 1e6 + step_s * np.arange(count + 1, dtype=np.float64)
    rolled = None
    if use_rollups is None:
        use_rollups = rollup_settings.enabled
    if use_rollups and step_s % CELL_SECONDS == 0:  # whole 15-minute cells from the energy rollups
        pair_quantity = PAIRS.get(info.quantity)
        pair = repo.find_series(asset.id, pair_quantity) if pair_quantity else None
        edges_us = to_epoch_us(start) + int(step_s * 1_000_000) * np.arange(count + 1, dtype=np.int64)
        rolled = rollup_totals(repo, asset, info, pair, edges_us, max_hold=max_hold, until_us=until_us)
    if rolled is not None:
        imported, import_h, exported, export_h = rolled.imported_kwh, rolled.import_hours, rolled.exported_kwh, rolled.export_hours
        events = rolled.events
    else:
        _, metered, attributes = metered_series(repo, asset, info, start, end, max_hold=max_hold, until_us=until_us)
        flows = flow_segments(repo, asset, info, (metered, attributes), start, end, max_hold=max_hold, until_us=until_us)
        imported, import_h = side_energy(flows.imported, edges_s)
        exported, export_h = side_energy(flows.exported, edges_s)
        events = events_in_range(flows.events, float(edges_s[0]), float(edges_s[-1]))
    step_h = step_s / 3600.0
    import_cov, export_cov = np.minimum(import_h / step_h, 1.0), np.minimum(export_h / step_h, 1.0)
    return IntervalFlows(
        asset_id=asset_id,
        quantity=info.quantity,
        start=from_epoch_us(to_epoch_us(start)),
        step=step,
        import_kwh=imported,
        export_kwh=exported,
        import_coverage=import_cov,
        export_coverage=export_cov,
        covered=(import_cov >= COVERED) & (export_cov >= COVERED),
        events=events,
    )
