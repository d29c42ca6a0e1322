"""The demo's tariff: KEPCO Industrial Service (B), high voltage A, option II, time of use (native form).

Why this tariff: the demo plant is a steel works in Gwangyang, Korea, metered at 15 minutes in
2018; Korea Electric Power Corporation (KEPCO), the sole supplier, bills such plants under
"Industrial (B)" (산업용(을)), a three-band time-of-use energy charge plus a basic (demand) charge
on a 12-month ratcheted peak. A URDB tariff (all US utilities) would bill a Korean plant on a
foreign calendar and currency.

Source: KEPCO electric rates table, Industrial Service (B), High Voltage A, Option II, the
rates in force from 2013-11-21 through 2018 (KEPCO "Electric Rates Table", home.kepco.co.kr,
Customer Service > Electric Rates): basic charge 8,320 KRW/kW per month; energy in KRW/kWh
(light / mid / peak load) summer (Jun-Aug) 56.1 / 109.0 / 191.1, spring and autumn (Mar-May,
Sep-Oct) 56.1 / 78.6 / 109.3, winter (Nov-Feb) 63.1 / 109.0 / 166.7. Load bands: light
23:00-09:00; summer, spring and autumn peak 10-12 and 13-17, mid 09-10, 12-13 and 17-23;
winter peak 10-12, 17-20 and 22-23, mid 09-10, 12-17 and 20-22. The basic charge applies to
the highest 15-minute demand of the month and of December, January, February, July, August and
September of the preceding 11 months. VAT 10 %; Electric Power Industry Basis Fund 3.7 % (the
2018 rate), both on the electricity charge. The figures were taken from KEPCO's published
table as recalled for this demo; check them against the current table before any real use.

Simplifications, stated: the product's schedules have one weekend schedule, so Saturdays and
Sundays both bill peak hours at the mid-load price (KEPCO's Saturday rule; KEPCO bills Sundays
and public holidays all at light load, so Sunday energy is over-stated a little); the floor of
the billing demand at 30 % of contract demand is not modelled (no contract demand is known).
"""

from __future__ import annotations

from typing import Any

#: (months, light, mid, peak KRW/kWh, peak hours, mid hours)
_SEASONS = (
    ([6, 7, 8], 56.1, 109.0, 191.1, ((10, 12), (13, 17)), ((9, 10), (12, 13), (17, 23))),
    ([3, 4, 5, 9, 10], 56.1, 78.6, 109.3, ((10, 12), (13, 17)), ((9, 10), (12, 13), (17, 23))),
    ([11, 12, 1, 2], 63.1, 109.0, 166.7, ((10, 12), (17, 20), (22, 23)), ((9, 10), (12, 17), (20, 22))),
)


def _windows() -> list[dict[str, Any]]:
    windows: list[dict[str, Any]] = []
    for months, light, mid, peak, peak_hours, mid_hours in _SEASONS:
        windows.append({"price": light, "from": "00:00", "to": "24:00", "months": months})
        for a, b in mid_hours:
            windows.append({"price": mid, "from": f"{a:02d}:00", "to": f"{b:02d}:00", "months": months})
        for a, b in peak_hours:
            windows.append({"price": peak, "from": f"{a:02d}:00", "to": f"{b:02d}:00", "months": months, "days": "weekdays"})
            windows.append({"price": mid, "from": f"{a:02d}:00", "to": f"{b:02d}:00", "months": months, "days": "weekends"})
    return windows


KEPCO_INDUSTRIAL_B_HV_A_II: dict[str, Any] = {
    "format": "native",
    "id": "kepco-industrial-b-hv-a-ii",
    "name": "KEPCO Industrial (B) high voltage A, option II (TOU), 2018",
    "currency": "KRW",
    "energy": {"default_price": 56.1, "windows": _windows()},
    "demand": {"price_per_kw": 8320, "window_minutes": 15,
               "ratchet": {"percent": 100, "months": 11, "from_months": [12, 1, 2, 7, 8, 9]}},
    "taxes": [{"name": "VAT", "percent": 10.0}, {"name": "Electric Power Industry Basis Fund", "percent": 3.7}],
}
