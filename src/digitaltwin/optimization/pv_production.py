"""AC output of a fixed PV array from global horizontal irradiance and air temperature, with pvlib.

The chain, each step a pvlib function:

1. solar position at each interval's midpoint (``solarposition.get_solarposition``);
2. GHI split into beam and diffuse with the Erbs model (``irradiance.erbs``), since weather
   stations and satellite feeds most often give GHI alone;
3. plane-of-array irradiance with the Hay-Davies sky model (``irradiance.get_total_irradiance``);
4. cell temperature with the Faiman model (``temperature.faiman``, its default coefficients
   for an open-rack module);
5. DC power with PVWatts (``pvsystem.pvwatts_dc``, temperature coefficient -0.37 %/K for
   crystalline silicon), less the PVWatts default system losses of 14 %;
6. AC power with the PVWatts inverter (``inverter.pvwatts``, 96 % nominal efficiency) sized at
   ``kwp / dc_ac_ratio``, which clips the DC peak above it.

Defaults follow NREL's PVWatts v5 manual (Dobos 2014, NREL/TP-6A20-62641).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from digitaltwin.domain.errors import ValidationError


@dataclass(frozen=True, slots=True)
class PVArray:
    """A fixed PV array.

    Attributes:
        kwp: DC nameplate (kW at standard test conditions, > 0).
        tilt_deg: tilt from horizontal (0-90).
        azimuth_deg: orientation clockwise from north (180 = south).
        latitude, longitude: location in degrees (WGS 84).
        losses: fraction of DC energy lost before the inverter (soiling, wiring, mismatch...).
        dc_ac_ratio: DC nameplate over the inverter's AC rating.
    """

    kwp: float
    tilt_deg: float
    azimuth_deg: float
    latitude: float
    longitude: float
    losses: float = 0.14
    dc_ac_ratio: float = 1.1

    def __post_init__(self) -> None:
        checks = [
            ("kwp", self.kwp, 0.0, 1e6, True), ("tilt_deg", self.tilt_deg, 0.0, 90.0, False),
            ("azimuth_deg", self.azimuth_deg, 0.0, 360.0, False), ("latitude", self.latitude, -90.0, 90.0, False),
            ("longitude", self.longitude, -180.0, 180.0, False), ("losses", self.losses, 0.0, 0.99, False),
            ("dc_ac_ratio", self.dc_ac_ratio, 0.5, 3.0, False),
        ]
        for name, value, low, high, strict in checks:
            if not isinstance(value, int | float) or not np.isfinite(value) or value < low or value > high or (strict and value <= low):
                raise ValidationError(f"must be a number in {'(' if strict else '['}{low:g}, {high:g}]", field=f"pv.{name}")


def ac_power_kw(array: PVArray, starts: pd.DatetimeIndex, *, step_s: int, ghi_w_m2: np.ndarray,
                temp_air_c: np.ndarray, wind_m_s: float = 1.0) -> np.ndarray:
    """Mean AC power (kW) over each interval ``[start, start + step)`` (see the module docstring).

    Args:
        starts: UTC interval starts, shape ``(n,)``.
        ghi_w_m2, temp_air_c: mean GHI (W/m2) and air temperature (degC) per interval, shape ``(n,)``;
            NaN gives NaN power.
        wind_m_s: wind speed for the cell temperature model.

    Returns:
        Array ``(n,)`` of kW, 0 at night.
    """
    import pvlib

    if starts.tz is None:
        raise ValidationError("interval starts must be timezone-aware", field="starts")
    mid = starts + pd.Timedelta(seconds=step_s / 2)
    ghi = pd.Series(np.asarray(ghi_w_m2, dtype=float), index=mid).clip(lower=0.0)
    temp = pd.Series(np.asarray(temp_air_c, dtype=float), index=mid)
    solar = pvlib.solarposition.get_solarposition(mid, array.latitude, array.longitude)
    parts = pvlib.irradiance.erbs(ghi, solar["zenith"], mid)
    dni_extra = pvlib.irradiance.get_extra_radiation(mid)
    poa = pvlib.irradiance.get_total_irradiance(
        array.tilt_deg, array.azimuth_deg, solar["apparent_zenith"], solar["azimuth"],
        parts["dni"], ghi, parts["dhi"], dni_extra=dni_extra, model="haydavies",
    )["poa_global"].fillna(0.0)
    cell = pvlib.temperature.faiman(poa, temp, wind_m_s)
    pdc0 = array.kwp * 1000.0
    dc = pvlib.pvsystem.pvwatts_dc(poa, cell, pdc0, gamma_pdc=-0.0037) * (1.0 - array.losses)
    ac_rating = pdc0 / array.dc_ac_ratio
    ac = pvlib.inverter.pvwatts(dc, ac_rating / 0.96, eta_inv_nom=0.96)
    out = np.clip(np.asarray(ac, dtype=float), 0.0, None) / 1000.0
    out[~np.isfinite(np.asarray(ghi_w_m2, dtype=float)) | ~np.isfinite(np.asarray(temp_air_c, dtype=float))] = np.nan
    return out
