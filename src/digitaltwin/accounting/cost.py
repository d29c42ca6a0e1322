"""Energy cost per interval: the time-varying part of a tariff, for cost per bucket (``?with=cost``).

Each interval's import is priced at its time-of-use period's first-tier rate (or the dynamic
price plus markup) and its export credited at the first tier's ``sell`` rate or the feed-in
price (nothing when the tariff has no export rule). Tiers, demand, fixed and minimum charges
and taxes belong to a whole billing period (see ``bill.py``) and are not spread over buckets.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import numpy as np

from digitaltwin.accounting.bill import LocalClock, MeterIntervals
from digitaltwin.accounting.tariff import ExportRule, Tariff

#: What a cost per bucket includes, for API answers.
COST_BASIS = (
    "energy charges at each interval's time-of-use rate (first tier) or dynamic price, minus export credits; "
    "fixed, demand and minimum charges and taxes are billed per billing period and not spread over buckets"
)


def interval_costs(tariff: Tariff, meter: MeterIntervals, tz: ZoneInfo) -> np.ndarray:
    """Cost of each interval of ``meter`` in the tariff's currency (NaN where import is missing), shape ``(n,)``."""
    imp, exp = meter.import_kwh, meter.export_kwh
    if tariff.price_asset_id is not None:
        price = meter.price_per_kwh if meter.price_per_kwh is not None else np.full(imp.size, np.nan)
        sell = price if tariff.feed_in_price is None else np.full(imp.size, tariff.feed_in_price)
        buy = price + tariff.energy_markup
    elif tariff.energy_periods and tariff.energy_weekday is not None and tariff.energy_weekend is not None:
        period = LocalClock.of(meter.start_s, tz).period(tariff.energy_weekday, tariff.energy_weekend)
        buy = np.array([p.tiers[0].rate for p in tariff.energy_periods])[period]
        feed = tariff.feed_in_price
        sell = np.array([feed if feed is not None else p.tiers[0].sell for p in tariff.energy_periods])[period]
    else:
        return np.where(np.isfinite(imp), 0.0, np.nan)
    if tariff.export_rule is ExportRule.NONE:
        sell = np.zeros(imp.size)
    return imp * buy - exp * sell
