"""The ``digitaltwin`` command line."""

from __future__ import annotations

import threading
from datetime import date
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from digitaltwin.config import Settings
from digitaltwin.domain.assets import Asset, AssetKind, Site, check_slug
from digitaltwin.domain.durations import parse_duration
from digitaltwin.domain.errors import DomainError
from digitaltwin.domain.timestamps import zone
from digitaltwin.forecasting.errors import ForecastError
from digitaltwin.ingest.csv_import import PRESETS, ColumnMapping, ImportReport, ValueColumn, import_csv, with_asset
from digitaltwin.observability.logs import configure_logging
from digitaltwin.registry.store import ModelRegistry
from digitaltwin.services import demo as demo_service
from digitaltwin.services.forecasting import ForecastService
from digitaltwin.storage.db import make_engine, migrate
from digitaltwin.storage.repository import Repository

app = typer.Typer(help="Digital Twin Energy: live digital twins of energy assets.", no_args_is_help=True)
sites_app = typer.Typer(help="Sites (places with one local calendar).", no_args_is_help=True)
assets_app = typer.Typer(help="Assets (the twins).", no_args_is_help=True)
app.add_typer(sites_app, name="sites")
app.add_typer(assets_app, name="assets")
console = Console()
err = Console(stderr=True)


def _open(*, auto_migrate: bool = True) -> tuple[Settings, Repository]:
    settings = Settings()
    configure_logging(settings.log_dir, level=settings.log_level)
    engine = make_engine(settings)
    if auto_migrate and settings.embedded:
        migrate(engine)
    return settings, Repository(engine)


def _fail(exc: Exception) -> typer.Exit:
    field = getattr(exc, "field", None)
    err.print(f"[red]error[/red]{f' ({field})' if field else ''}: {getattr(exc, 'message', None) or exc}")
    return typer.Exit(code=2)


@app.command("migrate")
def migrate_cmd() -> None:
    """Bring the configured database to the latest schema."""
    settings = Settings()
    engine = make_engine(settings)
    migrate(engine)
    console.print(f"database migrated ({engine.dialect.name})")


@sites_app.command("add")
def sites_add(
    site_id: str,
    timezone: Annotated[str, typer.Option(help="IANA timezone, e.g. Europe/Berlin")],
    name: Annotated[Optional[str], typer.Option()] = None,
    country: Annotated[Optional[str], typer.Option(help="ISO 3166 code for holidays")] = None,
) -> None:
    """Register a site (updates it when it exists)."""
    _, repo = _open()
    try:
        check_slug(site_id, field="site_id")
        zone(timezone)
        repo.create_site(Site(site_id, name or site_id, timezone, country), exist_ok=True)
    except DomainError as exc:
        raise _fail(exc) from None
    console.print(f"site {site_id} ({timezone})")


@sites_app.command("list")
def sites_list() -> None:
    """List sites."""
    _, repo = _open()
    table = Table("id", "name", "timezone", "country")
    for s in repo.list_sites():
        table.add_row(s.id, s.name, s.timezone, s.country or "")
    console.print(table)


@assets_app.command("add")
def assets_add(
    asset_id: str,
    site: Annotated[str, typer.Option(help="site id")],
    kind: Annotated[AssetKind, typer.Option()] = AssetKind.METER,
    name: Annotated[Optional[str], typer.Option()] = None,
    parent: Annotated[Optional[str], typer.Option(help="parent asset id")] = None,
    rated_power_kw: Annotated[Optional[float], typer.Option(help="nameplate power in kW")] = None,
) -> None:
    """Register an asset (updates it when it exists)."""
    _, repo = _open()
    try:
        check_slug(asset_id, field="asset_id")
        repo.create_asset(Asset(asset_id, site, name or asset_id, kind, parent, rated_power_kw), exist_ok=True)
    except DomainError as exc:
        raise _fail(exc) from None
    console.print(f"asset {asset_id} ({kind.value}) on site {site}")


@assets_app.command("list")
def assets_list(site: Annotated[Optional[str], typer.Option()] = None) -> None:
    """List assets."""
    _, repo = _open()
    table = Table("id", "site", "kind", "name", "parent")
    for a in repo.list_assets(site_id=site):
        table.add_row(a.id, a.site_id, a.kind.value, a.name, a.parent_id or "")
    console.print(table)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    )


def _print_import(report: ImportReport, *, show: int = 20) -> None:
    console.print(
        f"rows read {report.rows_read}, readings stored {report.readings_stored}, "
        f"already stored {report.duplicates}, rejected rows {len(report.errors)}"
    )
    for e in report.errors[:show]:
        console.print(f"  line {e.line}: {e.field}: {e.reason}")
    if len(report.errors) > show:
        console.print(f"  ... and {len(report.errors) - show} more")


@app.command("import")
def import_cmd(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    preset: Annotated[Optional[str], typer.Option(help=f"built-in mapping: {', '.join(PRESETS)}")] = None,
    asset: Annotated[Optional[str], typer.Option(help="asset of every row (or the preset's)")] = None,
    asset_column: Annotated[Optional[str], typer.Option(help="column naming each row's asset")] = None,
    timestamp_column: Annotated[str, typer.Option()] = "ts",
    value_column: Annotated[Optional[str], typer.Option()] = None,
    quantity: Annotated[str, typer.Option(help="energy, energy_total, power, ...")] = "energy",
    unit: Annotated[Optional[str], typer.Option(help="unit of the values, e.g. Wh, kWh, W, kW")] = None,
    timezone: Annotated[Optional[str], typer.Option(help="IANA zone of timestamps without offset")] = None,
    label: Annotated[str, typer.Option(help="timestamps label interval 'start' or 'end'")] = "start",
    interval_seconds: Annotated[Optional[int], typer.Option(help="interval length of interval energy")] = None,
    timestamp_format: Annotated[Optional[str], typer.Option(help="strptime format; default ISO 8601")] = None,
    site_timezone_from: Annotated[Optional[str], typer.Option("--site", help="use this site's timezone for naive timestamps")] = None,
) -> None:
    """Import a CSV file of readings; unparseable rows are reported, the rest stored."""
    _, repo = _open()
    try:
        if preset:
            if preset not in PRESETS:
                raise typer.BadParameter(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
            mapping = PRESETS[preset]
            if asset:
                mapping = with_asset(mapping, asset)
        else:
            if not value_column:
                raise typer.BadParameter("--value-column is required without --preset")
            if label not in ("start", "end"):
                raise typer.BadParameter("--label must be start or end")
            mapping = ColumnMapping(
                timestamp_column=timestamp_column,
                values=(ValueColumn(value_column, quantity, unit),),
                asset_column=asset_column,
                asset_id=asset,
                timezone=timezone,
                label=label,  # type: ignore[arg-type]
                interval_seconds=interval_seconds,
                timestamp_format=timestamp_format,
            )
        site_tz = repo.get_site(site_timezone_from).timezone if site_timezone_from else None
        with _progress() as bar:
            task = bar.add_task("import", total=None)
            report = import_csv(
                repo, file, mapping, site_timezone=site_tz, progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
    except DomainError as exc:
        raise _fail(exc) from None
    _print_import(report)


def _service(settings: Settings, repo: Repository) -> ForecastService:
    return ForecastService(repo, ModelRegistry(settings.models_dir), max_hold=settings.power_max_hold)


@app.command("train")
def train_cmd(
    asset: Annotated[str, typer.Option(help="asset id")] = demo_service.PLANT.id,
    algorithm: Annotated[str, typer.Option()] = "lightgbm",
    horizon: Annotated[str, typer.Option(help="ISO 8601 duration")] = "PT24H",
) -> None:
    """Train a model on all stored history and save it in MODELS_DIR."""
    settings, repo = _open()
    try:
        manifest = _service(settings, repo).train(asset, algorithm, horizon=parse_duration(horizon, field="horizon"))
    except (DomainError, ForecastError) as exc:
        raise _fail(exc) from None
    console.print(f"saved model {manifest.model_id}")
    if manifest.metrics:
        console.print("holdout (last 14 days): " + ", ".join(f"{k}={v:.4g}" for k, v in manifest.metrics.items()))


def print_backtest(metrics: object, *, title: str) -> None:
    """Print a backtest metrics table (MAE and RMSE in kWh, CV(RMSE) and NMBE in %)."""
    table = Table(title=title)
    for column in ("algorithm", "MAE kWh", "RMSE kWh", "CV(RMSE) %", "NMBE %", "points"):
        table.add_column(column, justify="right" if column != "algorithm" else "left")
    for name, row in metrics.iterrows():  # type: ignore[attr-defined]
        table.add_row(
            str(name), f"{row['mae']:.2f}", f"{row['rmse']:.2f}", f"{100 * row['cv_rmse']:.1f}", f"{100 * row['nmbe']:.1f}", str(int(row["n"]))
        )
    console.print(table)


@app.command("backtest")
def backtest_cmd(
    asset: Annotated[str, typer.Option(help="asset id")] = demo_service.PLANT.id,
    algorithms: Annotated[str, typer.Option(help="comma separated")] = "seasonal_naive_daily,seasonal_naive_weekly,lightgbm",
    start: Annotated[str, typer.Option(help="first origin, local date")] = "2018-11-05",
    end: Annotated[str, typer.Option(help="last origin, local date")] = "2018-12-30",
    horizon: Annotated[str, typer.Option(help="ISO 8601 duration")] = "PT24H",
    retrain_every: Annotated[int, typer.Option(help="origins between refits")] = 7,
) -> None:
    """Rolling-origin backtest, one origin per local midnight; prints MAE, RMSE, CV(RMSE), NMBE."""
    settings, repo = _open()
    try:
        result = _service(settings, repo).backtest(
            asset,
            [a.strip() for a in algorithms.split(",") if a.strip()],
            start=date.fromisoformat(start),
            end=date.fromisoformat(end),
            horizon=parse_duration(horizon, field="horizon"),
            retrain_every=retrain_every,
        )
    except (DomainError, ForecastError, ValueError) as exc:
        raise _fail(exc) from None
    print_backtest(result.metrics, title=f"{asset}: origins {start}..{end}, horizon {horizon}")


@app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option(help="worker processes")] = 1,
) -> None:
    """Serve the REST API (docs at /docs)."""
    import uvicorn

    settings = Settings()
    configure_logging(settings.log_dir, level=settings.log_level)
    if workers > 1:
        uvicorn.run("digitaltwin.api.asgi:app", host=host, port=port, workers=workers)
    else:
        from digitaltwin.api.app import create_app

        uvicorn.run(create_app(settings), host=host, port=port)


@app.command("demo")
def demo_cmd(
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="serve the API afterwards")] = True,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """Steel-plant demo on real data: import, train, backtest, replay a day live, serve."""
    settings, repo = _open()
    dataset = demo_service.find_dataset()
    console.print(f"[bold]Digital Twin Energy demo[/bold] - database: {settings.sqlalchemy_url.split('@')[-1]}")
    console.print("data: UCI Steel Industry Energy Consumption (DAEWOO Steel, 2018), CC BY 4.0, doi:10.24432/C52G8C")
    with _progress() as bar:
        task = bar.add_task("import", total=None)
        report = demo_service.setup_and_import(repo, dataset, progress=lambda d, t: bar.update(task, completed=d, total=t))
    _print_import(report)
    service = _service(settings, repo)
    manifest = service.train(demo_service.PLANT.id, "lightgbm")
    console.print(f"trained {manifest.model_id}")
    result = service.backtest(
        demo_service.PLANT.id,
        ["seasonal_naive_daily", "seasonal_naive_weekly", "lightgbm"],
        start=date(2018, 12, 3),
        end=date(2018, 12, 30),
        retrain_every=7,
    )
    print_backtest(result.metrics, title="Day-ahead backtest, 28 local midnights 2018-12-03..30 (96 x 15 min)")
    if not serve:
        stored = demo_service.replay(repo, seconds_per_interval=0)
        console.print(f"replayed the last day as live telemetry of {demo_service.LIVE.id}: {stored} new readings")
        return
    import uvicorn

    from digitaltwin.api.app import create_app

    base = f"http://{host}:{port}"
    console.print(
        f"\nAPI:      {base}/docs\nReadiness: {base}/readyz\nMetrics:  {base}/metrics\n"
        f"Energy:   {base}/api/v1/assets/steel-plant/energy?start=2018-12-01T00:00:00%2B09:00&end=2019-01-01T00:00:00%2B09:00&bucket=day\n"
        f"Forecast: {base}/api/v1/assets/steel-plant/forecast?horizon=PT24H&algorithm=lightgbm\n"
        f"Live:     {base}/api/v1/assets/{demo_service.LIVE.id}  (the last day replays, one interval every "
        f"{settings.demo_replay_seconds_per_interval:g} s)\n"
    )
    stop = threading.Event()
    thread = threading.Thread(
        target=demo_service.replay,
        args=(repo,),
        kwargs={"seconds_per_interval": settings.demo_replay_seconds_per_interval, "stop": stop},
        daemon=True,
    )
    thread.start()
    try:
        uvicorn.run(create_app(settings), host=host, port=port)
    finally:
        stop.set()
        thread.join(timeout=5)


if __name__ == "__main__":  # pragma: no cover
    app()
