"""NREL SAM's Utilityrate5 as the reference bill calculator, and the real loads it is fed.

SAM's own URDB converter (``PySAM.UtilityRateTools.URDBv8_to_ElectricityRates``) is not
used: it mutates its input, aliases ratchet months, ignores ``fixedmonthlycharge`` and
coincident demand (see ../shared/data/tariffs_urdb/SOURCE.md). :func:`sam_rates` maps a
URDB record to SAM's inputs field by field instead, without those faults.

Calendar alignment: SAM takes 8760 x N values of a non-leap year starting 1 January 00:00,
has no DST and treats 1 January as a Monday. The loads are therefore placed on a year
that starts on a Monday (2018) in the site's local *standard* time: the steel plant is in
Asia/Seoul (no DST since 1988) in 2018 already; the Cambridge buildings' 2019 hours are
UTC, which is UK standard time, and are stamped on the same month, day and hour of 2018
(zone Etc/GMT), so both calculators see the same weekdays, months and hours.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from digitaltwin.demo_data import STEEL_CSV

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
TARIFF_DIR = REPO / "datasets" / "tariffs_urdb"  # copies of ../shared/data/tariffs_urdb (BSD-3, see NOTICE)
VALID_TARIFFS = (
    "pge_E19_5cef0a415457a33576f60fe2.json",
    "sce_GS2-TOU-B_55fc81d7682bea28da64f9ae.json",
    "psco_RD_5a679442682bea21e990a0d4.json",
    "industrial_539f6a23ec4f024411ec8beb.json",
)
INVALID_TARIFF = "seward_D28_539fb6c7ec4f024bc1dc0445.json"
PV_CSV = SHARED / "pv_nrel_serf_east" / "serf_east_15min_ac_power.csv"
YEAR_START = datetime(2018, 1, 1, tzinfo=UTC)  # a Monday, like SAM's calendar
_UNIT_CODES = {"kwh": 0, "kwh/kw": 1, "kwh daily": 2, "kwh/kw daily": 3}


def load_tariff(name: str) -> dict[str, Any]:
    return json.loads((TARIFF_DIR / name).read_text())


def steel_kw() -> tuple[np.ndarray, int, str]:
    """The steel plant's 2018 (35,040 x 15 min, Asia/Seoul, labels at interval end) as mean kW per interval."""
    path = STEEL_CSV
    with path.open(encoding="utf-8-sig") as fh:
        kwh = np.array([float(row["Usage_kWh"]) for row in csv.DictReader(fh)])
    assert kwh.size == 35040
    return kwh * 4.0, 900, "Asia/Seoul"


def cambridge_kw(building: str = "UCam_Building_b105") -> tuple[np.ndarray, int, str]:
    """One Cambridge building's 2019 hours (UTC = UK standard time) as mean kW, for the 2018 calendar."""
    path = REPO / "datasets" / "cambridge_estates_2019" / building / "electricity" / "2019.csv"
    with path.open() as fh:
        kwh = np.array([float(row["equipment load [kWh]"]) for row in csv.DictReader(fh)])
    assert kwh.size == 8760
    return kwh, 3600, "Etc/GMT"


def pv_kw(steps_per_hour: int, peak_kw: float) -> np.ndarray | None:
    """A PV export profile: NREL SERF East's measured AC power (1 Jul .. 13 Oct, 15 min, MST), zero
    elsewhere, night standby draw clipped to 0, scaled to ``peak_kw``, on the same month/day/time of
    the load year. None when ../shared is absent."""
    if not PV_CSV.is_file():
        return None
    watts = np.zeros(8760 * 4)
    with PV_CSV.open() as fh:
        for row in csv.DictReader(fh):
            stamp = datetime.fromisoformat(row["measured_on"])  # fixed -07:00
            local = stamp.replace(year=2018, tzinfo=UTC)  # its wall clock on the 2018 calendar
            watts[int((local - YEAR_START).total_seconds() // 900)] = max(float(row["ac_power"]), 0.0)
    profile = watts.reshape(-1, 4 // steps_per_hour).mean(axis=1) if steps_per_hour < 4 else watts
    return profile / profile.max() * peak_kw


def _schedule(rows: list[list[int]]) -> list[list[int]]:
    return [[v + 1 for v in row] for row in rows]  # SAM periods are 1-based; a copy, never the input


def _demand_rows(structure: list[list[dict[str, Any]]]) -> list[list[float]]:
    return [
        [p + 1, t + 1, tier.get("max", 1e38), tier.get("rate", 0.0) + tier.get("adj", 0.0)]
        for p, tiers in enumerate(structure) for t, tier in enumerate(tiers)
    ]


def sam_rates(record: dict[str, Any], *, monthly_fixed: float) -> dict[str, Any]:
    """SAM ElectricityRates inputs of a URDB record (see the module docstring)."""
    rates: dict[str, Any] = {"en_electricity_rates": 1, "ur_sell_eq_buy": 0, "ur_nm_yearend_sell_rate": 0,
                             "ur_nm_credit_month": 11, "ur_nm_credit_rollover": 0, "ur_en_ts_sell_rate": 0,
                             "ur_en_ts_buy_rate": 0, "ur_enable_billing_demand": 0,
                             "TOU_demand_single_peak": 0, "ur_nb_credit_expire": 0, "ur_nb_apply_credit_current_month": 0,
                             "rate_escalation": [0]}
    rates["ur_ec_tou_mat"] = [
        [p + 1, t + 1, tier.get("max", 1e38), _UNIT_CODES[tier.get("unit", "kWh").lower()],
         tier.get("rate", 0.0) + tier.get("adj", 0.0), tier.get("sell", 0.0)]
        for p, tiers in enumerate(record["energyratestructure"]) for t, tier in enumerate(tiers)
    ]
    rates["ur_ec_sched_weekday"] = _schedule(record["energyweekdayschedule"])
    rates["ur_ec_sched_weekend"] = _schedule(record["energyweekendschedule"])
    has_demand = "demandratestructure" in record or "flatdemandstructure" in record
    rates["ur_dc_enable"] = int(has_demand)
    if "demandratestructure" in record:
        rates["ur_dc_tou_mat"] = _demand_rows(record["demandratestructure"])
        rates["ur_dc_sched_weekday"] = _schedule(record["demandweekdayschedule"])
        rates["ur_dc_sched_weekend"] = _schedule(record["demandweekendschedule"])
    else:
        rates["ur_dc_tou_mat"] = [[1, 1, 1e38, 0.0]]
        rates["ur_dc_sched_weekday"] = rates["ur_dc_sched_weekend"] = [[1] * 24 for _ in range(12)]
    flat = record.get("flatdemandstructure")
    months = record.get("flatdemandmonths", [0] * 12)
    rates["ur_dc_flat_mat"] = (
        [[m, t + 1, tier.get("max", 1e38), tier.get("rate", 0.0) + tier.get("adj", 0.0)]
         for m in range(12) for t, tier in enumerate(flat[months[m]])]
        if flat else [[m, 1, 1e38, 0.0] for m in range(12)]
    )
    rates["ur_monthly_fixed_charge"] = monthly_fixed
    minimum, per = record.get("mincharge", 0.0), record.get("minchargeunits", "$/month")
    assert per in ("$/month", "$/year"), "SAM has no per-day minimum"
    rates["ur_monthly_min_charge"] = minimum if per == "$/month" else 0.0
    rates["ur_annual_min_charge"] = minimum if per == "$/year" else 0.0
    # Net metering -> 0 (monthly kWh rollover); no dgrules -> 2 (net billing) with sell rates of 0,
    # which is the product's "no export compensation" rule.
    rates["ur_metering_option"] = 0 if record.get("dgrules") == "Net Metering" else 2
    return rates


def fixed_charge_runs(record: dict[str, Any]) -> dict[int, float]:
    """SAM's one monthly fixed charge for each month length (days -> charge).

    SAM has a single ``ur_monthly_fixed_charge`` for all months, so a charge per day (PG&E's
    customer charge) is fed as days x rate, one SAM run per month length; every other input
    is the same in each run.
    """
    per_month = float(record.get("fixedmonthlycharge", 0.0))
    amount, units = record.get("fixedchargefirstmeter"), record.get("fixedchargeunits", "$/month")
    if amount is not None and units == "$/month":
        per_month += amount
    if amount is not None and units == "$/day":
        return {days: per_month + amount * days for days in (28, 30, 31)}
    return {0: per_month}


def sam_monthly_bills(record: dict[str, Any], load_kw: np.ndarray, gen_kw: np.ndarray | None) -> np.ndarray:
    """SAM's 12 monthly bills (with system) of ``load_kw`` and ``gen_kw`` (8760 x N steps)."""
    import PySAM.Utilityrate5 as Utilityrate5

    days = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
    bills = np.zeros(12)
    for month_days, fixed in fixed_charge_runs(record).items():
        model = Utilityrate5.new()
        model.ElectricityRates.assign(sam_rates(record, monthly_fixed=fixed))
        model.Lifetime.assign({"analysis_period": 1, "system_use_lifetime_output": 0, "inflation_rate": 0})
        model.SystemOutput.assign({"gen": (gen_kw if gen_kw is not None else np.zeros(load_kw.size)).tolist(), "degradation": [0]})
        model.Load.assign({"load": load_kw.tolist(), "load_escalation": [0]})
        model.execute(0)
        monthly = np.array(model.Outputs.utility_bill_w_sys_ym)[1]
        chosen = (days == month_days) if month_days else np.ones(12, dtype=bool)
        bills[chosen] = monthly[chosen]
    return bills


def product_monthly_bills(record: dict[str, Any], load_kw: np.ndarray, gen_kw: np.ndarray | None, step_s: int, tz_name: str) -> list[Any]:
    """The product's 12 monthly bills of the same load (import/export per interval from load - gen)."""
    from zoneinfo import ZoneInfo

    from digitaltwin.accounting.bill import MeterIntervals, compute_bills
    from digitaltwin.accounting.periods import billing_periods, local_midnight
    from digitaltwin.accounting.urdb import parse_urdb

    tz = ZoneInfo(tz_name)
    start = local_midnight(YEAR_START.date(), tz)
    net_kwh = (load_kw - (gen_kw if gen_kw is not None else 0.0)) * step_s / 3600.0
    starts = int(start.timestamp()) + step_s * np.arange(load_kw.size, dtype=np.int64)
    meter = MeterIntervals(starts, np.maximum(net_kwh, 0.0), np.maximum(-net_kwh, 0.0), step_s)
    end = local_midnight(YEAR_START.date().replace(year=2019), tz)
    return compute_bills(parse_urdb(record), meter, billing_periods(start, end, tz), tz)
