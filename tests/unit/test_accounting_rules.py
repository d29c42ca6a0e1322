"""One test per billing rule of the engine, on small hand-made meters whose bills are worked out by hand."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from digitaltwin.accounting.bill import MeterIntervals, compute_bill, compute_bills, round_money
from digitaltwin.accounting.native import parse_native
from digitaltwin.accounting.periods import billing_periods, local_midnight
from digitaltwin.accounting.urdb import parse_urdb
from digitaltwin.domain.errors import ValidationError

UTC_TZ = ZoneInfo("UTC")
FLAT0 = [[0] * 24 for _ in range(12)]


def _meter(import_kwh: list[float] | np.ndarray, *, start: datetime = datetime(2018, 1, 1, tzinfo=UTC), step: int = 3600,
           export_kwh: list[float] | np.ndarray | None = None) -> MeterIntervals:
    imp = np.asarray(import_kwh, dtype=float)
    exp = np.zeros(imp.size) if export_kwh is None else np.asarray(export_kwh, dtype=float)
    return MeterIntervals(int(start.timestamp()) + step * np.arange(imp.size, dtype=np.int64), imp, exp, step)


def _january(tz: ZoneInfo = UTC_TZ):  # noqa: ANN202
    return billing_periods(local_midnight(datetime(2018, 1, 1).date(), tz), local_midnight(datetime(2018, 2, 1).date(), tz), tz)[0]


def _urdb(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {"energyratestructure": [[{"rate": 0.1}]], "energyweekdayschedule": FLAT0, "energyweekendschedule": FLAT0}
    base.update(fields)
    return base


def _amounts(bill, kind: str) -> float:  # noqa: ANN001
    return sum(i.amount for i in bill.line_items if i.kind == kind)


def test_fixed_charges_per_day_month_and_the_older_monthly_field() -> None:
    tariff = parse_urdb(_urdb(fixedchargefirstmeter=2.0, fixedchargeunits="$/day", fixedmonthlycharge=10.0))
    bill = compute_bill(tariff, _meter(np.ones(744)), _january(), UTC_TZ)
    assert _amounts(bill, "fixed") == pytest.approx(31 * 2.0 + 10.0)
    assert _amounts(bill, "energy") == pytest.approx(74.4)


def test_tiers_count_the_total_over_periods_and_prorate_it() -> None:
    # period 0 (hours 0-11) 1 kWh/h, period 1 (hours 12-23) 3 kWh/h; tier 0 up to 1000 kWh at 0.1 / 0.2, then 0.5 / 0.6
    schedule = [[0] * 12 + [1] * 12 for _ in range(12)]
    tariff = parse_urdb(_urdb(energyratestructure=[[{"max": 1000, "rate": 0.1}, {"rate": 0.5}], [{"max": 1000, "rate": 0.2}, {"rate": 0.6}]],
                              energyweekdayschedule=schedule, energyweekendschedule=schedule))
    bill = compute_bill(tariff, _meter(np.tile([1.0] * 12 + [3.0] * 12, 31)), _january(), UTC_TZ)
    total = 31 * 48  # 1488 kWh, 1/4 in period 0
    expected = 0.25 * (1000 * 0.1 + (total - 1000) * 0.5) + 0.75 * (1000 * 0.2 + (total - 1000) * 0.6)
    assert _amounts(bill, "energy") == pytest.approx(expected)
    assert {(i.period, i.tier) for i in bill.line_items if i.kind == "energy"} == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_kwh_per_kw_and_daily_tier_limits_scale() -> None:
    load = np.ones(744)
    load[5] = 10.0  # peak 10 kW
    per_kw = parse_urdb(_urdb(energyratestructure=[[{"max": 50, "rate": 0.1, "unit": "kWh/kW"}, {"rate": 0.0, "unit": "kWh/kW"}]]))
    assert _amounts(compute_bill(per_kw, _meter(load), _january(), UTC_TZ), "energy") == pytest.approx(500 * 0.1)
    daily = parse_urdb(_urdb(energyratestructure=[[{"max": 10, "rate": 0.1, "unit": "kWh daily"}, {"rate": 0.0, "unit": "kWh daily"}]]))
    assert _amounts(compute_bill(daily, _meter(load), _january(), UTC_TZ), "energy") == pytest.approx(310 * 0.1)


def test_demand_tiers_window_and_peak_time() -> None:
    tariff = parse_urdb(_urdb(flatdemandstructure=[[{"max": 5, "rate": 10.0}, {"rate": 20.0}]], flatdemandmonths=[0] * 12, demandwindow=30))
    kwh = np.full(744 * 4, 0.5)  # 2 kW at 15 min
    kwh[100], kwh[101] = 4.0, 1.0  # 16 kW then 4 kW: their 30-minute block averages 10 kW
    bill = compute_bill(tariff, _meter(kwh, step=900), _january(), UTC_TZ)
    (line,) = [i for i in bill.line_items if i.kind == "demand"]
    assert line.peak_kw == pytest.approx(10.0)
    assert line.amount == pytest.approx(5 * 10.0 + 5 * 20.0)
    assert line.peak_at == datetime(2018, 1, 2, 1, 0, tzinfo=UTC)


def test_tou_and_coincident_demand_lines() -> None:
    demand = [[0] * 18 + [1] * 4 + [0] * 2 for _ in range(12)]
    tariff = parse_urdb(_urdb(demandratestructure=[[{"rate": 1.0}], [{"rate": 5.0}]], demandweekdayschedule=demand, demandweekendschedule=demand,
                              coincidentratestructure=[[{"rate": 0.0}], [{"rate": 7.0}]], coincidentrateschedule=demand))
    load = np.tile([1.0] * 18 + [3.0] * 4 + [2.0] * 2, 31)
    bill = compute_bill(tariff, _meter(load), _january(), UTC_TZ)
    lines = {(i.description, round(i.peak_kw, 6)): i.amount for i in bill.line_items if i.kind == "demand"}
    assert lines == {("TOU demand, period 0", 2.0): 2.0, ("TOU demand, period 1", 3.0): 15.0,
                     ("coincident demand, period 0", 2.0): 0.0, ("coincident demand, period 1", 3.0): 21.0}


def test_ratchet_raises_billing_demand_from_flagged_earlier_months() -> None:
    tariff = parse_urdb(_urdb(flatdemandstructure=[[{"rate": 10.0}]], lookbackpercent=0.8, lookbackrange=11,
                              lookbackmonths=[True] + [False] * 11))
    tz = UTC_TZ
    periods = billing_periods(datetime(2018, 1, 1, tzinfo=UTC), datetime(2018, 4, 1, tzinfo=UTC), tz)
    hours = [744, 672, 744]
    load = np.concatenate([np.full(hours[0], 100.0), np.full(hours[1], 10.0), np.full(hours[2], 10.0)])
    bills = compute_bills(tariff, _meter(load), periods, tz)
    assert [_amounts(b, "demand") for b in bills] == pytest.approx([1000.0, 800.0, 800.0])
    unflagged = parse_urdb(_urdb(flatdemandstructure=[[{"rate": 10.0}]], lookbackpercent=0.8, lookbackrange=11, lookbackmonths=[False] * 12))
    assert _amounts(compute_bills(unflagged, _meter(load), periods, tz)[1], "demand") == pytest.approx(100.0)
    # URDB asks for lookbackrange 0 when lookbackmonths names the months: the 12 months before count
    named = parse_urdb(_urdb(flatdemandstructure=[[{"rate": 10.0}]], lookbackpercent=0.8, lookbackrange=0,
                             lookbackmonths=[True] + [False] * 11))
    assert [_amounts(b, "demand") for b in compute_bills(named, _meter(load), periods, tz)] == pytest.approx([1000.0, 800.0, 800.0])


def test_minimum_charge_tops_up_and_taxes_apply_to_the_subtotal() -> None:
    tariff = parse_urdb(_urdb(fixedmonthlycharge=5.0, mincharge=1.0, minchargeunits="$/day"))
    bill = compute_bill(tariff, _meter(np.full(744, 0.1)), _january(), UTC_TZ)  # energy 7.44 + fixed 5 < 31
    assert _amounts(bill, "minimum") == pytest.approx(31 - 12.44)
    assert bill.total == pytest.approx(31.0)
    native = parse_native({"format": "native", "currency": "EUR", "energy": {"default_price": 0.2},
                           "fixed": [{"amount": 1.0, "per": "day"}], "taxes": [{"name": "VAT", "percent": 19}]})
    bill = compute_bill(native, _meter(np.ones(744)), _january(), UTC_TZ)
    assert bill.subtotal == pytest.approx(31 + 148.8)
    assert _amounts(bill, "tax") == pytest.approx(0.19 * 179.8)


@pytest.mark.parametrize(
    ("dgrules", "billed_kwh", "credited_kwh"),
    [
        (None, 2.0 * 744, 0.0),  # no export rule: imports billed, exports earn nothing
        ("Net Metering", 1.5 * 744, 0.0),  # netted over the bill within the period
        ("Net Billing Instantaneous", 2.0 * 744, 0.5 * 744),
        ("Net Billing Hourly", 1.5 * 744, 0.0),  # each hour nets to import
        ("Buy All Sell All", 2.0 * 744, 0.5 * 744),
    ],
)
def test_export_rules(dgrules: str | None, billed_kwh: float, credited_kwh: float) -> None:
    record = _urdb(energyratestructure=[[{"rate": 0.1, "sell": 0.04}]])
    if dgrules:
        record["dgrules"] = dgrules
    # each hour: 15 min exporting 0.5 kWh, 45 min importing 2.0 kWh in total
    imp = np.tile([0.0, 2 / 3, 2 / 3, 2 / 3], 744)
    exp = np.tile([0.5, 0.0, 0.0, 0.0], 744)
    bill = compute_bill(parse_urdb(record), _meter(imp, step=900, export_kwh=exp), _january(), UTC_TZ)
    assert sum(i.quantity for i in bill.line_items if i.kind == "energy") == pytest.approx(billed_kwh)
    assert sum(i.quantity for i in bill.line_items if i.kind == "export_credit") == pytest.approx(credited_kwh)
    assert _amounts(bill, "export_credit") == pytest.approx(-0.04 * credited_kwh)


def test_dynamic_price_series_with_negative_prices_and_feed_in() -> None:
    tariff = parse_native({"format": "native", "currency": "EUR", "energy": {"price_asset": "epex", "markup": 0.01}, "feed_in_price": 0.05})
    meter = _meter(np.ones(744), export_kwh=np.full(744, 0.5))
    prices = np.where(np.arange(744) % 24 < 12, -0.02, 0.10)
    meter = MeterIntervals(meter.start_s, meter.import_kwh, meter.export_kwh, 3600, prices)
    bill = compute_bill(tariff, meter, _january(), UTC_TZ)
    assert _amounts(bill, "energy") == pytest.approx(372 * (-0.01) + 372 * 0.11)
    assert _amounts(bill, "export_credit") == pytest.approx(-0.05 * 372)


def test_missing_intervals_are_counted() -> None:
    kwh = np.ones(744)
    kwh[10:34] = np.nan
    bill = compute_bill(parse_urdb(_urdb()), _meter(kwh), _january(), UTC_TZ)
    assert (bill.expected_intervals, bill.present_intervals, bill.complete) == (744, 720, False)
    assert "24 of 744 intervals missing" in bill.notes[0]


def test_periods_follow_the_local_calendar_dst_and_bill_day() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    (march,) = billing_periods(datetime(2018, 3, 10, tzinfo=UTC), datetime(2018, 3, 11, tzinfo=UTC), berlin)
    assert (march.end - march.start).total_seconds() == 743 * 3600
    assert march.start == datetime(2018, 2, 28, 23, tzinfo=UTC)
    cycles = billing_periods(datetime(2018, 3, 10, tzinfo=UTC), datetime(2018, 4, 20, tzinfo=UTC), berlin, bill_day=15)
    assert [(p.first_day.isoformat(), p.last_day.isoformat()) for p in cycles] == [
        ("2018-02-15", "2018-03-14"), ("2018-03-15", "2018-04-14"), ("2018-04-15", "2018-05-14")]
    with pytest.raises(ValidationError) as info:
        billing_periods(datetime(2018, 3, 10, tzinfo=UTC), datetime(2018, 4, 20, tzinfo=UTC), berlin, bill_day=30)
    assert info.value.field == "bill_day"


def test_schedules_use_local_wall_clock_hours() -> None:
    seoul = ZoneInfo("Asia/Seoul")
    schedule = [[0] * 9 + [1] + [0] * 14 for _ in range(12)]  # 09:00-10:00 local at 1.0, else 0
    tariff = parse_urdb(_urdb(energyratestructure=[[{"rate": 0.0}], [{"rate": 1.0}]], energyweekdayschedule=schedule, energyweekendschedule=schedule))
    start = local_midnight(datetime(2018, 1, 1).date(), seoul)
    bill = compute_bill(tariff, _meter(np.ones(744), start=start), _january(seoul), seoul)
    assert _amounts(bill, "energy") == pytest.approx(31.0)


def test_urdb_import_refuses_unknown_fields_and_keeps_input_unchanged() -> None:
    record = _urdb(fixedchargefirstmeter=1.0, fixedchargeunits="$/day")
    before = copy.deepcopy(record)
    parse_urdb(record)
    parse_urdb(record)
    assert record == before  # never mutated (SAM's converter shifts periods when run twice)
    for field, value in (("fueladjustmentsmonthly", [0.0] * 12), ("demandreactivepowercharge", 1.0)):
        with pytest.raises(ValidationError) as info:
            parse_urdb(record | {field: value})
        assert info.value.field == field
    with pytest.raises(ValidationError) as info:
        parse_urdb(_urdb(energyratestructure=[[{"rate": 0.1, "unit": "therms"}]]))
    assert info.value.field == "energyratestructure[0][0].unit"
    with pytest.raises(ValidationError) as info:
        parse_urdb(_urdb(flatdemandstructure=[[{"rate": 1.0}]], flatdemandmonths=[0] * 11 + [1]))
    assert info.value.field == "flatdemandmonths[11]"


def test_native_form_errors_name_the_field() -> None:
    base = {"format": "native", "currency": "EUR", "energy": {"default_price": 0.2}}
    for body, field in (
        (base | {"currency": "euro"}, "currency"),
        (base | {"energy": {"default_price": 0.2, "windows": [{"price": 0.3, "from": "08:30", "to": "20:00"}]}}, "energy.windows[0].from"),
        (base | {"energy": {"default_price": 0.2, "windows": [{"price": 0.3, "from": "20:00", "to": "08:00"}]}}, "energy.windows[0].to"),
        (base | {"vat": 19}, "tariff.vat"),
    ):
        with pytest.raises(ValidationError) as info:
            parse_native(body)
        assert info.value.field == field


def test_rounding_is_half_up_to_the_currency_minor_unit() -> None:
    assert round_money(0.125) == 0.13
    assert round_money(-0.125) == -0.13
    assert round_money(1234.5, "KRW") == 1235.0


def test_net_metering_surplus_rolls_over_until_the_december_true_up() -> None:
    record = _urdb(energyratestructure=[[{"rate": 0.1}]], dgrules="Net Metering")
    tariff = parse_urdb(record)
    periods = billing_periods(datetime(2018, 11, 1, tzinfo=UTC), datetime(2019, 2, 1, tzinfo=UTC), UTC_TZ)
    hours = [720, 744, 744]  # Nov: net export 1 kWh/h; Dec and Jan: net import 2 kWh/h
    imp = np.concatenate([np.zeros(720), np.full(744, 2.0), np.full(744, 2.0)])
    exp = np.concatenate([np.ones(720), np.zeros(744), np.zeros(744)])
    start = datetime(2018, 11, 1, tzinfo=UTC)
    nov, dec, jan = compute_bills(tariff, _meter(imp, start=start, export_kwh=exp), periods, UTC_TZ)
    assert sum(hours) == imp.size
    assert _amounts(nov, "energy") == 0 and nov.surplus_kwh == (720.0,)
    assert _amounts(dec, "energy") == pytest.approx((1488 - 720) * 0.1)  # November's surplus offsets December
    assert "720.000 kWh of net metering surplus carried in" in dec.notes[0]
    assert _amounts(jan, "energy") == pytest.approx(1488 * 0.1)
    # surplus left in December is not carried into January (annual true-up)
    exp_dec = np.concatenate([np.zeros(720), np.full(744, 3.0), np.zeros(744)])
    _, dec2, jan2 = compute_bills(tariff, _meter(imp, start=start, export_kwh=exp_dec), periods, UTC_TZ)
    assert any("annual true-up" in n for n in dec2.notes)
    assert _amounts(jan2, "energy") == pytest.approx(1488 * 0.1)


def test_native_percentages_are_percent_and_amounts_must_be_plausible() -> None:
    from digitaltwin.domain.errors import ValidationError

    base = {"format": "native", "name": "R", "currency": "EUR", "energy": {"default_price": 0.2}}
    ratcheted = parse_native(base | {"demand": {"price_per_kw": 10, "ratchet": {"percent": 80, "months": 11}}})
    assert ratcheted.ratchet is not None and ratcheted.ratchet.percent == pytest.approx(0.8)  # 80 %, as taxes count
    for record, field in (
        (base | {"demand": {"price_per_kw": 10, "ratchet": {"percent": 120, "months": 11}}}, "demand.ratchet.percent"),
        (base | {"taxes": [{"name": "VAT", "percent": 1e308}]}, "taxes[0].percent"),
        (base | {"energy": {"default_price": 1e300}}, "energy.default_price"),
    ):
        with pytest.raises(ValidationError) as err:
            parse_native(record)
        assert err.value.field == field


def test_several_meters_with_uneven_coverage_are_summed_where_each_has_data() -> None:
    """A site's meters: each meter's data counts where it exists, a missing meter counts 0 kWh there,
    an interval is missing only when no meter has data; completeness and notes name each meter."""
    n = 744  # January, hourly
    main = np.ones(n)
    main[100:110] = np.nan  # main misses 10 hours
    b = np.full(n, np.nan)
    b[96:120] = 2.0  # b has one day, overlapping main's gap
    never = np.full(n, np.nan)  # a meter without any data this month
    starts = _meter(main).start_s
    meter = MeterIntervals.combine(starts, 3600, [("main", main, np.zeros(n)), ("b", b, np.full(n, np.nan)), ("never", never, never)])
    assert meter.meters == ("main", "b", "never") and meter.present.shape == (3, n)
    assert np.isfinite(meter.import_kwh).all()  # b covers every hour main misses
    assert meter.import_kwh[100] == 2.0 and meter.import_kwh[96] == 3.0 and meter.import_kwh[0] == 1.0
    assert np.all(meter.export_kwh == 0.0)
    demand = _urdb(flatdemandstructure=[[{"rate": 10.0}]], flatdemandmonths=[0] * 12)
    bill = compute_bill(parse_urdb(demand), meter, _january(), UTC_TZ)
    assert bill.import_kwh == pytest.approx(734 + 48)
    assert _amounts(bill, "energy") == pytest.approx(0.1 * (734 + 48))
    assert bill.peak_kw == pytest.approx(3.0)  # 1 kWh + 2 kWh in the hours both have
    assert [(m.asset_id, m.expected_intervals, m.present_intervals) for m in bill.meters] == [
        ("main", 744, 734), ("b", 744, 24), ("never", 744, 0)]
    assert (bill.expected_intervals, bill.present_intervals, bill.complete) == (3 * 744, 734 + 24, False)
    missing = [note for note in bill.notes if "missing" in note]
    assert missing == [
        "main: 10 of 744 intervals missing (no data there, counted as 0 kWh): charges cover the metered intervals only",
        "b: 720 of 744 intervals missing (no data there, counted as 0 kWh): charges cover the metered intervals only",
        "never: 744 of 744 intervals missing (no data there, counted as 0 kWh): charges cover the metered intervals only",
    ]
    assert any("below the true coincident peak" in note for note in bill.notes)


def test_combined_intervals_missing_in_every_meter_are_missing() -> None:
    a = np.array([1.0, np.nan, np.nan, 4.0])
    b = np.array([np.nan, 2.0, np.nan, 1.0])
    meter = MeterIntervals.combine(np.arange(4) * 900, 900, [("a", a, np.zeros(4)), ("b", b, np.array([0.5, 0, 0, 0]))])
    np.testing.assert_array_equal(meter.import_kwh, [1.0, 2.0, np.nan, 5.0])
    np.testing.assert_array_equal(meter.export_kwh, [0.5, 0.0, 0.0, 0.0])
    window = meter.window(datetime.fromtimestamp(900, UTC), datetime.fromtimestamp(2700, UTC))
    assert window.meters == ("a", "b") and window.present.tolist() == [[False, False], [True, False]]
