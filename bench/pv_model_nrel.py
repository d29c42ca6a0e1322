"""The product's PV model (pvlib PVWatts chain) against the measured AC output of NREL's SERF East array.

Data (read from ../shared/data/pv_nrel_serf_east, not copied): 15-minute AC power of a fixed array
(latitude 39.742, longitude -105.1727, tilt 45 deg, azimuth 158 deg) and NSRDB PSM3 GHI and air
temperature on the same timestamps, 2016-07-01 to 2016-10-13 (labels at fixed UTC-07:00, taken as
interval starts). The array's DC nameplate is not published with the data: it is fitted once, by
least squares through the origin, on the first 14 days, and the model is scored on the rest.

Prints hourly and daily CV(RMSE) and NMBE of the modelled AC energy on the scored days
(ASHRAE Guideline 14's calibration limits for hourly data are 30 % and 10 %), the same on
clear-sky days (where the satellite irradiance is reliable, so the model chain is what is
measured), and R2 of the daytime 15-minute power.

Run: ``python bench/pv_model_nrel.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from digitaltwin.forecasting.metrics import cv_rmse, nmbe
from digitaltwin.optimization.pv_production import PVArray, ac_power_kw

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pv_nrel_serf_east"


def main() -> None:
    if not DATA.exists():
        sys.exit(f"needs {DATA} (the shared NREL PV data beside the repository)")
    power = pd.read_csv(DATA / "serf_east_15min_ac_power.csv", index_col="measured_on")
    weather = pd.read_csv(DATA / "serf_east_psm3_data.csv", index_col="measured_on")
    index = pd.DatetimeIndex(pd.to_datetime(power.index, utc=True))
    measured = np.clip(power["ac_power"].to_numpy(dtype=float), 0.0, None) / 1000.0  # kW
    unit = PVArray(kwp=1.0, tilt_deg=45.0, azimuth_deg=158.0, latitude=39.742, longitude=-105.1727)
    model = ac_power_kw(unit, index, step_s=900, ghi_w_m2=weather["ghi"].to_numpy(), temp_air_c=weather["temp_air"].to_numpy())
    fit = index < index[0] + pd.Timedelta(days=14)
    kwp = float(np.sum(model[fit] * measured[fit]) / np.sum(model[fit] ** 2))
    modelled = pd.Series(model * kwp, index=index)
    actual = pd.Series(measured, index=index)
    test = ~fit
    hourly_a = actual[test].resample("1h").sum() / 4
    hourly_m = modelled[test].resample("1h").sum() / 4
    daily_a = actual[test].resample("1D").sum() / 4
    daily_m = modelled[test].resample("1D").sum() / 4
    day = actual[test] > 0.05
    ss_res = float(np.sum((actual[test][day] - modelled[test][day]) ** 2))
    ss_tot = float(np.sum((actual[test][day] - actual[test][day].mean()) ** 2))
    print(f"fitted DC nameplate {kwp:.2f} kWp (first 14 days); scored {int(test.sum()) // 96} days")
    print(f"hourly energy  CV(RMSE) {100 * cv_rmse(hourly_a.to_numpy(), hourly_m.to_numpy()):.1f} %  "
          f"NMBE {100 * nmbe(hourly_a.to_numpy(), hourly_m.to_numpy()):+.1f} %  (ASHRAE 14 hourly: 30 / 10)")
    print(f"daily energy   CV(RMSE) {100 * cv_rmse(daily_a.to_numpy(), daily_m.to_numpy()):.1f} %  "
          f"NMBE {100 * nmbe(daily_a.to_numpy(), daily_m.to_numpy()):+.1f} %")
    ghi = pd.Series(weather["ghi"].to_numpy(dtype=float), index=index)[test]
    clear = pd.Series(weather["ghi_clear"].to_numpy(dtype=float), index=index)[test]
    ratio = ghi.resample("1D").sum() / clear.resample("1D").sum()
    clear_days = ratio[ratio > 0.95].index
    hour_day = hourly_a.index.floor("1D")
    keep = hour_day.isin(clear_days)
    print(f"clear-sky days ({len(clear_days)}, daily GHI > 95 % of clear sky): hourly CV(RMSE) "
          f"{100 * cv_rmse(hourly_a[keep].to_numpy(), hourly_m[keep].to_numpy()):.1f} %  "
          f"NMBE {100 * nmbe(hourly_a[keep].to_numpy(), hourly_m[keep].to_numpy()):+.1f} % "
          "(the model chain alone; cloudy hours add the satellite irradiance's own error)")
    print(f"daytime 15-min power R2 {1 - ss_res / ss_tot:.3f}; total measured {actual[test].sum() / 4:,.0f} kWh, "
          f"modelled {modelled[test].sum() / 4:,.0f} kWh")


if __name__ == "__main__":
    main()
