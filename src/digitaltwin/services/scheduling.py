"""Schedules of a site's flexible assets: from forecasts, live state and prices to stored, published setpoints.

:meth:`SchedulingService.plan` gathers the inputs of one solve:

* the load: the day-ahead forecast of ``load_asset_id`` (kWh per interval, turned into mean kW),
  with its upper quantile in ``robust`` mode; the load asset is the site's grid connection
  meter (or its consumption without the flexible assets) and its ``grid_connection``
  attribute gives the import and export limits;
* PV: the forecast of ``pv_asset_id`` (production as positive energy), with its lower quantile;
* batteries: every battery of the site with ``attributes.battery``; the initial SOC is the
  latest ``state_of_charge`` reading (percent) when there is one, else the declared
  ``soc_initial`` (the answer says which);
* deferrable loads: every asset of the site with ``attributes.deferrable``, its local-time
  window placed at its next occurrence (the current one if the horizon starts inside it);
* prices per step and a demand charge on the billing period's (local calendar month's)
  peak, whose metered value so far is the sunk floor (see :mod:`..optimization.scheduler`).

It solves, stores the schedule as the site's next version and publishes each battery's
setpoints on MQTT. :meth:`SchedulingService.tracking` compares a stored plan with what
was metered since: SOC per battery, grid energy and its cost per step.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from digitaltwin.analytics.buckets import Bucket
from digitaltwin.config import Settings
from digitaltwin.domain.assets import Asset, Site
from digitaltwin.domain.errors import ValidationError
from digitaltwin.domain.timestamps import zone
from digitaltwin.optimization.flexibility import (
    BATTERY,
    DEFERRABLE,
    Battery,
    DeferrableLoad,
    battery_from_attributes,
    deferrable_from_attributes,
    grid_from_attributes,
    pv_curtailable,
)
from digitaltwin.optimization.scheduler import (
    DemandCharge,
    Schedule,
    ScheduleProblem,
    check_demand_rate,
    check_prices,
    solve,
)
from digitaltwin.services.billing import BillingService
from digitaltwin.services.energy import energy_report
from digitaltwin.services.forecasting import ForecastService
from digitaltwin.services.scenario_inputs import plan_prices
from digitaltwin.services.setpoints import publish_retained, setpoint_payload, setpoint_topic
from digitaltwin.storage.repository import Repository
from digitaltwin.storage.schedules import ScheduleRecord, ScheduleStore

log = logging.getLogger(__name__)

MODES = ("expected", "robust")
#: Longest schedule horizon: the scheduler plans day-ahead to two days.
MAX_HORIZON = timedelta(hours=48)
#: Buckets of the energy queries for the step lengths a plan can have.
_STEP_BUCKETS = {900: Bucket.QUARTER_HOUR, 3600: Bucket.HOUR}


@dataclass(frozen=True)
class PlanRequest:
    """What to plan. Prices in ``currency`` per kWh (a number for every step, or one per step);
    ``demand_charge_per_kw`` per kW of the billing period's peak (0: none). Without ``import_price``
    the prices, the demand rate and the currency are those of the site's tariff in force
    (:func:`digitaltwin.services.scenario_inputs.plan_prices`: each interval's first-tier energy
    price and export credit, the month's flat plus highest time-of-use demand rate); a price given
    in the request wins over the tariff's.

    Attributes:
        quantile: the upper load quantile of ``robust`` mode (the PV quantile is ``1 - quantile``).
        algorithm: the forecast model (``best``: the champion).
        replan: whether the re-planning loop solves this request again as data arrives.
    """

    load_asset_id: str
    import_price: float | list[float] | None = None
    export_price: float | list[float] | None = None
    pv_asset_id: str | None = None
    horizon: timedelta = timedelta(hours=24)
    mode: str = "robust"
    quantile: float = 0.9
    algorithm: str = "best"
    demand_charge_per_kw: float | None = None
    currency: str | None = None
    publish: bool = True
    replan: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "load_asset_id": self.load_asset_id, "import_price": self.import_price, "export_price": self.export_price,
            "pv_asset_id": self.pv_asset_id, "horizon_seconds": int(self.horizon.total_seconds()), "mode": self.mode,
            "quantile": self.quantile, "algorithm": self.algorithm, "demand_charge_per_kw": self.demand_charge_per_kw,
            "currency": self.currency, "publish": self.publish, "replan": self.replan,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PlanRequest:
        values = dict(data)
        values["horizon"] = timedelta(seconds=values.pop("horizon_seconds"))
        return cls(**values)


@dataclass
class _Inputs:
    start: datetime
    step_s: int
    load_kw: np.ndarray
    load_upper_kw: np.ndarray | None
    pv_kw: np.ndarray | None
    pv_lower_kw: np.ndarray | None
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Prices:
    import_price: np.ndarray
    export_price: np.ndarray
    demand_rate: float
    currency: str
    source: str


def _per_step(value: float | list[float], n: int, *, field: str) -> np.ndarray:
    """``value`` (one price or one per step) as an array ``(n,)``; ValidationError naming ``field``
    unless finite and within the scheduler's price bound (:func:`check_prices`)."""
    arr = np.full(n, float(value)) if isinstance(value, int | float) else np.asarray(value, dtype=float)
    if arr.shape != (n,):
        raise ValidationError(f"must be one number or {n} numbers (one per step of the horizon)", field=field)
    return check_prices(arr, field=field)


class SchedulingService:
    """Plans, stores, publishes and tracks schedules (see the module docstring)."""

    def __init__(self, settings: Settings, repo: Repository, forecasts: ForecastService, store: ScheduleStore) -> None:
        self.settings = settings
        self.repo = repo
        self.forecasts = forecasts
        self.store = store

    # -- planning ---------------------------------------------------------------------------------
    def plan(self, site_id: str, request: PlanRequest, *, by: str | None = None) -> ScheduleRecord:
        """Solve, store as the site's next version and publish (when asked) a schedule.

        Raises:
            NotFoundError: unknown site or asset, or no model to forecast with.
            ValidationError: a bad request field, asset attribute or forecast, naming it (prices beyond
                +-``MAX_PRICE_PER_KWH`` per kWh, a demand charge beyond ``MAX_DEMAND_RATE_PER_KW``).
            ScheduleInfeasibleError: no schedule satisfies the constraints (HTTP 422 naming the constraint).
            ScheduleTimeoutError: no schedule within the solver's time limit (HTTP 504).
            ScheduleSolverError: the solver failed otherwise (HTTP 503).
        """
        site = self.repo.get_site(site_id)
        self._check_request(site_id, request)
        inputs = self._forecast_inputs(request)
        n = inputs.load_kw.shape[0]
        assets = self.repo.list_assets(site_id=site_id)
        batteries = tuple(self._battery(a, inputs.notes) for a in assets if BATTERY in a.attributes)
        deferrables = tuple(
            d for a in assets if DEFERRABLE in a.attributes
            if (d := self._deferrable(a, inputs, site.timezone)) is not None
        )
        load_asset = self.repo.get_asset(request.load_asset_id, field="load_asset_id")
        prices = self._prices(site, request, inputs)
        demand: tuple[DemandCharge, ...] = ()
        if prices.demand_rate > 0:
            sunk = self._period_peak_kw(request.load_asset_id, inputs.start, site.timezone)
            inputs.notes["sunk_peak_kw"] = sunk
            demand = (DemandCharge("demand", np.ones(n, dtype=bool), prices.demand_rate, sunk),)
        pv_asset = self.repo.get_asset(request.pv_asset_id, field="pv_asset_id") if request.pv_asset_id else None
        problem = ScheduleProblem(
            start=inputs.start, step_s=inputs.step_s, load_kw=inputs.load_kw,
            import_price=prices.import_price, export_price=prices.export_price,
            pv_kw=inputs.pv_kw, load_upper_kw=inputs.load_upper_kw, pv_lower_kw=inputs.pv_lower_kw,
            pv_curtailable=pv_curtailable(pv_asset.attributes) if pv_asset else False,
            demand_charges=demand, batteries=batteries, deferrables=deferrables,
            grid=grid_from_attributes(load_asset.attributes), mode=request.mode,
            quantile_label=f"P{round(100 * request.quantile)} load" + (
                f", P{round(100 * (1 - request.quantile))} PV" if inputs.pv_kw is not None else ""),
        )
        schedule = solve(problem)
        record = self.store.add(
            site_id=site_id, created_by=by, start=inputs.start, step_seconds=inputs.step_s, steps=n,
            mode=request.mode, request=request.to_json(), plan=_plan_json(schedule, prices, inputs.notes),
        )
        if request.publish:
            self.publish(record)
            record = self.store.get(record.id)
        return record

    def publish(self, record: ScheduleRecord) -> dict[str, Any]:
        """Publish ``record``'s battery setpoints (retained, QoS 1) and record the outcome."""
        plan = record.plan
        messages = {
            setpoint_topic(self.settings, record.site_id, asset_id): setpoint_payload(
                schedule_id=record.id, version=record.version, step_seconds=record.step_seconds,
                timestamps=plan["timestamps"], power_kw=battery["setpoint_kw"], soc=battery["soc"],
            )
            for asset_id, battery in plan["batteries"].items()
        }
        published = publish_retained(self.settings, messages) | {"at": datetime.now(UTC).isoformat()}
        self.store.mark_published(record.id, published)
        return published

    def _check_request(self, site_id: str, request: PlanRequest) -> None:
        if request.mode not in MODES:
            raise ValidationError(f"must be one of {', '.join(MODES)}", field="mode")
        if not 0.5 < request.quantile < 1.0:
            raise ValidationError("must lie in (0.5, 1): the upper quantile planned for", field="quantile")
        if not timedelta(0) < request.horizon <= MAX_HORIZON:
            raise ValidationError(f"must be positive and at most {MAX_HORIZON.total_seconds() / 3600:g} hours", field="horizon")
        if request.demand_charge_per_kw is not None:
            check_demand_rate(request.demand_charge_per_kw, field="demand_charge_per_kw")
        for name in ("import_price", "export_price"):  # the lengths are checked once the horizon's steps are known
            if getattr(request, name) is not None:
                check_prices(np.asarray(getattr(request, name), dtype=float), field=name)
        for name in ("load_asset_id", "pv_asset_id"):
            asset_id = getattr(request, name)
            if asset_id is not None and self.repo.get_asset(asset_id, field=name).site_id != site_id:
                raise ValidationError(f"asset {asset_id!r} is not on site {site_id!r}", field=name)

    def _prices(self, site: Site, request: PlanRequest, inputs: _Inputs) -> _Prices:
        """The plan's prices: the request's, else the site's tariff in force at the horizon's start."""
        n = inputs.load_kw.shape[0]
        if request.import_price is not None:
            return _Prices(
                _per_step(request.import_price, n, field="import_price"),
                _per_step(request.export_price or 0.0, n, field="export_price"),
                request.demand_charge_per_kw or 0.0, request.currency or "EUR", "request",
            )
        billing = BillingService(self.repo, max_hold=self.settings.power_max_hold)
        tz = zone(site.timezone)
        day = inputs.start.astimezone(tz).date()
        assignment = next((a for a in billing.store.assignments(site_id=site.id)
                           if a.valid_from <= day and (a.valid_to is None or day < a.valid_to)), None)
        if assignment is None:
            raise ValidationError(
                f"site {site.id!r} has no tariff in force on {day}: assign one or give import_price", field="import_price")
        tariff = billing.tariff(assignment.tariff_id).tariff
        starts = int(inputs.start.timestamp()) + inputs.step_s * np.arange(n, dtype=np.int64)
        dynamic = billing.dynamic_prices(tariff, starts) if tariff.price_asset_id else None
        plan = plan_prices(tariff, starts, inputs.step_s, tz, dynamic)
        month = inputs.start.astimezone(tz)
        rate = plan.demand_rate_by_month.get(month.year * 12 + month.month - 1, 0.0)
        inputs.notes["prices"] = f"tariff {assignment.tariff_id} ({tariff.name})"
        return _Prices(
            plan.import_price,
            _per_step(request.export_price, n, field="export_price") if request.export_price is not None else plan.export_price,
            request.demand_charge_per_kw if request.demand_charge_per_kw is not None else rate,
            tariff.currency, f"tariff:{assignment.tariff_id}",
        )

    def _forecast_inputs(self, request: PlanRequest) -> _Inputs:
        q = request.quantile
        robust = request.mode == "robust"
        levels = (round(1 - q, 4), round(q, 4)) if robust else ()
        load = self.forecasts.forecast(request.load_asset_id, request.algorithm, horizon=request.horizon, quantiles=levels)
        step_s = int(load.step.total_seconds())
        step_h = step_s / 3600.0
        values = load.values
        start = values.index[0].to_pydatetime()
        load_kw = values.to_numpy(dtype=float) / step_h
        upper = load.forecast.quantiles[round(q, 4)].to_numpy(dtype=float) / step_h if robust else None
        pv_kw = pv_lower = None
        notes: dict[str, Any] = {"load_model": load.algorithm}
        if request.pv_asset_id:
            pv = self.forecasts.forecast(request.pv_asset_id, request.algorithm, horizon=request.horizon, quantiles=levels)
            if pv.step != load.step or not pv.values.index.equals(values.index):
                raise ValidationError("the PV forecast must share the load forecast's intervals", field="pv_asset_id")
            pv_kw = np.maximum(pv.values.to_numpy(dtype=float) / step_h, 0.0)
            if robust:
                pv_lower = np.maximum(pv.forecast.quantiles[round(1 - q, 4)].to_numpy(dtype=float) / step_h, 0.0)
            notes["pv_model"] = pv.algorithm
        for name, arr in (("load", load_kw), ("load upper quantile", upper), ("PV", pv_kw), ("PV lower quantile", pv_lower)):
            if arr is not None and not np.all(np.isfinite(arr)):
                raise ValidationError(f"the {name} forecast has missing values", field="load_asset_id" if "load" in name else "pv_asset_id")
        return _Inputs(start, step_s, load_kw, upper, pv_kw, pv_lower, notes)

    def _battery(self, asset: Asset, notes: dict[str, Any]) -> Battery:
        soc = None
        source = "declared soc_initial"
        for reading in self.repo.latest(asset.id):
            if reading.quantity == "state_of_charge":
                soc, source = reading.value / 100.0, f"state_of_charge reading at {reading.ts.isoformat()}"
        notes.setdefault("soc_source", {})[asset.id] = source
        return battery_from_attributes(asset.id, asset.attributes, soc_initial=soc)

    def _deferrable(self, asset: Asset, inputs: _Inputs, timezone: str) -> DeferrableLoad | None:
        """The load's next window as step indices of the horizon, or None when it does not start inside it."""
        spec = deferrable_from_attributes(asset.attributes)
        tz = zone(timezone)
        n, step = inputs.load_kw.shape[0], timedelta(seconds=inputs.step_s)
        start, end = inputs.start, inputs.start + n * step
        local_day = start.astimezone(tz).date() - timedelta(days=1)
        for offset in range(4):
            day = local_day + timedelta(days=offset)
            w_start = datetime.combine(day, spec.window_start, tzinfo=tz).astimezone(UTC)
            w_end_day = day if spec.window_end > spec.window_start else day + timedelta(days=1)
            w_end = datetime.combine(w_end_day, spec.window_end, tzinfo=tz).astimezone(UTC)
            if w_end <= start:
                continue
            if w_start >= end:
                break
            first = max(0, math.ceil((w_start - start) / step))
            last = min(n, math.floor((w_end - start) / step))
            if last <= first:
                continue
            inputs.notes.setdefault("deferrable_windows", {})[asset.id] = [
                (start + first * step).isoformat(), (start + last * step).isoformat()]
            return DeferrableLoad(asset.id, spec.energy_kwh, spec.max_power_kw, first, last,
                                  on_off=spec.on_off, contiguous=spec.contiguous)
        inputs.notes.setdefault("deferrable_skipped", []).append(asset.id)
        return None

    def _period_peak_kw(self, asset_id: str, until: datetime, timezone: str) -> float:
        """Highest metered mean power (kW) of ``asset_id`` in the local calendar month up to ``until``."""
        tz = zone(timezone)
        local = until.astimezone(tz)
        month_start = datetime(local.year, local.month, 1, tzinfo=tz).astimezone(UTC)
        if until <= month_start:
            return 0.0
        report = energy_report(self.repo, asset_id, start=month_start, end=until, bucket=Bucket.MONTH,
                               max_hold=self.settings.power_max_hold, now=until)
        peaks = [r.peak_power_kw for r in report.rows if r.peak_power_kw is not None]
        return max(peaks, default=0.0)

    # -- re-planning ------------------------------------------------------------------------------
    def replan_once(self) -> list[ScheduleRecord]:
        """Solve again every site whose schedule in force asked for re-planning and whose load
        meter has reported since that schedule's start (new data moves the forecast on).

        A site whose solve fails is logged and skipped; the others still run.

        Returns:
            The new schedule versions.
        """
        done: list[ScheduleRecord] = []
        for site_id in self.store.sites_with_schedules():
            record = self.store.latest(site_id)
            if record is None or not record.request.get("replan"):
                continue
            info = self.repo.find_series(record.request["load_asset_id"], "energy") or next(
                iter(self.repo.list_series(record.request["load_asset_id"])), None)
            extent = self.repo.series_extent(info.id) if info is not None else None
            if extent is None or extent[1] < record.start:
                continue
            try:
                done.append(self.plan(site_id, PlanRequest.from_json(record.request), by="replan"))
            except Exception:  # noqa: BLE001 - one site's failure never stops the others
                log.exception("re-planning site %s failed", site_id)
        return done

    def start_replanning(self, every_s: float) -> tuple[threading.Thread, threading.Event]:
        """Run :meth:`replan_once` every ``every_s`` seconds in a daemon thread; set the event to stop it."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(every_s):
                try:
                    self.replan_once()
                except Exception:  # noqa: BLE001 - the loop outlives a failing round (e.g. the database restarting)
                    log.exception("re-planning round failed")

        thread = threading.Thread(target=loop, name="schedule-replanner", daemon=True)
        thread.start()
        return thread, stop

    # -- tracking ---------------------------------------------------------------------------------
    def tracking(self, schedule_id: str, *, now: datetime | None = None) -> dict[str, Any]:
        """Planned against realised for the elapsed steps of a stored schedule.

        Returns:
            ``steps``: one row per elapsed step with ``ts``, ``planned_import_kwh``,
            ``realised_import_kwh``, ``planned_cost``, ``realised_cost`` (energy only, the plan's
            prices) and per battery ``planned_soc`` / ``realised_soc`` (fractions; None when no
            ``state_of_charge`` reading fell in the step); ``totals`` of cost and energy.
        """
        record = self.store.get(schedule_id)
        plan = record.plan
        now = now or datetime.now(UTC)
        step = timedelta(seconds=record.step_seconds)
        elapsed = max(0, min(record.steps, int((now - record.start) / step)))
        rows: list[dict[str, Any]] = []
        realised = self._realised_kwh(record, elapsed)
        soc = {a: self._realised_soc(a, record, elapsed) for a in plan["batteries"]}
        dt = record.step_seconds / 3600.0
        for i in range(elapsed):
            planned_kwh = plan["grid_import_kw"][i] * dt - plan["grid_export_kw"][i] * dt
            price = plan["import_price"][i] if realised[i] is None or realised[i] >= 0 else plan["export_price"][i]
            row = {
                "ts": plan["timestamps"][i],
                "planned_import_kwh": planned_kwh,
                "realised_import_kwh": realised[i],
                "planned_cost": plan["import_price"][i] * plan["grid_import_kw"][i] * dt
                - plan["export_price"][i] * plan["grid_export_kw"][i] * dt,
                "realised_cost": None if realised[i] is None else price * realised[i],
                "batteries": {a: {"planned_soc": plan["batteries"][a]["soc"][i], "realised_soc": soc[a][i]} for a in soc},
            }
            rows.append(row)
        known = [r for r in rows if r["realised_cost"] is not None]
        return {
            "schedule_id": record.id, "version": record.version, "elapsed_steps": elapsed, "steps": rows,
            "totals": {
                "planned_cost": sum(r["planned_cost"] for r in known),
                "realised_cost": sum(r["realised_cost"] for r in known),
                "steps_with_data": len(known),
                "currency": plan.get("currency"),
            },
        }

    def _realised_kwh(self, record: ScheduleRecord, elapsed: int) -> list[float | None]:
        if elapsed == 0:
            return []
        bucket = _STEP_BUCKETS.get(record.step_seconds)
        load_asset = record.request["load_asset_id"]
        end = record.start + elapsed * timedelta(seconds=record.step_seconds)
        if bucket is None:
            return [None] * elapsed
        report = energy_report(self.repo, load_asset, start=record.start, end=end, bucket=bucket,
                               max_hold=self.settings.power_max_hold, now=end)
        values = [r.energy_kwh for r in report.rows]
        return (values + [None] * elapsed)[:elapsed]

    def _realised_soc(self, asset_id: str, record: ScheduleRecord, elapsed: int) -> list[float | None]:
        """The last ``state_of_charge`` reading (fraction) inside each elapsed step, or None."""
        info = self.repo.find_series(asset_id, "state_of_charge")
        out: list[float | None] = [None] * elapsed
        if info is None or elapsed == 0:
            return out
        end = record.start + elapsed * timedelta(seconds=record.step_seconds)
        ts_s, values = self.repo.series_arrays(info.id, start=record.start, end=end)
        start_s = record.start.timestamp()
        for t, v in zip(ts_s.tolist(), values.tolist(), strict=True):
            i = int((t - start_s) // record.step_seconds)
            if 0 <= i < elapsed:
                out[i] = v / 100.0
        return out


def _round(values: np.ndarray) -> list[float]:
    return [round(float(v), 6) + 0.0 for v in values]


def _plan_json(schedule: Schedule, prices: _Prices, notes: dict[str, Any]) -> dict[str, Any]:
    """The stored plan: per-step arrays (kW, SOC fractions, prices), peaks, cost and how it was made."""
    p = schedule.problem
    return {
        "timestamps": [ts.isoformat().replace("+00:00", "Z") for ts in p.timestamps()],
        "load_kw": _round(p.load_kw),
        "load_upper_kw": _round(p.load_upper_kw) if p.load_upper_kw is not None else None,
        "pv_kw": _round(schedule.pv_used_kw),
        "grid_import_kw": _round(schedule.grid_import_kw),
        "grid_export_kw": _round(schedule.grid_export_kw),
        "import_price": _round(prices.import_price),
        "export_price": _round(prices.export_price),
        "prices": prices.source,
        "demand_rate_per_kw": prices.demand_rate,
        "batteries": {
            b.asset_id: {
                "setpoint_kw": _round(schedule.battery_setpoints_kw(b.asset_id)),
                "soc": _round(schedule.battery_soc[b.asset_id]),
                "soc_initial": b.soc_initial,
            }
            for b in p.batteries
        },
        "deferrables": {k: _round(v) for k, v in schedule.deferrable_kw.items()},
        "peaks_kw": schedule.peaks_kw,
        "cost": {k: round(v, 6) for k, v in schedule.cost.items()},
        "currency": prices.currency,
        "mode": p.mode,
        "risk": schedule.risk,
        "solve_time_ms": round(1000 * schedule.solve_time_s, 3),
        "solver": schedule.solver,
        "inputs": notes,
    }
