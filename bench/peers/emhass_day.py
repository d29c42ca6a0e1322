"""Solve one day with EMHASS (run inside the EMHASS virtual environment, not the product's).

Reads a JSON problem on stdin, prints a JSON answer on stdout: the day's cost in the
problem's currency (import cost minus export revenue, from EMHASS's own power columns),
its battery and grid powers, and the solve time. Used by bench/schedule_emhass.py; it
imports nothing of the product so that EMHASS's pins never meet ours.

Input keys: ``start`` (ISO, aware), ``step_minutes``, ``timezone``, ``load_kw``, ``pv_kw``,
``import_price``, ``export_price`` (per step), ``battery`` {``capacity_kwh``, ``power_kw``,
``charge_efficiency``, ``discharge_efficiency``, ``soc_min``, ``soc_max``, ``soc_initial``,
``soc_final``}.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pathlib
import sys
import time

import emhass
import numpy as np
import pandas as pd
from emhass.optimization import Optimization
from emhass.utils import build_config, build_params, build_secrets, get_yaml_parse


async def _configs(problem: dict, root: pathlib.Path, logger: logging.Logger) -> tuple[dict, dict, dict]:
    emhass_conf = {
        "data_path": pathlib.Path("/tmp"),
        "root_path": root,
        "defaults_path": root / "data" / "config_defaults.json",
        "associations_path": root / "data" / "associations.csv",
    }
    config = await build_config(emhass_conf, logger, str(emhass_conf["defaults_path"]))
    battery = problem["battery"]
    config.update({
        "optimization_time_step": problem["step_minutes"],
        "costfun": "profit",
        "set_use_battery": True,
        "set_use_pv": True,
        "number_of_deferrable_loads": 0,
        "nominal_power_of_deferrable_loads": [],
        "minimum_power_of_deferrable_loads": [],
        "operating_hours_of_each_deferrable_load": [],
        "start_timesteps_of_each_deferrable_load": [],
        "end_timesteps_of_each_deferrable_load": [],
        "treat_deferrable_load_as_semi_cont": [],
        "set_deferrable_load_single_constant": [],
        "set_deferrable_startup_penalty": [],
        "deferrable_load_max_cost": [],
        "set_deferrable_max_startups": [],
        "def_minimum_on_time": [],
        "def_minimum_off_time": [],
        "is_electric_load": [],
        "cost_forecast_per_deferrable_load": [],
        "set_nocharge_from_grid": False,
        "set_nodischarge_to_grid": False,
        "maximum_power_from_grid": 1e6,
        "maximum_power_to_grid": 1e6,
        "inverter_is_hybrid": False,
        "battery_nominal_energy_capacity": battery["capacity_kwh"] * 1000.0,
        "battery_charge_power_max": battery["power_kw"] * 1000.0,
        "battery_discharge_power_max": battery["power_kw"] * 1000.0,
        "battery_charge_efficiency": battery["charge_efficiency"],
        "battery_discharge_efficiency": battery["discharge_efficiency"],
        "battery_minimum_state_of_charge": battery["soc_min"],
        "battery_maximum_state_of_charge": battery["soc_max"],
        "battery_target_state_of_charge": battery["soc_final"],
        "lp_solver_mip_rel_gap": 1e-9,
        "weight_battery_discharge": 0.0,
        "weight_battery_charge": 0.0,
        "time_zone": problem["timezone"],
    })
    _, secrets = await build_secrets(emhass_conf, logger, no_response=True)
    secrets["time_zone"] = problem["timezone"]
    params = await build_params(emhass_conf, secrets, config, logger)
    return get_yaml_parse(params, logger)


def main() -> None:
    problem = json.load(sys.stdin)
    logger = logging.getLogger("emhass-peer")
    logger.setLevel(logging.ERROR)
    root = pathlib.Path(emhass.__file__).parent
    retrieve, optim, plant = asyncio.run(_configs(problem, root, logger))
    n = len(problem["load_kw"])
    index = pd.date_range(pd.Timestamp(problem["start"]), periods=n, freq=f"{problem['step_minutes']}min").tz_convert(
        problem["timezone"]
    )
    data = pd.DataFrame(
        {"unit_load_cost": problem["import_price"], "unit_prod_price": problem["export_price"]}, index=index
    )
    opt = Optimization(retrieve, optim, plant, "unit_load_cost", "unit_prod_price", "profit",
                       {"data_path": pathlib.Path("/tmp"), "root_path": root}, logger)
    p_pv = np.array(problem["pv_kw"]) * 1000.0
    p_load = np.array(problem["load_kw"]) * 1000.0
    began = time.perf_counter()
    result = opt.perform_optimization(
        data, p_pv, p_load, data["unit_load_cost"].to_numpy(), data["unit_prod_price"].to_numpy(),
        soc_init=problem["battery"]["soc_initial"], soc_final=problem["battery"]["soc_final"],
    )
    elapsed = time.perf_counter() - began
    dt = problem["step_minutes"] / 60.0
    grid = result["P_grid"].to_numpy() / 1000.0  # kW, positive import
    imp, exp = np.maximum(grid, 0.0), np.maximum(-grid, 0.0)
    cost = float(np.sum(imp * data["unit_load_cost"].to_numpy() - exp * data["unit_prod_price"].to_numpy()) * dt)
    json.dump({
        "cost": cost,
        "solve_time_s": elapsed,
        "status": str(getattr(opt, "optim_status", "")),
        "battery_kw": (result["P_batt"].to_numpy() / 1000.0).tolist(),
        "soc": result["SOC_opt"].to_numpy().tolist(),
        "grid_kw": grid.tolist(),
        "emhass_version": getattr(emhass, "__version__", "unknown"),
    }, sys.stdout)


if __name__ == "__main__":
    main()
