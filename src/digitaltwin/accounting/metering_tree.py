"""The asset hierarchy as a metering tree: parents, metered children and the unmetered remainder.

A *meter* here is an asset with an energy-carrying series. Assets without one (a building
record, a weather station) are transparent: the meters below them count as metered children
of the nearest meter above. For each meter:

* ``children_kwh``: the sum of its metered children's energy (children without data in the
  period are listed in ``children_without_data`` and count as nothing);
* ``unmetered_kwh = energy_kwh - children_kwh``: the explicit remainder (losses, loads
  without their own meter). It is reported as it is, never clipped: a negative remainder
  means the children read more than the parent, i.e. a meter or wiring error, flagged by
  ``meter_error`` once it exceeds :data:`METER_ERROR_FRACTION` of the parent's energy.

The site total is the sum of the *root* meters (meters with no meter above them), so a
child's energy is never counted twice, whatever the remainders are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: A negative remainder beyond this share of the parent's energy is flagged as a meter error:
#: 1 %, the accuracy class of common energy meters (IEC 62053-21 class 1, +-1 %), so
#: differences within the meters' own tolerance are not flagged.
METER_ERROR_FRACTION = 0.01


@dataclass(frozen=True, slots=True)
class TreeInput:
    """One asset of a site: ``metered`` when it has an energy series; ``energy_kwh`` None without data."""

    asset_id: str
    parent_id: str | None
    metered: bool
    energy_kwh: float | None = None


@dataclass(slots=True)
class MeterNode:
    """One meter of the tree (see the module docstring for the fields)."""

    asset_id: str
    parent_meter_id: str | None
    energy_kwh: float | None
    children: list[str] = field(default_factory=list)
    children_kwh: float = 0.0
    children_without_data: list[str] = field(default_factory=list)
    unmetered_kwh: float | None = None
    meter_error: bool = False


@dataclass(frozen=True, slots=True)
class MeteringTree:
    """Meters in input order, the root meters and the site total (sum of the roots, kWh)."""

    nodes: list[MeterNode]
    roots: list[str]
    total_kwh: float


def build_tree(assets: list[TreeInput]) -> MeteringTree:
    """The metering tree of a site's assets (any order; parents must be among them or absent).

    A parent id that is not among ``assets`` is treated as no parent.
    """
    by_id = {a.asset_id: a for a in assets}

    def meter_above(asset: TreeInput) -> str | None:
        seen = {asset.asset_id}
        parent = by_id.get(asset.parent_id) if asset.parent_id else None
        while parent is not None and parent.asset_id not in seen:
            if parent.metered:
                return parent.asset_id
            seen.add(parent.asset_id)
            parent = by_id.get(parent.parent_id) if parent.parent_id else None
        return None

    nodes = {a.asset_id: MeterNode(a.asset_id, meter_above(a), a.energy_kwh) for a in assets if a.metered}
    for node in nodes.values():
        if node.parent_meter_id is None:
            continue
        parent = nodes[node.parent_meter_id]
        parent.children.append(node.asset_id)
        if node.energy_kwh is None:
            parent.children_without_data.append(node.asset_id)
        else:
            parent.children_kwh += node.energy_kwh
    for node in nodes.values():
        if node.children and node.energy_kwh is not None:
            node.unmetered_kwh = node.energy_kwh - node.children_kwh
            node.meter_error = node.unmetered_kwh < -METER_ERROR_FRACTION * abs(node.energy_kwh)
    roots = [n.asset_id for n in nodes.values() if n.parent_meter_id is None]
    total = sum(nodes[r].energy_kwh or 0.0 for r in roots)
    return MeteringTree(list(nodes.values()), roots, total)
