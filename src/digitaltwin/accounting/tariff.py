"""The tariff domain model every tariff form (URDB, native) is turned into.

Money is in the tariff's ``currency`` (URDB rates are USD); energy in kWh, demand in kW.
A schedule is a 12 x 24 month-by-hour matrix of 0-based period indices, one for weekdays
and one for weekends (Saturday, Sunday), as URDB defines them; public holidays count as
the weekday they fall on, because URDB schedules have no holiday calendar.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

Schedule = tuple[tuple[int, ...], ...]  # 12 rows (Jan..Dec) x 24 hours (local wall clock)


class TierUnit(str, enum.Enum):
    """What an energy tier's ``max`` counts (URDB ``unit`` of energyratestructure)."""

    KWH = "kWh"  # kWh in the billing period
    KWH_PER_KW = "kWh/kW"  # kWh per kW of the period's peak demand
    KWH_DAILY = "kWh daily"  # kWh per day of the period
    KWH_PER_KW_DAILY = "kWh/kW daily"  # kWh per kW of peak demand per day


class ExportRule(str, enum.Enum):
    """How energy sent to the grid is compensated (URDB ``dgrules``)."""

    NONE = "none"  # no compensation: exports neither earn nor offset imports
    NET_METERING = "net_metering"  # per TOU period, exports offset imports in the same period and bill
    NET_BILLING_INSTANTANEOUS = "net_billing_instantaneous"  # each interval: import bought, export sold
    NET_BILLING_HOURLY = "net_billing_hourly"  # net within each clock hour, then bought or sold
    BUY_ALL_SELL_ALL = "buy_all_sell_all"  # all import bought, all export sold (two meters)


@dataclass(frozen=True, slots=True)
class Tier:
    """One tier: up to ``max`` (None: unbounded) at ``rate`` (per kWh or per kW); ``sell`` per kWh exported."""

    max: float | None
    rate: float
    sell: float = 0.0


@dataclass(frozen=True, slots=True)
class EnergyPeriod:
    """Energy charge of one time-of-use period; ``unit`` says what the tiers' ``max`` count."""

    tiers: tuple[Tier, ...]
    unit: TierUnit = TierUnit.KWH


@dataclass(frozen=True, slots=True)
class DemandPeriod:
    """Demand charge of one period: tiers over the period's peak kW (rate per kW)."""

    tiers: tuple[Tier, ...]


@dataclass(frozen=True, slots=True)
class TouDemand:
    """Demand charges by time-of-use period with their weekday/weekend schedules."""

    periods: tuple[DemandPeriod, ...]
    weekday: Schedule
    weekend: Schedule


@dataclass(frozen=True, slots=True)
class Ratchet:
    """A demand ratchet (URDB ``lookbackpercent``, ``lookbackrange``, ``lookbackmonths``).

    The billing demand of a month is the larger of its own peak and ``percent`` of the
    highest peak of the ``range_months`` months before it, counting only the months whose
    flag in ``months`` (Jan..Dec) is set. It applies to the flat (monthly) demand charge.
    """

    percent: float  # fraction, 0.8 = 80 %
    range_months: int
    months: tuple[bool, ...] = (True,) * 12

    @property
    def window_months(self) -> int:
        """Months looked back at: ``range_months``, or the 12 months before when it is 0 (URDB asks for a
        zero ``lookbackrange`` when ``lookbackmonths`` names the months)."""
        return self.range_months or 12


@dataclass(frozen=True, slots=True)
class Charge:
    """An amount per ``per`` (``day``, ``month`` or ``year``) of a billing period."""

    amount: float
    per: str


@dataclass(frozen=True, slots=True)
class Tax:
    """A tax on the bill's subtotal (VAT, electricity tax as a percentage)."""

    name: str
    percent: float


@dataclass(frozen=True, slots=True)
class Tariff:
    """A complete tariff. Every field is one billing rule (see ``bill.py``).

    Attributes:
        energy_periods, energy_weekday, energy_weekend: time-of-use energy charges.
        tou_demand: demand charges by period (None: none).
        flat_demand_periods, flat_demand_months: monthly (all-hours) demand charge;
            ``flat_demand_months[m]`` is the period index for month m (0 = January).
        coincident: demand charges on the peak inside coincident windows (None: none).
        demand_window_minutes: demand is the mean power over blocks of this length
            (None: over the metering interval itself).
        fixed: fixed charges; min_charge: the least a bill comes to before taxes.
        export_rule: compensation of exported energy; ``price_series`` True when energy
            is priced by a dynamic price series (native form) instead of energy_periods.
        taxes: applied to the subtotal, in order, each on the subtotal (not compounded).
    """

    name: str
    currency: str
    energy_periods: tuple[EnergyPeriod, ...] = ()
    energy_weekday: Schedule | None = None
    energy_weekend: Schedule | None = None
    tou_demand: TouDemand | None = None
    flat_demand_periods: tuple[DemandPeriod, ...] = ()
    flat_demand_months: tuple[int, ...] | None = None
    coincident: TouDemand | None = None
    demand_window_minutes: int | None = None
    ratchet: Ratchet | None = None
    fixed: tuple[Charge, ...] = ()
    min_charge: Charge | None = None
    export_rule: ExportRule = ExportRule.NONE
    feed_in_price: float | None = None  # per kWh exported, overrides tier ``sell`` when set
    price_asset_id: str | None = None  # dynamic energy price series (per kWh), native form
    energy_markup: float = 0.0  # per kWh added to the dynamic price
    taxes: tuple[Tax, ...] = ()
    notes: tuple[str, ...] = field(default=())
