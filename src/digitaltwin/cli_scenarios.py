"""``digitaltwin scenario``: a what-if replay of past billing periods (see ``services/scenarios.py``)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from digitaltwin.cli_tariffs import _fail, _service
from digitaltwin.domain.errors import DomainError, ValidationError
from digitaltwin.optimization.flexibility import Battery
from digitaltwin.services.scenarios import DEFAULT_ALGORITHM, BatteryChange, PVChange, ScenarioRequest, ScenarioService, summary

console = Console()


def _day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"{value!r} is not a date YYYY-MM-DD", field=option) from None


def _row(label: str, part: dict[str, Any], currency: str) -> list[str]:
    b, s, sv = part["baseline"], part["scenario"], part["savings"]
    co2 = "" if part["co2_avoided_kg"] is None else f"{part['co2_avoided_kg']:,.0f}"
    peaks = "" if b["peak_kw"] is None or s["peak_kw"] is None else f"{b['peak_kw']:,.1f} -> {s['peak_kw']:,.1f}"
    return [label, f"{b['bill']['total']:,.2f}", f"{s['bill']['total']:,.2f}", f"{sv['energy']:,.2f}", f"{sv['demand']:,.2f}",
            f"{sv['total']:,.2f}", co2, peaks]


def scenario_cmd(
    site: Annotated[str, typer.Option(help="site id")],
    start: Annotated[str, typer.Option(help="first local day YYYY-MM-DD (whole billing periods are replayed)")],
    end: Annotated[str, typer.Option(help="local day after the last YYYY-MM-DD")],
    battery_kwh: Annotated[Optional[float], typer.Option(help="added battery: usable capacity (kWh)")] = None,
    battery_kw: Annotated[Optional[float], typer.Option(help="added battery: charge and discharge power (kW)")] = None,
    perfect_foresight: Annotated[bool, typer.Option(help="plan the battery with the actual load (an upper bound)")] = False,
    forecast_algorithm: Annotated[str, typer.Option(help="forecaster of the battery's daily plans")] = DEFAULT_ALGORITHM,
    pv_kwp: Annotated[Optional[float], typer.Option(help="added PV (kWp DC)")] = None,
    pv_tilt: Annotated[float, typer.Option(help="added PV tilt (degrees)")] = 30.0,
    pv_azimuth: Annotated[float, typer.Option(help="added PV azimuth (degrees from north)")] = 180.0,
    weather_asset: Annotated[Optional[str], typer.Option(help="asset with irradiance and temperature series")] = None,
    tariff: Annotated[Optional[str], typer.Option(help="bill the scenario under this stored tariff")] = None,
) -> None:
    """Replay past billing periods with an added battery, added PV and/or another tariff; print baseline,
    scenario and savings per period and in total."""
    try:
        battery = None
        if (battery_kwh is None) != (battery_kw is None):
            raise ValidationError("give both --battery-kwh and --battery-kw", field="--battery-kw")
        if battery_kwh is not None and battery_kw is not None:
            battery = BatteryChange(Battery("scenario-battery", battery_kwh, battery_kw, battery_kw),
                                    perfect_foresight=perfect_foresight, forecast_algorithm=forecast_algorithm)
        pv = None
        if pv_kwp is not None:
            if weather_asset is None:
                raise ValidationError("added PV needs --weather-asset", field="--weather-asset")
            pv = PVChange(pv_kwp, pv_tilt, pv_azimuth, weather_asset)
        request = ScenarioRequest(_day(start, "--start"), _day(end, "--end"), pv=pv, battery=battery, tariff_id=tariff)
        service = _service()
        out = summary(ScenarioService(service).run(site, request, now=datetime.now(UTC)))
    except DomainError as exc:
        raise _fail(exc) from None
    cur = out["currency"]
    table = Table(title=f"scenario for {site} ({cur}; savings = baseline - scenario)")
    for column in ("period", "baseline", "scenario", "saved energy", "saved demand", "saved total", "kgCO2 avoided", "peak kW"):
        table.add_column(column, no_wrap=column == "period")
    for p in out["periods"]:
        table.add_row(*_row(f"from {p['first_day']}", p, cur))
    table.add_row(*_row("total", out["total"], cur))
    console.print(table)
    for line in out["assumptions"]:
        console.print(f"- {line}")
