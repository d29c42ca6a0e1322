"""What-if scenarios: a past period replayed with the site's actual load under a changed system.

The baseline is what the site's top-level meters metered (import and export per interval, read
as a bill reads them, see :meth:`BillingService.meter`). The scenario is the same net load with
the changes applied in this order: a load ``shift`` (:func:`~digitaltwin.optimization.whatif.shift_load`),
added ``pv`` (:mod:`~digitaltwin.optimization.pv_production` from a weather asset's GHI and air
temperature), then a ``battery`` run by the scheduler on daily plans made at each local midnight
(:func:`~digitaltwin.optimization.whatif.simulate_battery`) from the forecasts that were available
then (:func:`~digitaltwin.services.scenario_inputs.backtest_forecast`) or, when asked, with perfect
foresight (labelled so in the answer). The battery plan's forecast of the added PV is the previous
day's modelled output (persistence). A ``tariff_id`` bills the scenario under another stored tariff.

Both are billed by the same engine (:func:`~digitaltwin.accounting.bill.compute_bills`), with the
same CO2 rules (:mod:`~digitaltwin.accounting.carbon`, the site's intensity), per billing period
and in total; the scenario's avoided CO2 counts only the export of the site's own generation (at
most the surplus of the net load before the battery, interval by interval), never the battery's
discharge into the grid. Billing periods are those of the site's tariff assignment in force at the start.
Where the changes leave an interval's net energy unchanged, its metered import and export are kept
as they are; elsewhere the new net energy is split into import (positive) and export (negative).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from digitaltwin.accounting.bill import Bill, MeterIntervals, compute_bills, round_money
from digitaltwin.accounting.carbon import interval_emissions
from digitaltwin.accounting.periods import billing_periods, local_midnight
from digitaltwin.accounting.tariff import Tariff
from digitaltwin.domain.errors import NotFoundError, ValidationError
from digitaltwin.domain.timestamps import zone
from digitaltwin.optimization.flexibility import Battery
from digitaltwin.optimization.pv_production import PVArray, ac_power_kw
from digitaltwin.optimization.whatif import LoadShift, shift_load, simulate_battery
from digitaltwin.services.billing import BillingService
from digitaltwin.services.carbon import site_intensity
from digitaltwin.services.scenario_inputs import as_utc_index, backtest_forecast, local_months, plan_prices, weather_on_grid
from digitaltwin.storage.tariffs import Assignment

#: Longest replay, in billing periods.
MAX_PERIODS = 13
#: Dates a replay may start on (meter data of a twin; far dates would overflow the calendar arithmetic).
EARLIEST, LATEST = date(1970, 1, 1), date(2200, 1, 1)
#: History read before the period for the forecasts (days).
FORECAST_HISTORY_DAYS = 56
#: Line-item kinds compared one by one; anything else (minimum, tax) is in ``other``.
ITEM_KINDS = ("energy", "demand", "fixed", "export_credit")
#: The default forecaster of the battery's plans: the daily seasonal naive, fast over a year (LightGBM
#: with weekly refits takes about a minute for a year of 15-minute data).
DEFAULT_ALGORITHM = "seasonal_naive_daily"


@dataclass(frozen=True, slots=True)
class PVChange:
    """An added PV array and the weather asset that gives its irradiance and temperature."""

    kwp: float
    tilt_deg: float
    azimuth_deg: float
    weather_asset_id: str
    latitude: float | None = None
    longitude: float | None = None
    losses: float = 0.14
    dc_ac_ratio: float = 1.1


@dataclass(frozen=True, slots=True)
class BatteryChange:
    """An added battery and how its plans are made."""

    battery: Battery
    perfect_foresight: bool = False
    forecast_algorithm: str = DEFAULT_ALGORITHM
    mode: str = "robust"
    quantile: float = 0.9
    guard: bool = True  # a local controller holds the planned peak and refuses unplanned export (whatif.follow_plan)


@dataclass(frozen=True, slots=True)
class ScenarioRequest:
    """A replay of the billing periods overlapping the local days ``start`` to ``end`` (exclusive)."""

    start: date
    end: date
    shift: LoadShift | None = None
    pv: PVChange | None = None
    battery: BatteryChange | None = None
    tariff_id: str | None = None


@dataclass(frozen=True)
class Side:
    """One side (baseline or scenario) of one billing period."""

    bill: Bill
    co2_kg: float | None
    avoided_co2_kg: float | None
    peak_kw: float | None
    import_kwh: float
    export_kwh: float

    def amounts(self) -> dict[str, float]:
        """Bill amount by line-item kind (``other`` for minimum and taxes) and ``total``."""
        out = {k: 0.0 for k in (*ITEM_KINDS, "other")}
        for item in self.bill.line_items:
            out[item.kind if item.kind in ITEM_KINDS else "other"] += item.amount
        out["total"] = self.bill.total
        return out


@dataclass(frozen=True)
class ScenarioResult:
    """Baseline and scenario per billing period, with what the replay assumed."""

    site_id: str
    currency: str
    timezone: str
    baseline_tariff_id: str
    scenario_tariff_id: str
    periods: list[tuple[Side, Side]]
    interval_s: int
    co2_source: str | None
    assumptions: list[str] = field(default_factory=list)
    battery: dict[str, Any] | None = None
    pv_kwh: float | None = None


class ScenarioService:
    """Runs scenarios on stored meter data (see the module docstring)."""

    def __init__(self, billing: BillingService) -> None:
        self.billing = billing
        self.repo = billing.repo

    def _assignment(self, site_id: str, at: date) -> Assignment:
        assignments = [a for a in self.billing.store.assignments(site_id=site_id)
                       if a.valid_from <= at and (a.valid_to is None or at < a.valid_to)]
        if not assignments:
            raise NotFoundError(f"site {site_id!r} has no tariff assignment in force on {at}", field="tariff")
        return assignments[0]

    def run(self, site_id: str, request: ScenarioRequest, *, now: datetime | None = None) -> ScenarioResult:
        """Replay ``request`` on ``site_id``.

        Raises:
            NotFoundError: unknown site, tariff or weather asset; no top-level meter; no tariff assignment.
            ValidationError: naming the field (``end``, ``pv.latitude``, ``battery.*``, ``battery.forecast_algorithm`` ...).
        """
        site = self.repo.get_site(site_id)
        tz = zone(site.timezone)
        if not EARLIEST <= request.start < LATEST:
            raise ValidationError(f"start must be between {EARLIEST} and {LATEST}", field="start")
        if request.end <= request.start:
            raise ValidationError("end must be after start", field="end")
        if (request.end - request.start).days > 31 * MAX_PERIODS:
            raise ValidationError(f"at most {MAX_PERIODS} billing periods per scenario", field="end")
        assignment = self._assignment(site_id, request.start)
        base_tariff = self.billing.tariff(assignment.tariff_id).tariff
        scen_tariff_id = request.tariff_id or assignment.tariff_id
        scen_tariff = self.billing.tariff(scen_tariff_id).tariff if request.tariff_id else base_tariff
        if scen_tariff.currency != base_tariff.currency:
            raise ValidationError(f"tariff {scen_tariff_id!r} bills in {scen_tariff.currency}, the site's in {base_tariff.currency}",
                                  field="tariff_id")
        periods = billing_periods(local_midnight(request.start, tz), local_midnight(request.end, tz), tz, bill_day=assignment.bill_day)
        if len(periods) > MAX_PERIODS:
            raise ValidationError(f"at most {MAX_PERIODS} billing periods per scenario", field="end")
        if now is not None and periods[-1].end > now:
            raise ValidationError("the replayed periods must have ended", field="end")
        meters = self.billing.site_meters(site_id)  # the meters the site's bill sums, combined as for the bill
        if not meters:
            raise NotFoundError(f"site {site_id!r} has no top-level meter", field="site_id")
        lookbacks = [self.billing._lookback(t, periods[0], tz, assignment) for t in (base_tariff, scen_tariff)]
        first = min([periods[0].start] + [lb[0].start for lb in lookbacks if lb])
        history_start = min(first, periods[0].start - timedelta(days=FORECAST_HISTORY_DAYS))
        meter = self.billing.meter(meters, history_start, periods[-1].end, tz, base_tariff, now)
        scen_meter = meter
        if request.tariff_id and scen_tariff.price_asset_id != base_tariff.price_asset_id:
            scen_meter = self.billing.meter(meters, history_start, periods[-1].end, tz, scen_tariff, now)
        step_s = meter.interval_s
        dt_h = step_s / 3600.0
        starts = as_utc_index(meter.start_s)
        in_period = np.asarray(starts >= periods[0].start) & np.asarray(starts < periods[-1].end)
        net_kw = pd.Series((meter.import_kwh - np.nan_to_num(meter.export_kwh)) / dt_h, index=starts)
        assumptions: list[str] = []
        changed = net_kw.copy()
        if request.shift is not None:
            shifted = shift_load(changed[in_period], request.shift, timezone=site.timezone, step_s=step_s)
            changed[in_period] = shifted.to_numpy()
            sh = request.shift
            assumptions.append(f"up to {sh.energy_kwh_per_day:g} kWh a day moved from {sh.from_start:%H:%M}-{sh.from_end:%H:%M} "
                               f"to {sh.to_start:%H:%M}-{sh.to_end:%H:%M} local time")
        pv_kw = None
        if request.pv is not None:
            raw_pv = self._pv(site, request.pv, starts, step_s)
            no_weather = int((~np.isfinite(raw_pv) & in_period).sum())
            pv_kw = np.nan_to_num(raw_pv)
            changed = changed - np.where(in_period, pv_kw, 0.0)
            assumptions.append("added PV from pvlib's PVWatts chain with the weather asset's GHI and air temperature")
            if no_weather:
                assumptions.append(f"{no_weather} intervals of the period have no weather: the added PV produces nothing in them")
        battery_info = None
        before_battery = changed
        if request.battery is not None:
            changed, battery_info = self._battery(site, request.battery, request.shift, changed, pv_kw, in_period,
                                                  scen_tariff, scen_meter, step_s, periods[0].first_day, periods[-1].last_day)
            assumptions.append(battery_info["label"])
            if battery_info["days_without_forecast"]:
                assumptions.append(f"{battery_info['days_without_forecast']} days had too little history for a forecast: "
                                   "planned from the previous day's load (persistence)")
        delta = (changed - net_kw).to_numpy()
        moved = np.isfinite(delta) & (np.abs(delta) > 1e-9)
        new_net_kwh = changed.to_numpy() * dt_h
        scen_import = np.where(moved, np.clip(new_net_kwh, 0.0, None), meter.import_kwh)
        scen_export = np.where(moved, np.clip(-new_net_kwh, 0.0, None), meter.export_kwh)
        # Avoided CO2 is credited only for what the site's own generation exports: the metered export, or the
        # surplus of the net load after the shift and the added PV. The battery's discharge into the grid is
        # not credited: its energy may have been bought from the grid, and a round trip avoids nothing.
        own = before_battery.to_numpy() - net_kw.to_numpy()
        own_kwh = np.where(np.isfinite(own) & (np.abs(own) > 1e-9), np.clip(-before_battery.to_numpy() * dt_h, 0.0, None),
                           np.nan_to_num(meter.export_kwh))
        credited_export = np.where(np.isnan(scen_export), scen_export, np.minimum(scen_export, own_kwh))
        baseline_meter = meter
        scenario_meter = MeterIntervals(meter.start_s, scen_import, scen_export, step_s, scen_meter.price_per_kwh,
                                        meter.meters, meter.present)  # the same meters' data: the same completeness
        base_bills = compute_bills(base_tariff, baseline_meter, lookbacks[0] + periods, tz)[len(lookbacks[0]):]
        scen_bills = compute_bills(scen_tariff, scenario_meter, lookbacks[1] + periods, tz)[len(lookbacks[1]):]
        intensity = site_intensity(self.repo, site, start=periods[0].start, end=periods[-1].end)
        g_per_kwh = intensity.at(meter.start_s.astype(float) + step_s / 2) if intensity is not None else None
        out = []
        for period, bb, sb in zip(periods, base_bills, scen_bills, strict=True):
            a, b = baseline_meter.bounds(period.start, period.end)
            out.append((self._side(bb, baseline_meter, a, b, g_per_kwh),
                        self._side(sb, scenario_meter, a, b, g_per_kwh, credited_export=credited_export)))
        if request.tariff_id:
            assumptions.append(f"scenario billed under tariff {scen_tariff_id!r}, the baseline under {assignment.tariff_id!r}")
        return ScenarioResult(
            site_id=site_id, currency=base_tariff.currency, timezone=site.timezone, baseline_tariff_id=assignment.tariff_id,
            scenario_tariff_id=scen_tariff_id, periods=out, interval_s=step_s,
            co2_source=intensity.source if intensity is not None else None, assumptions=assumptions, battery=battery_info,
            pv_kwh=float(np.nansum(pv_kw[in_period]) * dt_h) if pv_kw is not None else None,
        )

    @staticmethod
    def _side(bill: Bill, meter: MeterIntervals, a: int, b: int, g_per_kwh: np.ndarray | None, *,
              credited_export: np.ndarray | None = None) -> Side:
        """One side of billing period ``[a, b)``; avoided CO2 counts ``credited_export`` (kWh per interval)
        where given, else every exported kWh."""
        imp, exp = meter.import_kwh[a:b], np.nan_to_num(meter.export_kwh[a:b])
        credited = exp if credited_export is None else np.nan_to_num(credited_export[a:b])
        co2 = avoided = None
        if g_per_kwh is not None:
            c, v = interval_emissions(np.nan_to_num(imp), credited, g_per_kwh[a:b])
            co2, avoided = float(np.nansum(c)), float(np.nansum(v))
        kw = imp / (meter.interval_s / 3600.0)
        peak = float(np.nanmax(kw)) if np.isfinite(kw).any() else None
        return Side(bill, co2, avoided, peak, float(np.nansum(imp)), float(np.nansum(exp)))

    def _pv(self, site: Any, change: PVChange, starts: pd.DatetimeIndex, step_s: int) -> np.ndarray:
        lat = change.latitude if change.latitude is not None else site.attributes.get("latitude")
        lon = change.longitude if change.longitude is not None else site.attributes.get("longitude")
        if lat is None:
            raise ValidationError("give pv.latitude or set the site's latitude attribute", field="pv.latitude")
        if lon is None:
            raise ValidationError("give pv.longitude or set the site's longitude attribute", field="pv.longitude")
        array = PVArray(change.kwp, change.tilt_deg, change.azimuth_deg, float(lat), float(lon), change.losses, change.dc_ac_ratio)
        ghi, temp = weather_on_grid(self.repo, change.weather_asset_id, starts, step_s)
        return ac_power_kw(array, starts, step_s=step_s, ghi_w_m2=ghi, temp_air_c=temp)

    def _battery(
        self, site: Any, change: BatteryChange, shift: LoadShift | None, load_kw: pd.Series, pv_kw: np.ndarray | None,
        in_period: np.ndarray, tariff: Tariff, meter: MeterIntervals, step_s: int, first_day: date, last_day: date,
    ) -> tuple[pd.Series, dict[str, Any]]:
        tz = zone(site.timezone)
        prices = plan_prices(tariff, meter.start_s, step_s, tz, meter.price_per_kwh)
        index = load_kw.index
        forecast = None
        missing = 0
        if not change.perfect_foresight:
            # The forecaster sees the metered load (what existed then); the shift is applied to its forecast
            # and the added PV is forecast as the previous day's modelled output.
            base = pd.Series((meter.import_kwh - np.nan_to_num(meter.export_kwh)) / (step_s / 3600.0), index=index)
            fc = backtest_forecast(base, algorithm=change.forecast_algorithm, timezone=site.timezone, country=site.country,
                                   first_day=first_day, last_day=last_day, quantile=change.quantile)
            missing = fc.days_without_forecast
            expected, upper = fc.expected, fc.upper
            pv_series = pd.Series(pv_kw if pv_kw is not None else np.zeros(len(index)), index=index)
            pv_forecast = pv_series.shift(86400 // step_s).fillna(0.0)

            def forecast(day_start: pd.Timestamp, n: int) -> tuple[np.ndarray, np.ndarray | None]:
                i = index.get_loc(day_start)
                sl = slice(i, i + n)
                exp = expected.iloc[sl]
                up = upper.iloc[sl].to_numpy()
                if shift is not None:
                    shifted = shift_load(exp.fillna(0.0), shift, timezone=site.timezone, step_s=step_s)
                    up = up + (shifted.to_numpy() - exp.fillna(0.0).to_numpy())
                    exp = shifted
                e = exp.to_numpy() - pv_forecast.iloc[sl].to_numpy()
                u = up - pv_forecast.iloc[sl].to_numpy()
                u = np.where(np.isfinite(u), np.maximum(u, e), e)
                return np.nan_to_num(e), (u if np.isfinite(up).any() else None)

        months = local_months(meter.start_s, tz)
        net = load_kw.copy()
        soc = change.battery.soc_initial
        plans = 0
        cycles_kwh = 0.0
        for key in np.unique(months[in_period]).tolist():
            rows = in_period & (months == key)
            bat = Battery(**{**_battery_fields(change.battery), "soc_initial": soc})
            run = simulate_battery(
                load_kw[rows], bat, step_s=step_s, timezone=site.timezone,
                import_price=pd.Series(prices.import_price[rows], index=index[rows]),
                export_price=pd.Series(prices.export_price[rows], index=index[rows]),
                demand_rate_per_kw=prices.demand_rate_by_month[int(key)], forecast=forecast, mode=change.mode,
                guard=change.guard,
            )
            net[rows] = run.net_kw.to_numpy()
            soc = min(max(float(run.soc.iloc[-1]), change.battery.soc_min), change.battery.soc_max)  # float dust
            plans += run.plans
            cycles_kwh += float(np.nansum(np.abs(run.net_kw.to_numpy() - load_kw[rows].to_numpy()))) * step_s / 3600.0
        label = ("battery planned with PERFECT FORESIGHT of the actual load (an upper bound, not achievable)"
                 if change.perfect_foresight else
                 f"battery planned daily at local midnight from {change.forecast_algorithm} forecasts trained only on earlier data"
                 f" ({change.mode}{', P' + format(change.quantile * 100, 'g') + ' peak' if change.mode == 'robust' else ''})")
        info = {"perfect_foresight": change.perfect_foresight, "label": label, "plans": plans,
                "forecast_algorithm": None if change.perfect_foresight else change.forecast_algorithm,
                "mode": change.mode, "quantile": change.quantile, "days_without_forecast": missing,
                "throughput_kwh": cycles_kwh, "final_soc": soc,
                "demand_rate_per_kw": {f"{k // 12}-{k % 12 + 1:02d}": v for k, v in prices.demand_rate_by_month.items()
                                       if (months[in_period] == k).any()}}
        return net, info


def _battery_fields(b: Battery) -> dict[str, Any]:
    return {name: getattr(b, name) for name in Battery.__slots__}



def _rounded(amounts: dict[str, float], currency: str) -> dict[str, float]:
    return {k: round_money(v, currency) for k, v in amounts.items()}


def _side_dict(sides: list[Side], currency: str) -> dict[str, Any]:
    amounts = {k: sum(s.amounts()[k] for s in sides) for k in (*ITEM_KINDS, "other", "total")}
    co2 = [s.co2_kg for s in sides]
    avoided = [s.avoided_co2_kg for s in sides]
    peaks = [s.peak_kw for s in sides if s.peak_kw is not None]
    return {
        "bill": _rounded(amounts, currency), "_amounts": amounts,
        "import_kwh": sum(s.import_kwh for s in sides), "export_kwh": sum(s.export_kwh for s in sides),
        "co2_kg": None if any(c is None for c in co2) else float(sum(co2)),  # type: ignore[arg-type]
        "avoided_co2_kg": None if any(a is None for a in avoided) else float(sum(avoided)),  # type: ignore[arg-type]
        "peak_kw": max(peaks) if peaks else None, "complete": all(s.bill.complete for s in sides),
    }


def _comparison(base: list[Side], scen: list[Side], currency: str) -> dict[str, Any]:
    b, s = _side_dict(base, currency), _side_dict(scen, currency)
    savings = {k: b["_amounts"][k] - s["_amounts"][k] for k in b["_amounts"]}
    del b["_amounts"], s["_amounts"]
    return {
        "baseline": b, "scenario": s, "savings": _rounded(savings, currency),
        "co2_avoided_kg": None if b["co2_kg"] is None or s["co2_kg"] is None else b["co2_kg"] - s["co2_kg"],
        "peak_reduction_kw": None if b["peak_kw"] is None or s["peak_kw"] is None else b["peak_kw"] - s["peak_kw"],
    }


def summary(result: ScenarioResult) -> dict[str, Any]:
    """``result`` as the API answers it: per billing period and in total, baseline, scenario and savings
    (baseline minus scenario) by line-item kind, amounts rounded to the currency's minor unit."""
    cur = result.currency
    periods = []
    for base, scen in result.periods:
        p = base.bill.period
        periods.append({"start": p.start, "end": p.end, "first_day": p.first_day, "last_day": p.last_day,
                        **_comparison([base], [scen], cur)})
    return {
        "site_id": result.site_id, "currency": cur, "timezone": result.timezone,
        "baseline_tariff_id": result.baseline_tariff_id, "scenario_tariff_id": result.scenario_tariff_id,
        "interval_seconds": result.interval_s,
        "perfect_foresight": bool(result.battery and result.battery["perfect_foresight"]),
        "co2_source": result.co2_source, "assumptions": result.assumptions, "battery": result.battery,
        "pv_kwh": result.pv_kwh, "periods": periods,
        "total": _comparison([b for b, _ in result.periods], [s for _, s in result.periods], cur),
    }
