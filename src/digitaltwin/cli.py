"""The ``digitaltwin`` command line."""

from __future__ import annotations

import dataclasses
import sys
import threading
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Optional, TypeVar

import typer
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from digitaltwin.api.schemas import AssetIn, SiteIn
from digitaltwin.cli_accounting import accounting_app, print_demo_accounting
from digitaltwin.cli_scenarios import scenario_cmd
from digitaltwin.cli_tariffs import bill_cmd, tariffs_app
from digitaltwin.cli_users import users_app
from digitaltwin.config import Settings
from digitaltwin.domain.assets import Asset, AssetKind, Site, check_country, check_site_attributes, check_slug
from digitaltwin.domain.durations import parse_duration
from digitaltwin.domain.errors import DomainError, ValidationError
from digitaltwin.domain.timestamps import zone
from digitaltwin.forecasting.errors import ForecastError
from digitaltwin.ingest.csv_import import PRESETS, ImportReport, build_mapping, import_csv
from digitaltwin.observability.logs import configure_logging, secret_values
from digitaltwin.registry.store import ModelRegistry, data_fingerprint
from digitaltwin.services import demo as demo_service
from digitaltwin.services import energy_rollups
from digitaltwin.services.forecasting import ForecastService
from digitaltwin.storage.db import make_engine, migrate
from digitaltwin.storage.repository import Repository

app = typer.Typer(help="Digital Twin Energy: live digital twins of energy assets.", no_args_is_help=True)
sites_app = typer.Typer(help="Sites (places with one local calendar).", no_args_is_help=True)
assets_app = typer.Typer(help="Assets (the twins).", no_args_is_help=True)
app.add_typer(sites_app, name="sites")
app.add_typer(assets_app, name="assets")
app.add_typer(users_app, name="users")  # security
app.add_typer(accounting_app, name="accounting")  # energy accounting: CO2, KPIs, metering tree
app.add_typer(tariffs_app, name="tariffs")  # accounting: tariffs and assignments
app.command("bill")(bill_cmd)  # accounting: monthly bills
app.command("scenario")(scenario_cmd)  # what-if replays of past billing periods
# Long lines (URLs, commands to copy) are never wrapped; piped output is not cut at 80 columns.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 200)


def _open(*, auto_migrate: bool = True) -> tuple[Settings, Repository]:
    settings = Settings()
    configure_logging(settings.log_dir, level=settings.log_level, secrets=secret_values(settings))
    engine = make_engine(settings)
    if auto_migrate and settings.embedded:
        migrate(engine, settings=settings)
    energy_rollups.configure(enabled=settings.energy_rollups)
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
    try:
        migrate(engine, settings=settings)
    except RuntimeError as exc:  # TIMESCALEDB=on on a server without it
        raise _fail(exc) from None
    console.print(f"database migrated ({engine.dialect.name})")


_Registered = TypeVar("_Registered", Site, Asset)


def _registration(schema: type[BaseModel], record: _Registered) -> _Registered:
    """``record`` (a Site or Asset) after checking it against the API's registration ``schema``.

    The CLI stores nothing the API would refuse, and so nothing the API could not show back
    (an infinite ``rated_power_kw`` or an empty name made every listing a 500).

    Raises:
        ValidationError: naming the option (``--rated-power-kw``, ``--name`` ...) of the first problem.
    """
    fields = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}  # type: ignore[arg-type]
    try:
        schema.model_validate({k: v for k, v in fields.items() if k in schema.model_fields})
    except PydanticValidationError as exc:
        problem = exc.errors()[0]
        option = "--" + "-".join(str(part) for part in problem["loc"]).replace("_", "-")
        raise ValidationError(str(problem["msg"]), field=option) from None
    return record


@sites_app.command("add")
def sites_add(
    site_id: str,
    timezone: Annotated[Optional[str], typer.Option(help="IANA timezone, e.g. Europe/Berlin (required for a new site)")] = None,
    name: Annotated[Optional[str], typer.Option()] = None,
    country: Annotated[Optional[str], typer.Option(help="ISO 3166 code for holidays (known to the holidays package)")] = None,
    attribute: Annotated[
        Optional[list[str]],
        typer.Option(help="KEY=VALUE site attribute, repeatable (co2_factor_g_per_kwh=436, carbon_intensity_asset_id=gb-grid); KEY= removes it"),
    ] = None,
) -> None:
    """Register a site; on an existing site only the options given change."""
    _, repo = _open()
    try:
        check_slug(site_id, field="site_id")
        if timezone is not None:
            zone(timezone)
        code = check_country(country)
        current = next((s for s in repo.list_sites() if s.id == site_id), None)
        if current is None:
            if timezone is None:
                raise ValidationError("--timezone is required for a new site", field="timezone")
            attributes = _site_attributes(repo, {}, attribute or [])
            site = repo.create_site(_registration(SiteIn, Site(site_id, name or site_id, timezone, code, attributes)))
        else:
            site = repo.update_site(
                _registration(
                    SiteIn,
                    Site(
                        site_id,
                        name if name is not None else current.name,
                        timezone if timezone is not None else current.timezone,
                        code if country is not None else current.country,
                        _site_attributes(repo, current.attributes, attribute or []),
                    ),
                )
            )
    except DomainError as exc:
        raise _fail(exc) from None
    console.print(f"site {site_id} ({site.timezone}) {'updated' if current is not None else 'created'}")


def _site_attributes(repo: Repository, current: dict[str, object], pairs: list[str]) -> dict[str, object]:
    """``current`` with each ``KEY=VALUE`` applied (numbers as numbers, ``KEY=`` removes), checked as
    ``PATCH /api/v1/sites`` checks them (naming the key; an unknown intensity asset is refused)."""
    out = dict(current)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValidationError(f"{pair!r} is not KEY=VALUE", field="--attribute")
        if value == "":
            out.pop(key, None)
            continue
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    checked = check_site_attributes(out)
    if isinstance(checked.get("carbon_intensity_asset_id"), str):
        repo.get_asset(str(checked["carbon_intensity_asset_id"]), field="carbon_intensity_asset_id")
    return checked


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
    site: Annotated[str, typer.Option(help="site id (an existing asset cannot move to another site)")],
    kind: Annotated[Optional[AssetKind], typer.Option(help="default meter for a new asset")] = None,
    name: Annotated[Optional[str], typer.Option()] = None,
    parent: Annotated[Optional[str], typer.Option(help="parent asset id")] = None,
    rated_power_kw: Annotated[Optional[float], typer.Option(help="nameplate power in kW")] = None,
) -> None:
    """Register an asset; on an existing asset only the options given change (its site cannot).

    Exit status 2 with the reason when the asset exists on another site than ``--site``, or
    for a parent that is unknown, on another site or would make a cycle.
    """
    _, repo = _open()
    try:
        check_slug(asset_id, field="asset_id")
        current = repo.get_asset(asset_id) if repo.known_asset_ids([asset_id]) else None
        if current is None:
            asset = repo.create_asset(
                _registration(AssetIn, Asset(asset_id, site, name or asset_id, kind or AssetKind.METER, parent, rated_power_kw))
            )
        else:
            if current.site_id != site:
                raise ValidationError(
                    f"asset {asset_id!r} belongs to site {current.site_id!r}; --site {site!r} would move it, "
                    "which is not allowed (register a new asset instead)",
                    field="--site",
                )
            asset = repo.update_asset(
                _registration(
                    AssetIn,
                    Asset(
                        asset_id,
                        current.site_id,
                        name if name is not None else current.name,
                        kind if kind is not None else current.kind,
                        parent if parent is not None else current.parent_id,
                        rated_power_kw if rated_power_kw is not None else current.rated_power_kw,
                        current.attributes,
                    ),
                )
            )
    except DomainError as exc:
        raise _fail(exc) from None
    state = "updated" if current is not None else "created"
    console.print(f"asset {asset_id} ({asset.kind.value}) on site {asset.site_id} {state}")


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


def _print_import(report: ImportReport, *, show: int = 20, rejected_file: Path | None = None) -> None:
    """The import summary: each kind counted (stored, duplicates, conflicts, rejected rows per field),
    the first ``show`` rejected rows and conflicts; all of them go to ``rejected_file`` when given."""
    outcome = "replaced" if report.replaced else "kept the stored value"
    console.print(f"rows read {report.rows_read}, readings stored {report.readings_stored}, rejected rows {len(report.errors)}")
    console.print(
        f"duplicates (same value already stored) {report.duplicates}, "
        f"conflicts (another value already stored, {outcome}) {len(report.conflicts)}"
    )
    if report.errors:
        console.print("  rejected per field: " + ", ".join(f"{k} {v}" for k, v in report.rejected_by_field.items()))
    for e in report.errors[:show]:
        console.print(f"  line {e.line}: {e.field}: {e.reason}")
    if len(report.errors) > show:
        console.print(f"  ... and {len(report.errors) - show} more rejected rows")
    for c in report.conflicts[:show]:
        console.print(
            f"  line {c.line}: conflict: {c.quantity} of {c.asset_id} at {c.ts.isoformat()}: "
            f"stored {c.stored_value!r}, file {c.new_value!r}"
        )
    if len(report.conflicts) > show:
        console.print(f"  ... and {len(report.conflicts) - show} more conflicts")
    if rejected_file is not None:
        written = report.write_rejections(rejected_file)
        console.print(f"  {written} rejected row(s) and conflict(s) written to {rejected_file}")
    elif len(report.errors) > show or len(report.conflicts) > show:
        console.print("  (--rejected-file FILE writes all of them)")


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
    delimiter: Annotated[str, typer.Option(help="field separator, e.g. ';'")] = ",",
    decimal: Annotated[str, typer.Option(help="decimal separator of the values, '.' or ',' (1,5)")] = ".",
    hour_column: Annotated[Optional[str], typer.Option(help="column of hour numbers; --timestamp-column then holds dates")] = None,
    hour_convention: Annotated[str, typer.Option(help="hour numbers are 'ending' (1-24, 25) or 'beginning' (0-23, 24)")] = "ending",
    on_conflict: Annotated[str, typer.Option(help="a reading stored with another value: 'keep' it or 'replace' it")] = "keep",
    rejected_file: Annotated[Optional[Path], typer.Option(help="write every rejected row and conflict (line, kind, field, reason) to this CSV")] = None,
) -> None:
    """Import a CSV file of readings; unparseable rows are reported, the rest stored.

    A reading already stored with another value is a conflict: reported with both values and,
    unless --on-conflict replace, the stored value stays. Exit status: 0 when every row was
    stored (or already stored with the same value), 1 when some rows were rejected or conflicted,
    2 when the file or options are unusable.
    """
    _, repo = _open()
    try:
        if on_conflict not in ("keep", "replace"):
            raise typer.BadParameter("--on-conflict must be keep or replace")
        mapping = build_mapping(
            preset=preset, asset=asset, asset_column=asset_column, timestamp_column=timestamp_column,
            value_column=value_column, quantity=quantity, unit=unit, timezone=timezone, label=label,
            interval_seconds=interval_seconds, timestamp_format=timestamp_format, delimiter=delimiter,
            hour_column=hour_column, hour_convention=hour_convention, decimal=decimal,
        )
        if preset in demo_service.PRESET_SETUP:
            demo_service.PRESET_SETUP[preset](repo)  # the preset's site and asset, registered if missing
        site_tz = repo.get_site(site_timezone_from, field="site").timezone if site_timezone_from else None
        with _progress() as bar:
            task = bar.add_task("import", total=None)
            report = import_csv(
                repo, file, mapping, site_timezone=site_tz, progress=lambda done, total: bar.update(task, completed=done, total=total),
                replace_conflicts=on_conflict == "replace",
            )
    except DomainError as exc:
        raise _fail(exc) from None
    _print_import(report, rejected_file=rejected_file)
    if report.errors or report.conflicts:
        raise typer.Exit(code=1)  # some rows were rejected or conflicted: scripts must notice


def _service(settings: Settings, repo: Repository) -> ForecastService:
    from digitaltwin.registry.backtests import BacktestStore

    return ForecastService(
        repo,
        ModelRegistry(settings.models_dir),
        max_hold=settings.power_max_hold,
        backtests=BacktestStore(settings.data_dir / "backtests"),
    )


@app.command("train")
def train_cmd(
    asset: Annotated[str, typer.Option(help="asset id")] = demo_service.PLANT.id,
    algorithm: Annotated[str, typer.Option(help="lightgbm, xgboost, ridge, rf, lstm, gru, ensemble_weighted, ...")] = "lightgbm",
    horizon: Annotated[str, typer.Option(help="ISO 8601 duration")] = "PT24H",
) -> None:
    """Train a model on all stored history, save it in MODELS_DIR; it becomes the champion by the champion rule
    (docs/forecasting.md: never with a shorter horizon than the champion's)."""
    settings, repo = _open()
    try:
        service = _service(settings, repo)
        result = service.train(asset, algorithm, horizon=parse_duration(horizon, field="horizon"))
    except (DomainError, ForecastError) as exc:
        raise _fail(exc) from None
    manifest = result.manifest
    console.print(f"saved model {manifest.model_id}")
    console.print(f"{'champion' if result.promoted else 'not promoted'}: {result.reason}")
    if manifest.metrics:
        console.print("holdout (last 14 days): " + ", ".join(f"{k}={v:.4g}" for k, v in manifest.metrics.items()))


@app.command("train-fleet")
def train_fleet_cmd(
    assets: Annotated[Optional[str], typer.Option(help="comma separated asset ids (default: every asset with readings)")] = None,
    algorithm: Annotated[str, typer.Option()] = "lightgbm",
    horizon: Annotated[str, typer.Option(help="ISO 8601 duration")] = "PT24H",
    n_jobs: Annotated[Optional[int], typer.Option(help="processes (default FLEET_N_JOBS)")] = None,
) -> None:
    """Train many assets in parallel processes (joblib), or on the Dask cluster of DASK_SCHEDULER_ADDRESS."""
    from digitaltwin.services.fleet import train_fleet

    settings, repo = _open()
    ids = [a.strip() for a in assets.split(",") if a.strip()] if assets else [a.id for a in repo.list_assets() if repo.list_series(a.id)]
    try:
        outcomes = train_fleet(settings, ids, algorithm=algorithm, horizon=parse_duration(horizon, field="horizon"), n_jobs=n_jobs)
    except DomainError as exc:
        raise _fail(exc) from None
    table = Table("asset", "model", "champion", "holdout MAE kWh", "reason")
    for o in outcomes:
        table.add_row(o.asset_id, o.model_id or "-", "yes" if o.promoted else "no", "" if o.mae is None else f"{o.mae:.3f}", o.reason)
    console.print(table)
    if any(o.model_id is None for o in outcomes):
        raise typer.Exit(code=1)


#: Columns of the backtest table: (metric, header, scale, format).
BACKTEST_COLUMNS = (
    ("mae", "MAE kWh", 1, ".2f"),
    ("rmse", "RMSE kWh", 1, ".2f"),
    ("cv_rmse", "CV(RMSE) %", 100, ".1f"),
    ("nmbe", "NMBE %", 100, ".1f"),
    ("mape", "MAPE %", 100, ".1f"),
    ("mase", "MASE", 1, ".3f"),
    ("pinball", "pinball kWh", 1, ".2f"),
    ("coverage_80", "80% cover %", 100, ".1f"),
    ("peak_error", "peak err kWh", 1, ".2f"),
)


def print_backtest(metrics: object, *, title: str) -> None:
    """Print a backtest metrics table: MAE, RMSE, pinball, peak error in kWh; CV(RMSE), NMBE, MAPE, coverage in %.

    Undefined figures (MAPE with a zero actual, coverage without calibration) print as "-".
    """
    table = Table(title=title)
    table.add_column("algorithm")
    for _, header, _, _ in BACKTEST_COLUMNS:
        table.add_column(header, justify="right")
    table.add_column("points", justify="right")
    for name, row in metrics.iterrows():  # type: ignore[attr-defined]
        cells = [str(name)]
        for key, _, scale, fmt in BACKTEST_COLUMNS:
            value = float(row[key])
            cells.append("-" if value != value else format(scale * value, fmt))
        table.add_row(*cells, str(int(row["n"])))
    # piped or captured output: wide enough that no header is cut
    (console if console.is_terminal else Console(width=200)).print(table)


@app.command("backtest")
def backtest_cmd(
    asset: Annotated[str, typer.Option(help="asset id")] = demo_service.PLANT.id,
    algorithms: Annotated[str, typer.Option(help="comma separated")] = "seasonal_naive_daily,seasonal_naive_weekly,lightgbm",
    start: Annotated[str, typer.Option(help="first origin, local date")] = "2018-11-05",
    end: Annotated[str, typer.Option(help="last origin, local date")] = "2018-12-30",
    horizon: Annotated[str, typer.Option(help="ISO 8601 duration")] = "PT24H",
    retrain_every: Annotated[int, typer.Option(help="origins between refits")] = 7,
    plot: Annotated[Optional[Path], typer.Option(help="write a PNG of forecast against actual with the 10-90 % interval")] = None,
    store: Annotated[bool, typer.Option(help="store it (GET /api/v1/backtests/{id})")] = False,
) -> None:
    """Rolling-origin backtest, one origin per local midnight; prints MAE, RMSE, CV(RMSE), NMBE, MAPE, MASE, pinball, coverage, peak error."""
    settings, repo = _open()
    try:
        service = _service(settings, repo)
        result, record = service.backtest(
            asset,
            [a.strip() for a in algorithms.split(",") if a.strip()],
            start=date.fromisoformat(start),
            end=date.fromisoformat(end),
            horizon=parse_duration(horizon, field="horizon"),
            retrain_every=retrain_every,
            store=store,
        )
    except (DomainError, ForecastError, ValueError) as exc:
        raise _fail(exc) from None
    if result.metrics.empty or not (result.metrics["n"] > 0).any():
        raise _fail(ValueError(f"no origin between {start} and {end} had enough history to forecast"))
    print_backtest(result.metrics, title=f"{asset}: origins {start}..{end}, horizon {horizon}")
    if plot is not None:
        from digitaltwin.forecasting.plot import backtest_png

        timezone = repo.get_site(repo.get_asset(asset).site_id).timezone
        plot.write_bytes(backtest_png(result, title=f"{asset}: origins {start}..{end}, horizon {horizon}", timezone=timezone))
        console.print(f"plot written to {plot}")
    if record is not None:
        console.print(f"stored as {record.backtest_id}")


@app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option(help="worker processes")] = 1,
) -> None:
    """Serve the REST API (docs at /docs).

    With --workers N > 1 on Linux, N worker processes each listen on their own socket of the
    same address (SO_REUSEPORT), so the kernel spreads connections evenly over them; serve
    restarts a worker that dies and stops them all gracefully on SIGTERM/SIGINT
    (digitaltwin.api.workers). Elsewhere uvicorn's own supervisor runs the N workers.

    With MQTT_BROKER set (and MQTT_API_SUBSCRIBER not false) exactly one MQTT subscriber runs per
    serve: in the API process with one worker; with --workers N > 1 in one ingest worker process
    that serve starts and restarts if it dies (as `digitaltwin ingest` would), the N API
    processes not subscribing. N subscribers sharing one client id would take the session from
    each other every 2 s.
    """
    import uvicorn

    from digitaltwin.api.workers import reuse_port_supported, run_api_workers

    settings = Settings()
    configure_logging(settings.log_dir, level=settings.log_level, secrets=secret_values(settings))
    # uvicorn's own X-Forwarded-For handling is off (proxy_headers=False): it trusts FORWARDED_ALLOW_IPS
    # (127.0.0.1 by default) and overwrites the client address before the app reads TRUSTED_PROXIES.
    # access.log is written (as JSON, without query strings) by the request-id middleware
    multiproc_dir = None
    if workers > 1 or settings.prometheus_multiproc_dir:
        from digitaltwin.observability.metrics import enable_multiprocess

        multiproc_dir = enable_multiprocess(settings.prometheus_multiproc_dir or settings.data_dir / "prometheus-multiproc")
    if workers > 1:
        ingest = _serve_ingest_process(settings, multiproc_dir)
        try:
            if reuse_port_supported():
                try:
                    run_api_workers(host, port, workers)
                except OSError as exc:
                    raise _fail(exc) from None
            else:
                # a worker imports pandas/LightGBM before it answers uvicorn's health check: give it 60 s, not 5
                uvicorn.run(
                    "digitaltwin.api.asgi:app", host=host, port=port, workers=workers, access_log=False,
                    timeout_worker_healthcheck=60, proxy_headers=False,
                )
        finally:
            if ingest is not None:
                ingest[0].set()
                ingest[1].join()
    else:
        from digitaltwin.api.app import create_app
        from digitaltwin.api.server import ApiServer

        ApiServer(uvicorn.Config(create_app(settings), host=host, port=port, access_log=False, proxy_headers=False)).run()


def _serve_ingest_process(settings: Settings, multiproc_dir: Path | None) -> tuple[threading.Event, threading.Thread] | None:
    """For `serve --workers N`: keep the API workers from subscribing and supervise one ingest worker process.

    Returns the (stop event, supervisor thread), or None when serve does not subscribe (no
    MQTT_BROKER, or MQTT_API_SUBSCRIBER=false because a separate ingest service does). The
    ingest process has the client id a single-process serve would use (MQTT_CLIENT_ID or
    ``digitaltwin-ingest-<hostname>``), so it resumes the same persistent session.
    """
    import os

    from digitaltwin.ingest.mqtt_subscriber import default_client_id
    from digitaltwin.ingest.workers import run_workers

    if not settings.mqtt_broker or not settings.mqtt_api_subscriber:
        return None
    os.environ["MQTT_API_SUBSCRIBER"] = "false"  # inherited by the API worker processes uvicorn spawns
    client_id = settings.mqtt_client_id or default_client_id()
    stop = threading.Event()
    supervisor = threading.Thread(
        target=run_workers, args=(settings, 1),
        kwargs={
            "client_id": client_id, "stop": stop, "multiproc_dir": multiproc_dir,
            "on_start": lambda cid: console.print(f"MQTT ingest worker {cid} started"),
        },
        name="serve-ingest-supervisor", daemon=True,
    )
    supervisor.start()
    return stop, supervisor


@app.command("worker")
def worker_cmd(
    concurrency: Annotated[Optional[int], typer.Option(min=1, help="jobs run at once (default JOBS_MAX_CONCURRENT)")] = None,
) -> None:
    """Run queued jobs (trainings and backtests submitted through the API) until SIGINT/SIGTERM.

    The production queue: the jobs table, claimed with SELECT ... FOR UPDATE SKIP LOCKED (see
    digitaltwin.jobs and docs/operations.md). Run it beside `serve` with JOBS_IN_PROCESS=false
    (the default with DATABASE_URL), on the same database and MODELS_DIR. On SIGTERM running
    jobs stop at their next checkpoint between model fits and go back to the queue.
    """
    import signal

    from digitaltwin.jobs.run import JobRunner
    from digitaltwin.jobs.store import JobStore

    settings, repo = _open()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    runner = JobRunner(
        JobStore(repo.engine, max_running_per_host=settings.jobs_max_concurrent), _service(settings, repo),
        concurrency=concurrency or settings.jobs_max_concurrent, heartbeat_s=settings.jobs_heartbeat_seconds,
        stale_s=settings.jobs_stale_seconds, max_attempts=settings.jobs_max_attempts, poll_s=settings.jobs_poll_seconds,
    )
    console.print(f"job worker {runner.worker_id} running up to {runner.concurrency} jobs at once")
    runner.run_forever(stop)
    repo.engine.dispose()
    console.print("worker stopped")


@app.command("ingest")
def ingest_cmd(
    metrics_port: Annotated[Optional[int], typer.Option(help="serve Prometheus metrics on this port")] = None,
    client_id: Annotated[Optional[str], typer.Option(help="overrides MQTT_CLIENT_ID")] = None,
    workers: Annotated[int, typer.Option(min=1, help="worker processes in the shared-subscription group (ids <client id>-<i>)")] = 1,
    leave: Annotated[
        Optional[list[str]],
        typer.Option(help="end the session of this retired client id (store what it holds, then leave the group) and exit; repeatable"),
    ] = None,
) -> None:
    """Standalone MQTT ingest worker (MQTT ingestion): subscribes to MQTT_BROKER until SIGINT/SIGTERM.

    Run several with distinct client ids, or one with --workers N: they share the stream ($share group
    MQTT_SHARED_GROUP, by default one per installation). After scaling down, run --leave with each
    retired id (docs/ingestion.md). See digitaltwin.ingest.workers.
    """
    import signal

    from digitaltwin.ingest.workers import run_worker, run_workers, worker_client_id
    from digitaltwin.observability.metrics import Metrics, enable_multiprocess

    settings, repo = _open()
    repo.engine.dispose()
    if not settings.mqtt_broker:
        raise _fail(DomainError("MQTT_BROKER is not set", field="MQTT_BROKER"))
    if leave:
        from digitaltwin.ingest.workers import leave_sessions

        leave_sessions(settings, leave)
        console.print(f"left the shared group: {', '.join(leave)}")
        return
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    multiproc_dir = None
    if workers > 1 and metrics_port is not None:
        multiproc_dir = enable_multiprocess(settings.prometheus_multiproc_dir or settings.data_dir / "prometheus-ingest")
    metrics = Metrics()
    if metrics_port is not None:
        from prometheus_client import start_http_server

        if multiproc_dir is not None:
            from prometheus_client import CollectorRegistry, multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            start_http_server(metrics_port, registry=registry)
        else:
            start_http_server(metrics_port, registry=metrics.registry)
    if workers == 1:
        cid = worker_client_id(client_id or settings.mqtt_client_id or _default_client_id(), 0, 1)
        console.print(f"ingesting from {settings.mqtt_broker} as {cid}")
        run_worker(settings, client_id=cid, stop=stop, metrics=metrics)
    else:
        console.print(f"ingesting from {settings.mqtt_broker} with {workers} worker processes")
        run_workers(
            settings, workers, client_id=client_id, stop=stop, multiproc_dir=multiproc_dir,
            on_start=lambda cid: console.print(f"worker {cid} started"),
        )
    console.print("ingest stopped")


def _default_client_id() -> str:
    from digitaltwin.ingest.mqtt_subscriber import default_client_id

    return default_client_id()


def _print_demo_admin(password: str | None, base: str) -> None:
    """Print the demo admin's random password once, and how to get a token with it."""
    if password is None:
        console.print(f"admin account: [bold]{demo_service.DEMO_ADMIN}[/bold] (exists; new password: digitaltwin users set-password admin)")
        return
    console.print(
        f"\n[bold]admin account[/bold]: {demo_service.DEMO_ADMIN} / [bold]{password}[/bold]  (shown only now; every API route needs a login)\n"
        f"Token:    curl -s -d 'username={demo_service.DEMO_ADMIN}' --data-urlencode 'password={password}' {base}/api/v1/auth/token\n"
        "          then send 'Authorization: Bearer <access_token>' (or use Authorize in /docs)",
        soft_wrap=True,  # the command stays on one line, so it can be copied
    )


def _print_demo_bills(settings: Settings, repo: Repository) -> None:
    """Assign the steel site its industrial time-of-use tariff and print the 2018 monthly bills."""
    from digitaltwin.accounting.periods import local_midnight
    from digitaltwin.cli_tariffs import print_bills
    from digitaltwin.services.billing import BillingService

    demo_service.assign_demo_tariff(repo)
    tz = zone(demo_service.SITE.timezone)
    bills = BillingService(repo, max_hold=settings.power_max_hold).bills(
        site_id=demo_service.SITE.id, start=local_midnight(date(2018, 1, 1), tz), end=local_midnight(date(2019, 1, 1), tz)
    )
    print_bills(bills, detail=False)
    console.print(f"line items of one month: digitaltwin bill --site {demo_service.SITE.id} --month 2018-11")


def _check_port_free(host: str, port: int) -> None:
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            err.print(f"[red]error[/red] (port): cannot listen on {host}:{port}: {exc.strerror}; pass --port")
            raise typer.Exit(code=2) from None


@app.command("demo")
def demo_cmd(
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="serve the API afterwards")] = True,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """Steel-plant demo on real data: import, train, backtest, replay a day live, serve."""
    if serve:
        _check_port_free(host, port)  # fail now, not after a minute of import and training
    dataset = demo_service.find_dataset()  # before _open(), which creates DATA_DIR and LOG_DIR
    settings, repo = _open()
    console.print(f"[bold]Digital Twin Energy demo[/bold] - database: {settings.sqlalchemy_url.split('@')[-1]}")
    console.print("data: UCI Steel Industry Energy Consumption (DAEWOO Steel, 2018), CC BY 4.0, doi:10.24432/C52G8C")
    with _progress() as bar:
        task = bar.add_task("import", total=None)
        report = demo_service.setup_and_import(repo, dataset, progress=lambda d, t: bar.update(task, completed=d, total=t))
    _print_import(report)
    _print_demo_bills(settings, repo)  # accounting: the plant's 2018 monthly bills
    service = _service(settings, repo)
    # A re-run on the same data keeps the model it trained before instead of storing another version.
    fingerprint = data_fingerprint(service.target(demo_service.PLANT.id).y)
    kept = next((m for m in service.models(demo_service.PLANT.id)
                 if m.algorithm == "lightgbm" and m.data_fingerprint == fingerprint), None)
    if kept is not None:
        console.print(f"kept {kept.model_id}, trained before on the same data")
    else:
        trained = service.train(demo_service.PLANT.id, "lightgbm")
        console.print(f"trained {trained.manifest.model_id} ({trained.reason})")
    result, _ = service.backtest(
        demo_service.PLANT.id,
        ["seasonal_naive_daily", "seasonal_naive_weekly", "lightgbm"],
        start=date(2018, 12, 3),
        end=date(2018, 12, 30),
        retrain_every=7,
    )
    print_backtest(result.metrics, title="Day-ahead backtest, 28 local midnights 2018-12-03..30 (96 x 15 min)")
    print_demo_accounting(  # energy accounting: CO2 at the Korean grid factor and the plant's KPIs for 2018
        settings, repo, demo_service.PLANT.id,
        start=datetime(2018, 1, 1, tzinfo=zone("Asia/Seoul")), end=datetime(2019, 1, 1, tzinfo=zone("Asia/Seoul")),
    )
    _print_demo_admin(demo_service.ensure_demo_admin(repo), f"http://{host}:{port}")  # security
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
        f"Forecast: {base}/api/v1/assets/steel-plant/forecast?horizon=PT24H&algorithm=best&quantiles=0.1,0.5,0.9\n"
        f"Live:     {base}/api/v1/assets/{demo_service.LIVE.id}  (the last day replays, one interval every "
        f"{settings.demo_replay_seconds_per_interval:g} s)\n",
        soft_wrap=True,  # URLs stay on one line, so they can be copied
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
        uvicorn.run(create_app(settings), host=host, port=port, access_log=False, proxy_headers=False)
    finally:
        stop.set()
        thread.join(timeout=5)


def main() -> None:
    """Console entry point: expected failures end with one clear line and exit status 2, not a traceback."""
    import pydantic
    from sqlalchemy.exc import OperationalError

    try:
        app()
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first.get("loc") else "settings"
        err.print(f"[red]configuration error[/red] ({name}): {first['msg']}")
        raise SystemExit(2) from None
    except (DomainError, ForecastError) as exc:
        raise SystemExit(_fail(exc).exit_code) from None
    except OperationalError as exc:
        err.print(f"[red]database unavailable[/red]: {str(exc.orig or exc).splitlines()[0]}")
        raise SystemExit(2) from None
    except OSError as exc:
        err.print(f"[red]error[/red]: {exc}")
        raise SystemExit(2) from None


if __name__ == "__main__":  # pragma: no cover
    main()
