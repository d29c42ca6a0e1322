"""``digitaltwin tariffs ...`` and ``digitaltwin bill``: tariffs, assignments and monthly bills."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from digitaltwin.accounting.bill import MINOR_UNITS, Bill, round_money
from digitaltwin.accounting.periods import local_midnight
from digitaltwin.config import Settings
from digitaltwin.domain.errors import DomainError, ValidationError
from digitaltwin.domain.timestamps import zone
from digitaltwin.observability.logs import configure_logging, secret_values
from digitaltwin.services.billing import BillingService, SiteBill
from digitaltwin.storage.db import make_engine, migrate
from digitaltwin.storage.repository import Repository

tariffs_app = typer.Typer(help="Tariffs (URDB JSON or the native form) and their assignment to sites and assets.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def _service() -> BillingService:
    settings = Settings()
    configure_logging(settings.log_dir, level=settings.log_level, secrets=secret_values(settings))
    engine = make_engine(settings)
    if settings.embedded:
        migrate(engine)
    return BillingService(Repository(engine), max_hold=settings.power_max_hold)


def _fail(exc: DomainError) -> typer.Exit:
    err.print(f"[red]error[/red]{f' ({exc.field})' if exc.field else ''}: {exc.message}")
    return typer.Exit(code=2)


def _date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"{value!r} is not a date YYYY-MM-DD", field=option) from None


@tariffs_app.command("import")
def import_cmd(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="URDB JSON record or native-form JSON")],
    tariff_id: Annotated[Optional[str], typer.Option("--id", help="tariff id (default: the URDB label)")] = None,
) -> None:
    """Import a tariff as it comes; a field the engine does not bill is refused by name (exit 2)."""
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        err.print(f"[red]error[/red] (FILE): not JSON: {exc}")
        raise typer.Exit(code=2) from None
    try:
        imported = _service().import_tariff(record, tariff_id=tariff_id)
    except DomainError as exc:
        raise _fail(exc) from None
    s = imported.stored
    console.print(f"tariff {s.id} ({s.format}, {s.currency}): {s.name}")
    if imported.informational_fields:
        console.print(f"kept, not billed: {', '.join(imported.informational_fields)}")


@tariffs_app.command("list")
def list_cmd() -> None:
    """List tariffs."""
    table = Table("id", "format", "currency", "name")
    for t in _service().store.list():
        table.add_row(t.id, t.format, t.currency, t.name)
    console.print(table)


@tariffs_app.command("show")
def show_cmd(tariff_id: str) -> None:
    """Print a tariff as imported (its source JSON) and the fields kept but not billed."""
    try:
        imported = _service().tariff(tariff_id)
    except DomainError as exc:
        raise _fail(exc) from None
    s = imported.stored
    console.print(f"tariff {s.id} ({s.format}, {s.currency}): {s.name}")
    if imported.informational_fields:
        console.print(f"kept, not billed: {', '.join(imported.informational_fields)}")
    console.print_json(json.dumps(s.source))


@tariffs_app.command("assign")
def assign_cmd(
    tariff_id: str,
    valid_from: Annotated[str, typer.Option("--from", help="first local date billed, YYYY-MM-DD")],
    site: Annotated[Optional[str], typer.Option(help="site id")] = None,
    asset: Annotated[Optional[str], typer.Option(help="asset id (a sub-meter)")] = None,
    valid_to: Annotated[Optional[str], typer.Option("--to", help="first local date no longer billed (exclusive)")] = None,
    bill_day: Annotated[Optional[int], typer.Option(help="day of month billing periods start (1..28); default calendar months")] = None,
) -> None:
    """Bill a site or an asset under a tariff from a date."""
    try:
        start = _date(valid_from, "--from")
        assert start is not None
        a = _service().assign(tariff_id, site_id=site, asset_id=asset, valid_from=start,
                              valid_to=_date(valid_to, "--to"), bill_day=bill_day)
    except DomainError as exc:
        raise _fail(exc) from None
    console.print(f"assignment {a.id}: {a.site_id or a.asset_id} billed under {a.tariff_id} from {a.valid_from}"
                  f"{f' to {a.valid_to}' if a.valid_to else ''}")


def _money(amount: float, currency: str) -> str:
    decimals = MINOR_UNITS.get(currency, 2)
    return f"{round_money(amount, currency) + 0.0:,.{decimals}f}"  # + 0.0: no "-0"


def _label(b: Bill) -> str:
    whole_month = b.period.first_day.day == 1 and (b.period.last_day + timedelta(days=1)).day == 1
    return b.period.first_day.strftime("%Y-%m") if whole_month else f"{b.period.first_day}..{b.period.last_day}"


def print_bills(bills: list[SiteBill], *, detail: bool = True) -> None:
    """A monthly summary table, then (with ``detail``) each bill's line items."""
    if not bills:
        console.print("no billing period in range")
        return
    cur = bills[0].bill.currency
    rows = []
    for sb in bills:
        b = sb.bill
        by = {k: sum(i.amount for i in b.line_items if i.kind == k) for k in ("energy", "demand", "tax")}
        rows.append((b, by, b.total - sum(by.values())))  # other: fixed, export credit, minimum top-up
    with_other = any(round_money(other, cur) != 0 for _, _, other in rows)
    summary = Table("period", "kWh", "peak kW", "energy", "demand", *(["other"] if with_other else []), "taxes",
                    "total", "data", box=None, pad_edge=False)
    for b, by, other in rows:
        summary.add_row(_label(b), f"{b.import_kwh:,.0f}", f"{b.peak_kw or 0:,.0f}", _money(by["energy"], cur),
                        _money(by["demand"], cur), *([_money(other, cur)] if with_other else []), _money(by["tax"], cur),
                        _money(b.total, cur), f"{b.completeness:.0%}")
    console.print(f"[bold]Monthly bills[/bold], {bills[0].bill.tariff_name}; amounts in {cur}")
    console.print(summary)
    if not detail:
        return
    for sb in bills:
        b = sb.bill
        table = Table("kind", "line", "quantity", "rate", "amount", "peak at",
                      box=None, pad_edge=False)
        console.print(f"\n[bold]{_label(b)}[/bold] ({b.period.first_day}..{b.period.last_day}, {sb.timezone}), tariff {sb.tariff_id}")
        for i in b.line_items:
            at = i.peak_at.astimezone(zone(sb.timezone)).strftime("%m-%d %H:%M") if i.peak_at else ""
            qty = f"{i.quantity:,.1f} {i.unit or ''}" if i.quantity is not None else ""
            table.add_row(i.kind, i.description, qty, "" if i.rate is None else f"{i.rate:g}", _money(i.amount, cur), at)
        table.add_row("", "total", "", "", f"{_money(b.total, cur)} {cur}", "")
        console.print(table)
        for note in b.notes:
            console.print(f"  note: {note}")


def bill_cmd(
    site: Annotated[Optional[str], typer.Option(help="site id")] = None,
    asset: Annotated[Optional[str], typer.Option(help="asset id with its own tariff assignment")] = None,
    month: Annotated[Optional[str], typer.Option(help="billing month YYYY-MM in the site's calendar")] = None,
    year: Annotated[Optional[int], typer.Option(help="all billing periods starting in this year")] = None,
) -> None:
    """Print the bill(s) of a site or asset: ``--month 2018-11`` (line items) or ``--year 2018`` (summary)."""
    service = _service()
    try:
        if (site is None) == (asset is None):
            raise ValidationError("give exactly one of --site or --asset", field="--site")
        owner = service.repo.get_site(site) if site else service.repo.get_site(service.repo.get_asset(asset).site_id)  # type: ignore[arg-type]
        tz = zone(owner.timezone)
        if (month is None) == (year is None):
            raise ValidationError("give exactly one of --month or --year", field="--month")
        if month is not None:
            try:
                first = datetime.strptime(month, "%Y-%m").date()
            except ValueError:
                raise ValidationError(f"{month!r} is not YYYY-MM", field="--month") from None
            last = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
        else:
            first, last = date(year, 1, 1), date(year + 1, 1, 1)  # type: ignore[operator]
        bills = service.bills(site_id=site, asset_id=asset, start=local_midnight(first, tz), end=local_midnight(last, tz))
    except DomainError as exc:
        raise _fail(exc) from None
    print_bills(bills, detail=month is not None)
