"""``digitaltwin accounting ...``: CO2 per bucket, KPIs and the metering tree from the command line.

The same computations as ``GET /api/v1/assets/{id}/energy?with=co2``, ``.../kpis`` and
``/api/v1/sites/{id}/metering-tree`` (see docs/accounting.md).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Optional
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

from digitaltwin.analytics.buckets import Bucket
from digitaltwin.config import Settings
from digitaltwin.domain.errors import DomainError, ValidationError
from digitaltwin.domain.timestamps import parse_instant
from digitaltwin.services.carbon import energy_co2
from digitaltwin.services.energy import energy_report
from digitaltwin.services.kpis import Kpis, asset_kpis, metering_tree, site_kpis
from digitaltwin.storage.db import make_engine, migrate
from digitaltwin.storage.repository import Repository

accounting_app = typer.Typer(help="Energy accounting: CO2, KPIs and the metering tree.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

_Start = Annotated[str, typer.Option(help="RFC 3339 with offset, inclusive, e.g. 2019-01-01T00:00:00Z")]
_End = Annotated[str, typer.Option(help="RFC 3339 with offset, exclusive")]


def _open() -> tuple[Settings, Repository]:
    settings = Settings()
    engine = make_engine(settings)
    if settings.embedded:
        migrate(engine)
    return settings, Repository(engine)


def _fail(exc: DomainError) -> typer.Exit:
    err.print(f"[red]error[/red] ({exc.field}): {exc.message}")
    return typer.Exit(code=2)


def _range(start: str, end: str) -> tuple[datetime, datetime]:
    return parse_instant(start, field="--start", plausible=False), parse_instant(end, field="--end", plausible=False)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _num(value: float | None, fmt: str = ",.1f") -> str:
    return "-" if value is None else format(value, fmt)


def kpi_table(k: Kpis, *, title: str | None = None) -> Table:
    """The KPIs as a two-column table (name with unit, value)."""
    table = Table("KPI", "value", title=title or f"KPIs of {k.subject}, {k.start.isoformat()} .. {k.end.isoformat()}")
    tz = ZoneInfo(k.timezone)
    peak_at = k.load.peak_ts.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") if k.load.peak_ts else "-"
    rows = [
        ("energy (kWh)", _num(k.load.energy_kwh)),
        ("peak demand, 15 min (kW)", f"{_num(k.load.peak_demand_kw)} at {peak_at}"),
        ("load factor", _num(k.load.load_factor, ".3f")),
        ("base load, night p2.5 (kW)", _num(k.load.base_load_kw)),
        ("energy per m2 (kWh/m2)", _num(k.energy_per_m2_kwh, ",.2f")),
        ("energy per unit produced (kWh)", _num(k.energy_per_unit_kwh, ",.3f")),
        ("cost per kWh", _num(k.cost_per_kwh, ".4f") if k.cost_per_kwh is not None else "- (no tariff)"),
        ("CO2 (kg)", _num(k.co2_kg)),
        ("avoided CO2, export (kg)", _num(k.avoided_co2_kg)),
        ("CO2 intensity source", k.co2_source or "- (site names none)"),
        ("data completeness", f"{k.load.completeness:.1%}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def co2_table(repo: Repository, asset_id: str, *, start: datetime, end: datetime, bucket: Bucket, settings: Settings) -> Table:
    """Energy and CO2 per bucket of one asset (the rows of ``energy?with=co2``)."""
    now = datetime.now(UTC)
    report = energy_report(repo, asset_id, start=start, end=end, bucket=bucket, max_hold=settings.power_max_hold, now=now)
    co2 = energy_co2(repo, asset_id, start=start, end=end, bucket=bucket, max_hold=settings.power_max_hold, now=now)
    tz = ZoneInfo(report.timezone)
    table = Table("start (local)", "energy (kWh)", "CO2 (kg)", "avoided CO2 (kg)", "kgCO2/kWh",
                  title=f"CO2 of {asset_id} per {bucket.value} ({co2.source or 'no carbon intensity on the site'})")
    for i, row in enumerate(report.rows):
        kg = avoided = None
        if co2.emissions is not None:
            kg, avoided = _finite(co2.emissions.co2_kg[i]), _finite(co2.emissions.avoided_co2_kg[i])
        ratio = kg / row.energy_kwh if kg is not None and row.energy_kwh else None
        table.add_row(row.start.astimezone(tz).strftime("%Y-%m-%d %H:%M"), _num(row.energy_kwh), _num(kg), _num(avoided), _num(ratio, ".3f"))
    return table


@accounting_app.command("co2")
def co2_cmd(
    asset_id: str, start: _Start, end: _End,
    bucket: Annotated[Bucket, typer.Option(help="bucket of the site's calendar")] = Bucket.MONTH,
) -> None:
    """Energy and location-based CO2 per bucket of one asset."""
    settings, repo = _open()
    try:
        begin, finish = _range(start, end)
        console.print(co2_table(repo, asset_id, start=begin, end=finish, bucket=bucket, settings=settings))
    except DomainError as exc:
        raise _fail(exc) from None


@accounting_app.command("kpis")
def kpis_cmd(
    start: _Start, end: _End,
    asset: Annotated[Optional[str], typer.Option(help="an asset id")] = None,
    site: Annotated[Optional[str], typer.Option(help="a site id (its root meters, summed)")] = None,
) -> None:
    """KPIs of one asset (--asset) or one site (--site) over [--start, --end)."""
    settings, repo = _open()
    try:
        if (asset is None) == (site is None):
            raise ValidationError("give exactly one of --asset and --site", field="--asset")
        begin, finish = _range(start, end)
        fn = asset_kpis if asset is not None else site_kpis
        k = fn(repo, asset or site, start=begin, end=finish, max_hold=settings.power_max_hold, now=datetime.now(UTC))  # type: ignore[operator, arg-type]
        console.print(kpi_table(k))
    except DomainError as exc:
        raise _fail(exc) from None


@accounting_app.command("tree")
def tree_cmd(site_id: str, start: _Start, end: _End) -> None:
    """A site's metering tree: each meter's energy, its metered children and the unmetered remainder."""
    settings, repo = _open()
    try:
        begin, finish = _range(start, end)
        result = metering_tree(repo, site_id, start=begin, end=finish, max_hold=settings.power_max_hold, now=datetime.now(UTC))
    except DomainError as exc:
        raise _fail(exc) from None
    table = Table("meter", "parent meter", "energy (kWh)", "children (kWh)", "unmetered (kWh)", "note",
                  title=f"Metering tree of {site_id}: site total {result.tree.total_kwh:,.1f} kWh (root meters only)")
    for n in result.tree.nodes:
        note = "METER ERROR: children exceed parent" if n.meter_error else ""
        if n.children_without_data:
            note = (note + "; " if note else "") + "no data: " + ", ".join(n.children_without_data)
        table.add_row(n.asset_id, n.parent_meter_id or "(root)", _num(n.energy_kwh),
                      _num(n.children_kwh) if n.children else "", _num(n.unmetered_kwh), note)
    console.print(table)


def print_demo_accounting(settings: Settings, repo: Repository, asset_id: str, *, start: datetime, end: datetime) -> None:
    """The demo's CO2 per month and KPI tables of ``asset_id`` over ``[start, end)``."""
    console.print(co2_table(repo, asset_id, start=start, end=end, bucket=Bucket.MONTH, settings=settings))
    k = asset_kpis(repo, asset_id, start=start, end=end, max_hold=settings.power_max_hold, now=datetime.now(UTC))
    console.print(kpi_table(k))
