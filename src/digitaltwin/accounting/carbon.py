"""Location-based CO2 of energy: energy x grid carbon intensity per interval.

The intensity is a step function in gCO2/kWh (:class:`Intensity`): a time series whose every
value holds over its own interval (a ``carbon_intensity`` series of a grid asset, e.g. the
GB National Grid ESO half-hourly/hourly intensity) or one constant site factor. Emissions are
computed per interval, never from a period mean: a bucket's CO2 is the sum over the pieces
of its energy cut at every intensity change, of ``energy_kwh x g_per_kwh / 1000`` (kg).
This is the location-based method of the GHG Protocol Scope 2 Guidance (WRI/WBCSD 2015,
ch. 6: grid-average emission factors for the location and time of consumption).

Imported energy causes emissions; exported energy (negative net interval energy until the
meter arithmetic gives separate import and export) is credited as *avoided* emissions at the
same intensity, reported apart and never subtracted from ``co2_kg``.

Energy for which no intensity is known is not given a made-up one: it is reported as
``uncovered_kwh`` next to the CO2 of the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from digitaltwin.analytics.energy import Segments, aggregate, interval_length_s


@dataclass(frozen=True, slots=True)
class Intensity:
    """Carbon intensity (gCO2/kWh) ``g_per_kwh[i]`` over ``[start_s[i], end_s[i])`` (epoch seconds).

    Spans are sorted and do not overlap; time outside every span has no known intensity.
    ``source`` says where the values come from (shown in API answers).
    """

    start_s: np.ndarray
    end_s: np.ndarray
    g_per_kwh: np.ndarray
    source: str

    def at(self, t_s: np.ndarray) -> np.ndarray:
        """The intensity at instants ``t_s`` (gCO2/kWh), NaN where no span covers them."""
        t_s = np.asarray(t_s, dtype=np.float64)
        if self.start_s.size == 0:
            return np.full(t_s.shape, np.nan)
        i = np.searchsorted(self.start_s, t_s, side="right") - 1
        ok = (i >= 0) & (t_s < self.end_s[np.clip(i, 0, None)])
        return np.where(ok, self.g_per_kwh[np.clip(i, 0, None)], np.nan)


def constant_intensity(g_per_kwh: float, *, start_s: float, end_s: float, source: str) -> Intensity:
    """One factor (gCO2/kWh) over ``[start_s, end_s)``."""
    return Intensity(np.array([start_s]), np.array([end_s]), np.array([float(g_per_kwh)]), source)


def intensity_steps(ts_s: np.ndarray, g_per_kwh: np.ndarray, *, interval_s: float | None, source: str) -> Intensity:
    """A series stamped at interval starts (epoch seconds, gCO2/kWh, sorted) as a step function.

    Each value holds over its own interval (the declared ``interval_s``, else the median
    spacing, see :func:`~digitaltwin.analytics.energy.interval_length_s`), cut at the next
    reading; a missing interval is a gap, not a hold of the previous value.
    """
    ts_s = np.asarray(ts_s, dtype=np.float64)
    if ts_s.size == 0:
        empty = np.empty(0)
        return Intensity(empty, empty, empty, source)
    length = interval_length_s(ts_s, interval_s)
    end = np.minimum(ts_s + length, np.append(ts_s[1:], np.inf))
    return Intensity(ts_s, end, np.asarray(g_per_kwh, dtype=np.float64), source)


def interval_emissions(import_kwh: np.ndarray, export_kwh: np.ndarray, g_per_kwh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CO2 (kg) of imported and avoided CO2 (kg) of exported energy, interval by interval.

    Args:
        import_kwh, export_kwh: energy per interval (kWh, both >= 0), equal length.
        g_per_kwh: intensity over each interval (gCO2/kWh); NaN gives NaN.

    Returns:
        ``(co2_kg, avoided_co2_kg)``: ``import x intensity / 1000`` and ``export x intensity / 1000``.
    """
    scale = np.asarray(g_per_kwh, dtype=np.float64) / 1000.0
    return np.asarray(import_kwh) * scale, np.asarray(export_kwh) * scale


def split_net(seg: Segments) -> tuple[Segments, Segments]:
    """Import (positive) and export (negative net, as positive kWh) segments of net energy segments."""
    imp = seg.energy_kwh > 0
    exp = seg.energy_kwh < 0
    return (
        Segments(seg.start_s[imp], seg.end_s[imp], seg.energy_kwh[imp]),
        Segments(seg.start_s[exp], seg.end_s[exp], -seg.energy_kwh[exp]),
    )


@dataclass(frozen=True, slots=True)
class BucketEmissions:
    """Per bucket (arrays of length ``n`` for ``n + 1`` edges).

    Attributes:
        co2_kg: CO2 of imported energy; NaN where the bucket has no energy with a known intensity.
        avoided_co2_kg: avoided CO2 of exported energy; NaN likewise (0 where nothing is exported).
        uncovered_kwh: energy (import plus export) in the bucket without a known intensity.
    """

    co2_kg: np.ndarray
    avoided_co2_kg: np.ndarray
    uncovered_kwh: np.ndarray


def bucket_emissions(
    import_seg: Segments, export_seg: Segments, edges_s: np.ndarray, intensity: Intensity
) -> BucketEmissions:
    """CO2 per bucket of energy segments at the intensity of each moment.

    The buckets are cut further at every intensity change inside them, so each piece has one
    intensity; energy is spread over a piece by overlap as in
    :func:`~digitaltwin.analytics.energy.aggregate`.

    Args:
        import_seg, export_seg: energy segments (kWh >= 0), e.g. from :func:`split_net`.
        edges_s: ``n + 1`` ascending bucket edges (epoch seconds).
        intensity: the step function to apply.
    """
    edges_s = np.asarray(edges_s, dtype=np.float64)
    n = edges_s.size - 1
    inner = np.concatenate((intensity.start_s, intensity.end_s))
    inner = inner[(inner > edges_s[0]) & (inner < edges_s[-1])]
    cells = np.unique(np.concatenate((edges_s, inner)))
    g = intensity.at(cells[:-1])
    bucket = np.searchsorted(edges_s, cells[:-1], side="right") - 1
    no_ts = np.empty(0)
    totals = []
    uncovered = np.zeros(n)
    for seg in (import_seg, export_seg):
        energy = aggregate(seg, cells, no_ts).energy_kwh  # NaN where no segment covers the cell
        has = ~np.isnan(energy)
        known = has & ~np.isnan(g)
        kg = np.where(known, np.nan_to_num(energy) * np.nan_to_num(g) / 1000.0, 0.0)
        total = np.bincount(bucket, weights=kg, minlength=n)[:n]
        any_known = np.bincount(bucket, weights=known.astype(float), minlength=n)[:n] > 0
        totals.append((total, any_known))
        uncovered += np.bincount(bucket, weights=np.where(has & np.isnan(g), np.nan_to_num(energy), 0.0), minlength=n)[:n]
    (co2, co2_known), (avoided, avoided_known) = totals
    known_any = co2_known | avoided_known
    return BucketEmissions(
        co2_kg=np.where(known_any, co2, np.nan),
        avoided_co2_kg=np.where(known_any, avoided, np.nan),
        uncovered_kwh=uncovered,
    )
