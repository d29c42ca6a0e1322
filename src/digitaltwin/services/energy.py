"""Energy per bucket of an asset, on its site's local calendar.

:func:`energy_report` is the use case (rows for the API). It is composed of three steps that
the forecasting service also uses, so its target is the same numbers without the rows:
:func:`window_edges_us` (bucket edges), :func:`read_window` (the readings that decide the
range) and :func:`bucket_totals` (energy, power and counts per bucket, numpy throughout).

The report also applies the meter policies (:mod:`digitaltwin.analytics.meter`: glitches,
rollovers, replacements, quarantined values, marked on the buckets they touch) and splits the
energy into import and export (:func:`flow_segments`). :func:`digitaltwin.services.interval_flows.interval_flows`
gives the same import and export on a fixed UTC grid, for bills.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from digitaltwin.analytics.buckets import MAX_BUCKETS, Bucket, bucket_edges, floor_local
from digitaltwin.analytics.energy import BucketTotals, aggregate, metered_for, segments_for
from digitaltwin.analytics.meter import GLITCH_MAX_READINGS, CounterRules, MeterEvent, Metered, concat_segments, mark_buckets, split_import_export
from digitaltwin.analytics.segments import Segments
from digitaltwin.domain.assets import Asset
from digitaltwin.domain.errors import NotFoundError, ValidationError
from digitaltwin.domain.series_attributes import EXPORT_QUANTITIES, energy_flow, export_positive
from digitaltwin.domain.timestamps import zone
from digitaltwin.domain.units import SeriesKind
from digitaltwin.services.meter import counter_rules
from digitaltwin.storage.meter_events import MeterEventStore
from digitaltwin.storage.repository import Repository, SeriesInfo
from digitaltwin.storage.tables import from_epoch_us, to_epoch_us

#: Quantities that carry energy, in the order an asset's energy is taken from when none is named.
ENERGY_QUANTITIES = ("energy", "energy_total", "power", "energy_export", "energy_export_total")
#: Counter readings read on each side of a range: the closing reading plus the glitch look-ahead
#: (:data:`~digitaltwin.analytics.meter.GLITCH_MAX_READINGS`).
COUNTER_CONTEXT_READINGS = GLITCH_MAX_READINGS + 1
#: The register or profile that meters the other direction of the same connection.
PAIRS = {"energy_total": "energy_export_total", "energy_export_total": "energy_total", "energy": "energy_export"}
#: Fixed bucket lengths in microseconds (stepped in UTC from a local wall-clock boundary, see
#: :mod:`digitaltwin.analytics.buckets`).
_FIXED_US = {Bucket.QUARTER_HOUR: 900_000_000, Bucket.HOUR: 3_600_000_000}


@dataclass(frozen=True, slots=True)
class EnergyBucketRow:
    """One bucket. Energy in kWh, power in kW; None where there is no data.

    ``expected_count`` and ``missing_count`` are given for interval series of
    known interval length (completeness); None otherwise. ``import_kwh`` and
    ``export_kwh`` are the two directions (None where that side is not metered
    in the bucket), ``net_kwh`` is import minus export; ``events`` the kinds of
    meter events in the bucket (``reset``, ``rollover``, ``replacement``,
    ``glitch``, ``quarantined``).
    """

    start: datetime
    end: datetime
    energy_kwh: float | None
    mean_power_kw: float | None
    peak_power_kw: float | None
    sample_count: int
    expected_count: int | None
    missing_count: int | None
    import_kwh: float | None = None
    export_kwh: float | None = None
    net_kwh: float | None = None
    events: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EnergyReport:
    """Energy of one asset over ``[start, end)`` in ``bucket`` buckets of ``timezone``'s calendar."""

    asset_id: str
    quantity: str
    kind: SeriesKind
    timezone: str
    bucket: Bucket
    rows: list[EnergyBucketRow]
    events: tuple[MeterEvent, ...] = ()

    @property
    def total_energy_kwh(self) -> float:
        return float(sum(r.energy_kwh for r in self.rows if r.energy_kwh is not None))


@dataclass(frozen=True, slots=True)
class WindowReadings:
    """The readings of one series that decide its energy over a range, sorted by time.

    Attributes:
        ts_s: epoch seconds (float64) of the readings in the range, preceded by the last
            reading before it (a held power sample or an interval reaching into the range) and,
            for counters, followed by the first reading at or after its end (which closes the
            last span). For counters :data:`COUNTER_CONTEXT_READINGS` readings are taken on each
            side, so a glitch or spike at an edge is recognised as it is inside a longer range.
        values: their values (float64) in the series' canonical unit.
    """

    ts_s: np.ndarray
    values: np.ndarray


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


def window_edges_us(start: datetime, end: datetime, bucket: Bucket, tz: ZoneInfo) -> np.ndarray:
    """Edges of the buckets covering ``[start, end)``, the first and last clipped to the range.

    The edges of :func:`digitaltwin.analytics.buckets.bucket_edges`, as int64 epoch
    microseconds; fixed-length buckets (15 min, hour) are computed with numpy instead of
    one ``datetime`` per bucket. ``n`` buckets have ``n + 1`` edges.

    Raises:
        ValidationError: naming ``end`` when ``end <= start`` or the range holds too many buckets.
    """
    step = _FIXED_US.get(bucket)
    if step is None:
        edges = np.array([to_epoch_us(e) for e in bucket_edges(start, end, bucket, tz)], dtype=np.int64)
    else:
        # bucket_edges' checks and messages, then its loop (first + k * step until >= end) at once.
        if end <= start:
            raise ValidationError("end must be after start", field="end")
        if (end - start) / timedelta(microseconds=step) > MAX_BUCKETS:
            raise ValidationError(f"range holds more than {MAX_BUCKETS} {bucket.value} buckets", field="end")
        first = to_epoch_us(floor_local(start, bucket, tz))
        count = -(-(to_epoch_us(end) - first) // step)
        edges = first + step * np.arange(count + 1, dtype=np.int64)
    # The totals are those of the requested range: partial first and last buckets are clipped.
    edges[0], edges[-1] = max(int(edges[0]), to_epoch_us(start)), min(int(edges[-1]), to_epoch_us(end))
    return edges


def window_context(info: SeriesInfo) -> tuple[int, int]:
    """How many readings :func:`read_window` reads before and after a range of ``info`` besides
    those in it (see :class:`WindowReadings`)."""
    return (COUNTER_CONTEXT_READINGS, COUNTER_CONTEXT_READINGS) if info.kind is SeriesKind.CUMULATIVE else (1, 0)


def read_window(repo: Repository, info: SeriesInfo, start: datetime, end: datetime) -> WindowReadings:
    """The readings of ``info`` that decide its energy over ``[start, end)`` (see :class:`WindowReadings`;
    the readings around the range are those of :func:`window_context`)."""
    ts_s, values = repo.series_arrays(info.id, start=start, end=end)
    if info.kind is SeriesKind.CUMULATIVE:
        # A glitch or spike at either edge is recognised only with the readings around it, so a
        # range's energy does not depend on where the range starts or ends.
        earlier, later = repo.readings_around(info.id, before=start, at_or_after=end, count=COUNTER_CONTEXT_READINGS)
        ts_s = np.concatenate(([t.timestamp() for t, _ in earlier], ts_s, [t.timestamp() for t, _ in later]))
        values = np.concatenate(([v for _, v in earlier], values, [v for _, v in later]))
        return WindowReadings(ts_s, values)
    previous = repo.previous_reading(info.id, start)
    if previous is not None:
        ts_s = np.concatenate(([previous[0].timestamp()], ts_s))
        values = np.concatenate(([previous[1]], values))
    # A counter's increase over [t_i, t_i+1) needs the reading that closes the last bucket's span.
    following = repo.next_reading(info.id, end) if info.kind is SeriesKind.CUMULATIVE else None
    if following is not None:
        ts_s = np.append(ts_s, following[0].timestamp())
        values = np.append(values, following[1])
    return WindowReadings(ts_s, values)


def bucket_totals(
    info: SeriesInfo,
    readings: WindowReadings,
    edges_us: np.ndarray,
    *,
    max_hold: timedelta,
    until_us: int,
    rules: CounterRules | None = None,
) -> BucketTotals:
    """Energy, covered hours, mean and peak power and sample counts per bucket (NaN where undefined).

    Gaps (NaN) are where no span covers a bucket: a power sample held past ``max_hold``, a
    missing interval, or a counter span longer than
    :data:`~digitaltwin.analytics.energy.COUNTER_MAX_SPAN_SECONDS` (see
    :func:`~digitaltwin.analytics.energy.counter_segments`). The forecasting target is computed
    here too, so it has the same gaps as :func:`energy_report`.

    Args:
        info: the series (kind and interval length).
        readings: from :func:`read_window` over ``[edges_us[0], edges_us[-1])``.
        edges_us: from :func:`window_edges_us`.
        max_hold: longest hold of one power sample.
        until_us: power samples are not held past this instant (epoch microseconds).
        rules: the series' meter rules (:func:`digitaltwin.services.meter.counter_rules`), so the
            numbers are those of :func:`energy_report`; None applies the default rules only.
    """
    if rules is not None:
        metered = metered_for(
            info.kind, readings.ts_s, readings.values, rules=rules, interval_s=info.interval_seconds,
            max_hold_s=max_hold.total_seconds(), until_s=until_us / 1e6,
        )
        return aggregate(metered.segments, edges_us / 1e6, readings.ts_s)
    seg = segments_for(
        info.kind,
        readings.ts_s,
        readings.values,
        interval_s=info.interval_seconds,
        max_hold_s=max_hold.total_seconds(),
        until_s=until_us / 1e6,
    )
    return aggregate(seg, edges_us / 1e6, readings.ts_s)


def hold_until_us(edges_us: np.ndarray, now: datetime | None = None) -> int:
    """The end of the range or ``now`` (default: the current time), whichever is earlier, in epoch microseconds."""
    return min(int(edges_us[-1]), to_epoch_us(now or datetime.now(UTC)))


@dataclass(frozen=True, slots=True)
class Flows:
    """Import and export of an asset as segments (kWh), and the meter events behind them.

    A side is None when nothing meters it (a two-way asset with a single one-way register).
    """

    imported: Segments | None
    exported: Segments | None
    events: tuple[MeterEvent, ...]


def metered_series(
    repo: Repository, asset: Asset, info: SeriesInfo, start: datetime, end: datetime, *, max_hold: timedelta, until_us: int,
    rules: CounterRules | None = None, attributes: dict[str, Any] | None = None,
) -> tuple[WindowReadings, Metered, dict[str, Any]]:
    """The readings of ``info`` over ``[start, end)``, their segments under the meter policies and
    the series' declared attributes (see :func:`digitaltwin.analytics.energy.metered_for`).

    ``rules``, ``attributes``: the meter rules to apply and the series' attributes, as
    :func:`~digitaltwin.services.meter.counter_rules` and the refresh of the energy rollups read
    them earlier (the rollups store cells under the rules they keyed); default: read now.
    """
    readings = read_window(repo, info, start, end)
    if attributes is None:
        attributes = MeterEventStore(repo.engine).series_attributes(info.id)
    if rules is None:
        rules = counter_rules(repo, asset, info, attributes=attributes)
    return readings, meter_window(info, readings, rules, max_hold=max_hold, until_us=until_us), attributes


def meter_window(info: SeriesInfo, readings: WindowReadings, rules: CounterRules, *, max_hold: timedelta, until_us: int) -> Metered:
    """The segments and meter events of readings read as :func:`read_window` reads them, under ``rules``
    (:func:`digitaltwin.analytics.energy.metered_for`); power samples are not held past ``until_us``."""
    return metered_for(
        info.kind, readings.ts_s, readings.values, rules=rules, interval_s=info.interval_seconds,
        max_hold_s=max_hold.total_seconds(), until_s=until_us / 1e6,
    )


def flow_segments(
    repo: Repository,
    asset: Asset,
    info: SeriesInfo,
    own: tuple[Metered, dict[str, object]],
    start: datetime,
    end: datetime,
    *,
    max_hold: timedelta,
    until_us: int,
) -> Flows:
    """Split an asset's energy into import and export (rules in ``docs/accounting.md``, "Import and export").

    * A signed series (``power``, ``energy``) is split segment by segment by its sign convention
      (:func:`~digitaltwin.analytics.meter.split_import_export`): never netted before splitting.
    * A counter register counts one direction (``direction``; ``energy_export_total`` and
      ``energy_export`` are export). Its pair on the same asset (``energy_total`` with
      ``energy_export_total``, ``energy`` with ``energy_export``) meters the other direction.
    * A side no series meters is 0 kWh for an asset that only consumes or only produces
      (``energy_flow``), and unknown (None) for one that does both.

    Args:
        info: the series the energy comes from; ``own``: its metered segments and attributes.
    """
    metered, attributes = own
    flow = energy_flow(asset.kind.value, asset.attributes)
    events = list(metered.events)
    to_export = export_positive(info.quantity, attributes, flow)
    sides: dict[bool, list[Segments]] = {True: [], False: []}  # export? -> segments
    if info.kind is SeriesKind.CUMULATIVE or info.quantity in EXPORT_QUANTITIES:
        sides[to_export].append(metered.segments)
    else:
        imported, exported = split_import_export(metered.segments, export_positive=to_export)
        sides[False].append(imported)
        sides[True].append(exported)
    pair_quantity = PAIRS.get(info.quantity)
    pair = repo.find_series(asset.id, pair_quantity) if pair_quantity else None
    if pair is not None:
        _, pair_metered, pair_attributes = metered_series(repo, asset, pair, start, end, max_hold=max_hold, until_us=until_us)
        pair_export = export_positive(pair.quantity, pair_attributes, flow)
        if pair_export != to_export or info.kind is not SeriesKind.CUMULATIVE:
            sides[pair_export].append(pair_metered.segments)
            events.extend(pair_metered.events)
    result: dict[bool, Segments | None] = {}
    for side in (False, True):
        if sides[side]:
            result[side] = concat_segments(sides[side]) if len(sides[side]) > 1 else sides[side][0]
        elif flow != "both":
            other = sides[not side][0]
            result[side] = Segments(other.start_s, other.end_s, np.zeros_like(other.energy_kwh))
        else:
            result[side] = None
    events.sort(key=lambda e: (e.start_s, e.end_s))
    return Flows(result[False], result[True], tuple(events))


def side_energy(seg: Segments | None, edges_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energy (kWh, NaN where not covered) and covered hours per bucket of one side (all NaN/0 when None)."""
    n = edges_s.size - 1
    if seg is None:
        return np.full(n, np.nan), np.zeros(n)
    totals = aggregate(seg, edges_s, np.empty(0))
    return totals.energy_kwh, totals.covered_hours


def events_in_range(events: tuple[MeterEvent, ...], lo_s: float, hi_s: float) -> tuple[MeterEvent, ...]:
    """The events whose span touches ``[lo_s, hi_s)`` (epoch seconds)."""
    return tuple(e for e in events if e.start_s < hi_s and max(e.end_s, e.start_s) >= lo_s)


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
    use_rollups: bool | None = None,
) -> EnergyReport:
    """Energy, mean and peak power and sample counts per bucket (see :mod:`digitaltwin.analytics.energy`).

    Args:
        start, end: UTC range; buckets are those of the site calendar covering it,
            the first and last clipped to the range (each row's ``start`` and
            ``end``, UTC, give the span it covers, so a partial week has a partial
            ``expected_count``).
        bucket: bucket size.
        max_hold: longest hold of one power sample.
        quantity: ``energy``, ``energy_total`` or ``power``; the first present by default.
        now: power samples are not held past this instant (default: the current time).
        use_rollups: take whole 15-minute cells from the rollups
            (:mod:`digitaltwin.services.energy_rollups`) and raw readings only for partial
            cells; False computes everything from raw readings (the reference the rollups are
            tested against). Both give the same numbers up to float summation order.
            Default: the ``ENERGY_ROLLUPS`` setting (on).

    Raises:
        NotFoundError: unknown asset or no energy-carrying series.
        ValidationError: ``end`` not after ``start`` or too many buckets.
    """
    asset = repo.get_asset(asset_id)
    site = repo.get_site(asset.site_id)
    tz = zone(site.timezone)
    info = pick_energy_series(repo, asset_id, quantity)
    edges_us = window_edges_us(start, end, bucket, tz)
    edges = [from_epoch_us(e) for e in edges_us.tolist()]
    until_us = hold_until_us(edges_us, now)
    edges_s_arr = edges_us / 1e6
    rolled = None
    from digitaltwin.services import energy_rollups  # it builds on this module

    if use_rollups is None:
        use_rollups = energy_rollups.settings.enabled
    if use_rollups:
        rollup_totals = energy_rollups.rollup_totals

        pair_quantity = PAIRS.get(info.quantity)
        pair = repo.find_series(asset.id, pair_quantity) if pair_quantity else None
        rolled = rollup_totals(repo, asset, info, pair, edges_us, max_hold=max_hold, until_us=until_us)
    if rolled is not None:
        totals, imported, exported, events = rolled.totals, rolled.imported_kwh, rolled.exported_kwh, rolled.events
    else:
        readings, metered, attributes = metered_series(repo, asset, info, edges[0], edges[-1], max_hold=max_hold, until_us=until_us)
        totals = aggregate(metered.segments, edges_s_arr, readings.ts_s)
        flows = flow_segments(repo, asset, info, (metered, attributes), edges[0], edges[-1], max_hold=max_hold, until_us=until_us)
        imported, _ = side_energy(flows.imported, edges_s_arr)
        exported, _ = side_energy(flows.exported, edges_s_arr)
        events = events_in_range(flows.events, float(edges_s_arr[0]), float(edges_s_arr[-1]))
    marks = mark_buckets(events, edges_s_arr)
    interval = info.interval_seconds if info.kind is SeriesKind.INTERVAL and info.interval_seconds else None
    edges_s = edges_s_arr.tolist()  # == datetime.timestamp() of each edge
    rows = []
    for i, (energy, mean, peak, count, imp, exp) in enumerate(
        zip(
            totals.energy_kwh.tolist(),
            totals.mean_power_kw.tolist(),
            totals.peak_power_kw.tolist(),
            totals.sample_count.tolist(),
            imported.tolist(),
            exported.tolist(),
            strict=True,
        )
    ):
        expected = missing = None
        if interval is not None:
            expected = int(round((edges_s[i + 1] - edges_s[i]) / interval))
            missing = max(expected - count, 0)
        imp_kwh, exp_kwh = _finite(imp), _finite(exp)
        rows.append(
            EnergyBucketRow(
                start=edges[i],
                end=edges[i + 1],
                energy_kwh=_finite(energy),
                mean_power_kw=_finite(mean),
                peak_power_kw=_finite(peak),
                sample_count=int(count),
                expected_count=expected,
                missing_count=missing,
                import_kwh=imp_kwh,
                export_kwh=exp_kwh,
                net_kwh=None if imp_kwh is None or exp_kwh is None else imp_kwh - exp_kwh,
                events=tuple(marks[i]),
            )
        )
    return EnergyReport(asset_id, info.quantity, info.kind, site.timezone, bucket, rows, events)
