"""Meter arithmetic: counter increases that neither invent nor lose energy, and the events behind them.

:func:`counter_arithmetic` turns cumulative register readings into :class:`Segments` (one per span
between readings) and :class:`MeterEvent` records saying why a span carries what it carries. Every
policy is documented in ``docs/accounting.md`` ("Meter arithmetic"); in short, for each reading
against the *baseline* (the highest total since the last reset):

* **increase** (reading at or above the baseline): booked on its span, if plausible.
* **glitch**: a reading below the baseline followed, within :data:`GLITCH_MAX_READINGS` readings
  and no gap, by one back at or above it. The low readings book nothing (their spans carry
  0 kWh) and the recovering span books the increase since the last good total, so nothing is
  booked "from zero". Reported as ``glitch``.
* **dip**: a drop of less than :data:`RESET_DROP_FRACTION` that does not recover soon: read-out
  noise, books nothing (no event).
* **rollover**: with a declared register modulus ``M``, a larger drop whose modular increase
  ``(v - baseline) mod M`` is at most ``M / 2`` (serial-number arithmetic, RFC 1982 section 3.2:
  a counter read at least twice per wrap). Reported as ``rollover``.
* **reset**: any other larger drop; the new reading counts from zero. Reported as ``reset``.
* **quarantined**: an increase implying a mean power above :data:`IMPLAUSIBLE_POWER_FACTOR` times
  the asset's power limit (its rated power or the connection capacity), plus one register
  resolution step. A lone spike followed by a plausible reading books nothing on its span (as a
  glitch); a jump that persists makes its span a gap (no segment) and the baseline moves on.
* **replacement** (:class:`Replacement`): the old meter's readings end with its final reading,
  the new meter's start with its first reading, readings in between are ignored, and the swap
  window between the two is a gap.

A span longer than ``max_span_s`` is a gap whatever the values (see
:func:`digitaltwin.analytics.energy.counter_segments` for why 48 hours by default).
"""

from __future__ import annotations

import bisect
import enum
import math
from dataclasses import dataclass, field

import numpy as np

from digitaltwin.analytics.segments import Segments, empty_segments

#: A counter drop of more than this share of the previous value is a meter reset (or a rollover,
#: or a glitch); a smaller drop is read-out noise (Home Assistant's ``total_increasing`` uses 10 %).
RESET_DROP_FRACTION = 0.1

#: Longest span between two counter readings whose increase is spread over it (seconds);
#: a longer span is a gap. See :func:`digitaltwin.analytics.energy.counter_segments` for why 48 hours.
COUNTER_MAX_SPAN_SECONDS = 48 * 3600

#: Longest run of low readings that is still a glitch when the register comes back: four readings
#: are one hour of 15-minute reads, the length of the transient zero/low values seen when a gateway
#: restarts or a Modbus read times out. A true reset does not climb back to its old lifetime total
#: within four reads.
GLITCH_MAX_READINGS = 4

#: An increase implying a mean power above this multiple of the asset's power limit is implausible.
#: Meter-data validation ("high usage" checks of VEE rules) compares against a multiple of the
#: expected maximum; twice the rating leaves room for overload (motors' 1.15 service factor, PV
#: cloud-edge peaks of about 1.3 x) while catching corrupted registers, which are off by orders
#: of magnitude.
IMPLAUSIBLE_POWER_FACTOR = 2.0

#: Default register resolution (kWh) allowed on top of the power limit: registers display whole
#: kWh (IEC 62053-21 meters commonly have a 1 kWh least significant digit), so one step over a
#: short span is not a power.
DEFAULT_RESOLUTION_KWH = 1.0


class EventKind(str, enum.Enum):
    """Why a span's energy is what it is (see the module docstring)."""

    RESET = "reset"
    ROLLOVER = "rollover"
    REPLACEMENT = "replacement"
    GLITCH = "glitch"
    QUARANTINED = "quarantined"


@dataclass(frozen=True, slots=True)
class MeterEvent:
    """One event of a series.

    Attributes:
        kind: what happened.
        start_s, end_s: the time span it affects, epoch seconds (``end_s >= start_s``); buckets
            overlapping it are marked.
        reason: a sentence for a user, with the values involved.
    """

    kind: EventKind
    start_s: float
    end_s: float
    reason: str


@dataclass(frozen=True, slots=True)
class Replacement:
    """A meter swap: the old meter's final reading and the new meter's first reading (kWh, epoch seconds).

    ``new_ts_s >= old_ts_s``; the window ``[old_ts_s, new_ts_s)`` is a gap.
    """

    old_ts_s: float
    old_final_kwh: float
    new_ts_s: float
    new_first_kwh: float


@dataclass(frozen=True, slots=True)
class CounterRules:
    """What a counter series declares about its register and its asset.

    Attributes:
        modulus_kwh: register modulus in kWh (the register wraps to 0 on reaching it), or None.
        power_limit_kw: the asset's rated power or connection capacity (kW), or None (no check).
        resolution_kwh: one register step (kWh), allowed over the power limit.
        max_span_s: longest span whose increase is spread (seconds).
        replacements: meter swaps of the series, any order.
    """

    modulus_kwh: float | None = None
    power_limit_kw: float | None = None
    resolution_kwh: float = DEFAULT_RESOLUTION_KWH
    max_span_s: float = COUNTER_MAX_SPAN_SECONDS
    replacements: tuple[Replacement, ...] = field(default=())

    def allowed_kwh(self, span_s: float) -> float:
        """Largest plausible increase over ``span_s`` seconds (infinite without a power limit)."""
        if self.power_limit_kw is None:
            return math.inf
        return IMPLAUSIBLE_POWER_FACTOR * self.power_limit_kw * span_s / 3600.0 + self.resolution_kwh


@dataclass(frozen=True, slots=True)
class Metered:
    """Segments of a series and the events found while building them (sorted by start)."""

    segments: Segments
    events: tuple[MeterEvent, ...]


def counter_arithmetic(ts_s: np.ndarray, total_kwh: np.ndarray, rules: CounterRules | None = None) -> Metered:
    """Segments and events of cumulative register readings (see the module docstring).

    Args:
        ts_s: reading times, epoch seconds, ascending, shape ``(n,)``.
        total_kwh: register values in kWh, shape ``(n,)``.
        rules: modulus, power limit, replacements; default none of them.

    Returns:
        One segment per span not a gap (at most ``n - 1`` plus those the replacements' readings
        add), and the events, sorted by start.
    """
    rules = rules or CounterRules()
    events: list[MeterEvent] = []
    parts: list[Segments] = []
    for ts, values in _epochs(np.asarray(ts_s, dtype=float), np.asarray(total_kwh, dtype=float), rules, events):
        parts.append(_epoch_segments(ts, values, rules, events))
    seg = concat_segments(parts)
    events.sort(key=lambda e: (e.start_s, e.end_s))
    return Metered(seg, tuple(events))


def _epochs(
    ts: np.ndarray, values: np.ndarray, rules: CounterRules, events: list[MeterEvent]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cut the readings into one run per physical meter at each replacement.

    The old run ends with the old meter's final reading (replacing a stored reading at that
    instant), the new one starts with the new meter's first reading; readings inside the swap
    window are ignored and reported as quarantined.
    """
    runs: list[tuple[np.ndarray, np.ndarray]] = []
    for swap in sorted(rules.replacements, key=lambda r: r.old_ts_s):
        before = ts < swap.old_ts_s
        inside = (ts > swap.old_ts_s) & (ts < swap.new_ts_s)
        for t in ts[inside].tolist():
            events.append(MeterEvent(EventKind.QUARANTINED, t, t, "reading inside the swap window of a meter replacement; ignored"))
        runs.append((np.append(ts[before], swap.old_ts_s), np.append(values[before], swap.old_final_kwh)))
        after = ts > swap.new_ts_s if swap.new_ts_s > swap.old_ts_s else ts > swap.old_ts_s
        ts, values = np.concatenate(([swap.new_ts_s], ts[after])), np.concatenate(([swap.new_first_kwh], values[after]))
        events.append(
            MeterEvent(
                EventKind.REPLACEMENT, swap.old_ts_s, swap.new_ts_s,
                f"meter replaced: old meter's final reading {swap.old_final_kwh:g} kWh, "
                f"new meter's first reading {swap.new_first_kwh:g} kWh; the swap window is a gap",
            )
        )
    runs.append((ts, values))
    return runs


def _epoch_segments(ts_a: np.ndarray, v_a: np.ndarray, rules: CounterRules, events: list[MeterEvent]) -> Segments:
    """Segments of the readings of one physical meter (see the module docstring)."""
    n = ts_a.size
    if n < 2:
        return empty_segments()
    increase_a, span_a = np.diff(v_a), np.diff(ts_a)
    clean = (increase_a >= 0) & (span_a <= rules.max_span_s)
    if rules.power_limit_kw is not None:
        clean &= increase_a <= IMPLAUSIBLE_POWER_FACTOR * rules.power_limit_kw * span_a / 3600.0 + rules.resolution_kwh
    if clean.all():  # the common case, at numpy speed: every span books its increase
        return Segments(ts_a[:-1], ts_a[1:], increase_a)
    ts: list[float] = ts_a.tolist()  # plain floats: the loop below reads them one by one
    v: list[float] = v_a.tolist()
    increases: list[float] = increase_a.tolist()
    # Readings whose span from the previous reading is not clean; between them, once the baseline
    # is the previous reading, whole runs of spans are booked at once.
    faults: list[int] = (np.flatnonzero(~clean) + 1).tolist()
    start: list[float] = []
    end: list[float] = []
    energy: list[float] = []

    def book(i: int, kwh: float) -> None:
        start.append(float(ts[i - 1]))
        end.append(float(ts[i]))
        energy.append(kwh)

    baseline = float(v[0])
    good = 0  # the reading that set the baseline
    i = 1
    while i < n:
        if good == i - 1 and baseline == v[i - 1]:
            k = faults[bisect.bisect_left(faults, i)] if faults and faults[-1] >= i else n
            if k > i:  # spans i .. k-1 are clean increases from their previous reading
                start.extend(ts[i - 1 : k - 1])
                end.extend(ts[i:k])
                energy.extend(increases[i - 1 : k - 1])
                baseline, good, i = v[k - 1], k - 1, k
                continue
        value = float(v[i])
        if ts[i] - ts[i - 1] > rules.max_span_s:
            baseline, good, i = value, i, i + 1  # gap: no segment; later spans count from here
            continue
        if value >= baseline:
            increase = value - baseline
            if increase <= rules.allowed_kwh(ts[i] - ts[good]):
                book(i, increase)
                baseline, good, i = value, i, i + 1
                continue
            back = _recovery(ts, v, i, baseline, good, rules)
            if back is not None:  # a lone spike: its readings book nothing
                for k in range(i, back):
                    book(k, 0.0)
                events.append(
                    MeterEvent(EventKind.QUARANTINED, float(ts[i - 1]), float(ts[back]), _implausible(increase, ts[i] - ts[good], rules) + "; a spike, ignored")
                )
                i = back
                continue
            events.append(
                MeterEvent(EventKind.QUARANTINED, float(ts[i - 1]), float(ts[i]), _implausible(increase, ts[i] - ts[good], rules) + "; not booked")
            )
            baseline, good, i = value, i, i + 1
            continue
        back = _recovery(ts, v, i, baseline, good, rules)
        if back is not None:
            for k in range(i, back):
                book(k, 0.0)
            low = min(v[i:back])
            events.append(
                MeterEvent(
                    EventKind.GLITCH, float(ts[i - 1]), float(ts[back]),
                    f"{back - i} reading(s) fell to {low:g} kWh below the last good total {baseline:g} kWh "
                    "and came back; nothing booked from the low value",
                )
            )
            i = back
            continue
        wrapped = None if rules.modulus_kwh is None else (value - baseline) % rules.modulus_kwh
        if value >= baseline * (1.0 - RESET_DROP_FRACTION) and baseline > 0:
            book(i, 0.0)  # dip: wait for the register to pass its previous high
            i += 1
            continue
        if wrapped is not None and wrapped <= rules.modulus_kwh / 2:  # type: ignore[operator]
            kind, increase = EventKind.ROLLOVER, float(wrapped)
            reason = f"register wrapped at {rules.modulus_kwh:g} kWh: {baseline:g} -> {value:g} kWh is +{increase:g} kWh"
        else:
            kind, increase = EventKind.RESET, value
            reason = f"register dropped from {baseline:g} to {value:g} kWh: a reset, counted from zero"
        if increase <= rules.allowed_kwh(ts[i] - ts[good]):
            book(i, increase)
            events.append(MeterEvent(kind, float(ts[i - 1]), float(ts[i]), reason))
        else:
            events.append(
                MeterEvent(EventKind.QUARANTINED, float(ts[i - 1]), float(ts[i]), f"{reason}, but " + _implausible(increase, ts[i] - ts[good], rules) + "; not booked")
            )
        baseline, good, i = value, i, i + 1
    return Segments(np.array(start), np.array(end), np.array(energy))


def _recovery(ts: list[float], v: list[float], i: int, baseline: float, good: int, rules: CounterRules) -> int | None:
    """Index of the first reading after ``i`` (within :data:`GLITCH_MAX_READINGS`, no gap) back at or
    above ``baseline`` by a plausible increase; None when the register does not come back."""
    for j in range(i + 1, min(i + 1 + GLITCH_MAX_READINGS, len(ts))):
        if ts[j] - ts[j - 1] > rules.max_span_s:
            return None
        if v[j] >= baseline and v[j] - baseline <= rules.allowed_kwh(ts[j] - ts[good]):
            return j
    return None


def _implausible(increase: float, span_s: float, rules: CounterRules) -> str:
    hours = max(span_s, 1e-9) / 3600.0
    return (
        f"+{increase:g} kWh in {hours:.4g} h implies {increase / hours:.4g} kW, above "
        f"{IMPLAUSIBLE_POWER_FACTOR:g} x the power limit of {rules.power_limit_kw:g} kW"
    )


def quarantine_power(seg: Segments, *, power_limit_kw: float | None, resolution_kwh: float = 0.0) -> Metered:
    """Drop segments (power samples, intervals) whose energy implies an implausible power.

    A segment is dropped when ``|energy| > IMPLAUSIBLE_POWER_FACTOR * power_limit_kw * hours +
    resolution_kwh``; its span becomes a gap and a ``quarantined`` event names the power.

    Args:
        seg: segments of a power or interval-energy series.
        power_limit_kw: the asset's rated power or connection capacity; None keeps everything.
        resolution_kwh: one step of the reading's resolution (interval energy), kWh.
    """
    if power_limit_kw is None or seg.start_s.size == 0:
        return Metered(seg, ())
    hours = (seg.end_s - seg.start_s) / 3600.0
    bad = np.abs(seg.energy_kwh) > IMPLAUSIBLE_POWER_FACTOR * power_limit_kw * hours + resolution_kwh
    events = tuple(
        MeterEvent(
            EventKind.QUARANTINED, float(a), float(b),
            f"{e:g} kWh in {h:.4g} h implies {e / h:.4g} kW, above {IMPLAUSIBLE_POWER_FACTOR:g} x the power limit "
            f"of {power_limit_kw:g} kW; not booked",
        )
        for a, b, e, h in zip(seg.start_s[bad].tolist(), seg.end_s[bad].tolist(), seg.energy_kwh[bad].tolist(), hours[bad].tolist(), strict=True)
    )
    return Metered(seg.take(~bad), events)


def concat_segments(parts: list[Segments]) -> Segments:
    """The segments of all ``parts`` in one, sorted by start."""
    parts = [p for p in parts if p.start_s.size]
    if not parts:
        return empty_segments()
    seg = Segments(*(np.concatenate([getattr(p, name) for p in parts]) for name in ("start_s", "end_s", "energy_kwh")))
    order = np.argsort(seg.start_s, kind="stable")
    return seg.take(order)


def mark_buckets(events: tuple[MeterEvent, ...], edges_s: np.ndarray) -> list[list[str]]:
    """Sorted distinct event kinds per bucket: those of the events whose span overlaps it.

    An event of zero length marks the bucket holding its instant. ``n + 1`` edges give ``n`` lists.
    """
    n = edges_s.size - 1
    marks: list[set[str]] = [set() for _ in range(max(n, 0))]
    for event in events:
        lo = int(np.searchsorted(edges_s, event.start_s, side="right")) - 1
        hi = int(np.searchsorted(edges_s, event.end_s, side="left")) - 1 if event.end_s > event.start_s else lo
        for k in range(max(lo, 0), min(hi, n - 1) + 1):
            marks[k].add(event.kind.value)
    return [sorted(m) for m in marks]


def split_import_export(seg: Segments, *, export_positive: bool) -> tuple[Segments, Segments]:
    """Import and export segments of one signed series, split segment by segment.

    Each segment (one power sample's hold, one interval) goes whole to one side by its sign, so
    import and export are never netted across intervals before splitting: an hour of +1 kWh and
    -1 kWh quarters is 2 kWh of import and 2 kWh of export, not 0. Both results keep every span
    (the other side carries 0 kWh there), so both have the series' coverage.

    Args:
        seg: segments of a signed series (kWh).
        export_positive: positive values are export (production) rather than import.
    """
    signed = -seg.energy_kwh if export_positive else seg.energy_kwh
    imported = Segments(seg.start_s, seg.end_s, np.maximum(signed, 0.0) + 0.0)
    exported = Segments(seg.start_s, seg.end_s, np.maximum(-signed, 0.0) + 0.0)
    return imported, exported
