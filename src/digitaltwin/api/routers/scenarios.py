"""What-if scenarios: a past period replayed with the site's actual load under a changed system (operator)."""

from __future__ import annotations

from datetime import UTC, datetime
from datetime import time as time_of_day

from fastapi import APIRouter

from digitaltwin.api.deps import State
from digitaltwin.api.scenario_schemas import ScenarioIn, ScenarioOut, ShiftIn
from digitaltwin.domain.errors import ValidationError
from digitaltwin.optimization.flexibility import Battery
from digitaltwin.optimization.whatif import LoadShift
from digitaltwin.services.billing import BillingService
from digitaltwin.services.scenarios import BatteryChange, PVChange, ScenarioRequest, ScenarioService, summary

router = APIRouter(prefix="/api/v1", tags=["scenarios"])


def _time(value: str, field: str) -> time_of_day:
    try:
        return time_of_day.fromisoformat(value)
    except ValueError:
        raise ValidationError("must be a local time HH:MM", field=field) from None


def parse_shift(body: ShiftIn) -> LoadShift:
    """The body's shift as a :class:`LoadShift` (422 naming ``shift.<key>``)."""
    return LoadShift(body.energy_kwh_per_day, _time(body.from_start, "shift.from_start"), _time(body.from_end, "shift.from_end"),
                     _time(body.to_start, "shift.to_start"), _time(body.to_end, "shift.to_end"))


def scenario_request(body: ScenarioIn) -> ScenarioRequest:
    """The service's request of a checked body; domain checks name ``battery.*``, ``pv.*``, ``shift.*``."""
    battery = None
    if body.battery is not None:
        b = body.battery
        battery = BatteryChange(
            Battery("scenario-battery", b.capacity_kwh, b.max_charge_kw, b.max_discharge_kw, b.charge_efficiency,
                    b.discharge_efficiency, b.soc_min, b.soc_max, b.soc_initial, b.soc_final, b.degradation_cost_per_kwh),
            perfect_foresight=b.perfect_foresight, forecast_algorithm=b.forecast_algorithm, mode=b.mode,
            quantile=b.quantile, guard=b.guard,
        )
    pv = None
    if body.pv is not None:
        p = body.pv
        pv = PVChange(p.kwp, p.tilt_deg, p.azimuth_deg, p.weather_asset_id, p.latitude, p.longitude, p.losses, p.dc_ac_ratio)
    return ScenarioRequest(body.start, body.end, shift=parse_shift(body.shift) if body.shift else None, pv=pv,
                           battery=battery, tariff_id=body.tariff_id)


@router.post("/sites/{site_id}/scenarios", response_model=ScenarioOut)
def run_scenario(site_id: str, body: ScenarioIn, state: State) -> ScenarioOut:
    """Replay whole billing periods (at most 13) with the site's metered load under a changed system: a load
    shift, added PV (pvlib with a weather asset's GHI and temperature), an added battery run by the scheduler
    on daily plans from the forecasts available then (or, labelled so, with perfect foresight), another
    tariff. Baseline and scenario are billed by the same engine, with CO2 and peaks, per period and in total.

    422 names the field (``end``, ``battery.capacity_kwh``, ``battery.charge_efficiency`` below 0.1, ``pv.latitude``,
    ``pv.weather_asset_id``, ``battery.forecast_algorithm``, ``shift.from_end``, ``tariff_id`` ...); 404 an unknown site,
    tariff or asset, or a site without a tariff assignment (``tariff``); 504/503 a daily plan the solver could not make.
    """
    request = scenario_request(body)
    service = ScenarioService(BillingService(state.repo, max_hold=state.settings.power_max_hold))
    return ScenarioOut.model_validate(summary(service.run(site_id, request, now=datetime.now(UTC))))
