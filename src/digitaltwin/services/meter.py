"""Meter declarations and replacements of an asset's series, and the rules energy reads from them.

:func:`counter_rules` gathers what :func:`digitaltwin.analytics.meter.counter_arithmetic` needs
(register modulus, power limit, resolution, replacements); :func:`declare_series` and
:func:`record_replacement` are the use cases behind the series and meter-replacement routes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from digitaltwin.analytics.meter import DEFAULT_RESOLUTION_KWH, CounterRules, Replacement
from digitaltwin.domain.assets import Asset
from digitaltwin.domain.errors import ConflictError, ValidationError
from digitaltwin.domain.series_attributes import check_serial, check_series_attributes
from digitaltwin.domain.units import SeriesKind, check_range, quantity_spec
from digitaltwin.storage.meter_events import MeterEventStore, StoredReplacement
from digitaltwin.storage.repository import Repository, SeriesInfo


def power_limit_kw(asset: Asset) -> float | None:
    """The power the asset cannot exceed (kW): its ``rated_power_kw``, else its ``connection_capacity_kw`` attribute."""
    if asset.rated_power_kw:
        return float(asset.rated_power_kw)
    capacity = asset.attributes.get("connection_capacity_kw")
    return float(capacity) if isinstance(capacity, int | float) and not isinstance(capacity, bool) and capacity > 0 else None


def counter_rules(repo: Repository, asset: Asset, info: SeriesInfo, *, attributes: dict[str, Any] | None = None,
                  stored: Sequence[StoredReplacement] | None = None) -> CounterRules:
    """The meter rules of one series: modulus and resolution it declares, the asset's power limit,
    and (for counters) its stored replacements. ``attributes`` and ``stored`` (its replacements):
    the series' if already read (e.g. for many series at once)."""
    if attributes is None:
        attributes = MeterEventStore(repo.engine).series_attributes(info.id)
    replacements: tuple[Replacement, ...] = ()
    if info.kind is SeriesKind.CUMULATIVE:
        replacements = tuple(
            Replacement(r.old_ts.timestamp(), r.old_value_kwh, r.new_ts.timestamp(), r.new_value_kwh)
            for r in (MeterEventStore(repo.engine).replacements(info.id) if stored is None else stored)
        )
    return CounterRules(
        modulus_kwh=attributes.get("counter_modulus_kwh"),
        power_limit_kw=power_limit_kw(asset),
        resolution_kwh=float(attributes.get("resolution_kwh", DEFAULT_RESOLUTION_KWH)),
        replacements=replacements,
    )


def declare_series(repo: Repository, asset_id: str, quantity: str, attributes: Any) -> tuple[SeriesInfo, dict[str, Any]]:
    """Replace the declared attributes of an asset's series of ``quantity`` (created if it has no reading yet).

    Returns:
        The series and its previous attributes.

    Raises:
        NotFoundError: unknown asset.
        ValidationError: unknown quantity, or an attribute naming its key
            (:func:`~digitaltwin.domain.series_attributes.check_series_attributes`).
    """
    repo.get_asset(asset_id)
    quantity_spec(quantity, field="quantity")
    checked = check_series_attributes(quantity, attributes)
    before = repo.find_series(asset_id, quantity, fresh=True)
    previous = MeterEventStore(repo.engine).series_attributes(before.id) if before is not None else {}
    return repo.set_series_attributes(asset_id, quantity, checked), previous


@dataclass(frozen=True, slots=True)
class ReplacementIn:
    """A meter replacement to record: the old meter's final and the new meter's first reading (kWh, UTC)."""

    quantity: str
    old_ts: datetime
    old_value_kwh: float
    new_ts: datetime
    new_value_kwh: float
    old_serial: str | None = None
    new_serial: str | None = None


def check_counter_quantity(quantity: str) -> str:
    """``quantity`` if it is a counter register (``energy_total``, ``energy_export_total``).

    Raises:
        ValidationError: naming ``quantity``.
    """
    if quantity_spec(quantity, field="quantity").kind is not SeriesKind.CUMULATIVE:
        raise ValidationError(f"a meter replacement applies to counter registers, not {quantity}", field="quantity")
    return quantity


def record_replacement(repo: Repository, asset_id: str, swap: ReplacementIn, *, created_by: str | None = None, source: str = "api") -> StoredReplacement:
    """Store a meter replacement of an asset's counter series.

    Raises:
        NotFoundError: unknown asset.
        ValidationError: naming ``quantity`` (not a counter), ``new_first.ts`` (before the old
            meter's final reading), ``old_final.value``/``new_first.value`` (outside the plausible
            range; an old final below a stored reading of the old meter, or a new first above a
            stored reading of the new meter, unless the register declares a modulus), or a serial.
        ConflictError: naming ``old_final.ts`` when a replacement at that instant exists.
    """
    repo.get_asset(asset_id)
    check_counter_quantity(swap.quantity)
    if swap.new_ts < swap.old_ts:
        raise ValidationError("the new meter's first reading is before the old meter's final reading", field="new_first.ts")
    check_range(swap.quantity, swap.old_value_kwh, field="old_final.value")
    check_range(swap.quantity, swap.new_value_kwh, field="new_first.value")
    for serial, field in ((swap.old_serial, "old_serial"), (swap.new_serial, "new_serial")):
        if serial is not None:
            check_serial(serial, field=field)
    info = repo.ensure_series(asset_id, swap.quantity)
    store = MeterEventStore(repo.engine)
    if any(r.old_ts == swap.old_ts for r in store.replacements(info.id)):
        raise ConflictError("a meter replacement with this final reading's time exists", field="old_final.ts")
    if store.series_attributes(info.id).get("counter_modulus_kwh") is None:
        _check_sides(repo, info, swap)
    return store.add_replacement(
        info.id, old=(swap.old_ts, swap.old_value_kwh), new=(swap.new_ts, swap.new_value_kwh),
        old_serial=swap.old_serial, new_serial=swap.new_serial, source=source, created_by=created_by,
        serial_attribute=swap.new_serial,
    )


def _check_sides(repo: Repository, info: SeriesInfo, swap: ReplacementIn) -> None:
    """Nothing negative on either side: the old meter's final reading is not below its last stored
    reading, the new meter's first is not above its next stored reading."""
    before = repo.previous_reading(info.id, swap.old_ts)
    if before is not None and before[1] > swap.old_value_kwh:
        raise ValidationError(
            f"the old meter read {before[1]:g} kWh at {before[0].isoformat()}, more than its final reading "
            f"{swap.old_value_kwh:g} kWh",
            field="old_final.value",
        )
    after = repo.next_reading(info.id, swap.new_ts)
    if after is not None and after[1] < swap.new_value_kwh:
        raise ValidationError(
            f"the new meter read {after[1]:g} kWh at {after[0].isoformat()}, less than its first reading "
            f"{swap.new_value_kwh:g} kWh",
            field="new_first.value",
        )


@dataclass(frozen=True, slots=True)
class SerialSighting:
    """A counter reading stored with the serial of the meter that took it (value in kWh, UTC)."""

    asset_id: str
    quantity: str
    ts: datetime
    value_kwh: float
    serial: str


def apply_serials(repo: Repository, sightings: list[SerialSighting]) -> list[StoredReplacement]:
    """Record the meter replacements that serials carried with stored counter readings reveal.

    Per counter series, in time order: the first serial ever seen becomes its ``meter_serial``;
    a reading with another serial than the series' current one, later than its last replacement,
    is the new meter's first reading, and the stored reading just before it the old meter's final
    one (what happened between the two is the swap window: a gap). A reading older than the last
    replacement changes nothing (a late delivery of history). Call after the readings are stored.

    Returns:
        The replacements recorded (source ``telemetry``).
    """
    out: list[StoredReplacement] = []
    store = MeterEventStore(repo.engine)
    by_series: dict[tuple[str, str], list[SerialSighting]] = {}
    for s in sightings:
        if quantity_spec(s.quantity).kind is SeriesKind.CUMULATIVE:
            by_series.setdefault((s.asset_id, s.quantity), []).append(s)
    for (asset_id, quantity), seen in by_series.items():
        info = repo.ensure_series(asset_id, quantity)
        attributes = store.series_attributes(info.id)
        current = attributes.get("meter_serial")
        swaps = store.replacements(info.id)
        last_swap = max((r.new_ts for r in swaps), default=None)
        for s in sorted(seen, key=lambda s: s.ts):
            if s.serial == current or (last_swap is not None and s.ts <= last_swap):
                continue
            previous = repo.previous_reading(info.id, s.ts)
            if current is None or previous is None:
                repo.set_series_attributes(asset_id, quantity, attributes | {"meter_serial": s.serial})
            else:
                out.append(
                    store.add_replacement(
                        info.id, old=previous, new=(s.ts, s.value_kwh), old_serial=current, new_serial=s.serial,
                        source="telemetry", serial_attribute=s.serial,
                    )
                )
                last_swap = s.ts
            attributes = attributes | {"meter_serial": s.serial}
            current = s.serial
    return out
