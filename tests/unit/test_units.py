"""Pure tests of unit normalisation (``digitaltwin.domain.units``) and of payload values (no I/O).

Field cases covered (``/work/shared/cases``):

* ``payload/wh-vs-kwh-units.md``: Wh, kWh and W, kW are converted to kWh and kW; an unknown
  unit (``kwhh``) is rejected naming ``unit``, never guessed.
* ``payload/numeric-strings.md``: plain decimal strings are coerced, ``"4,000 W"`` is rejected
  naming the field.
* ``payload/nan-and-infinity.md``: NaN, Infinity (and numbers too large for a float) are
  rejected naming the field.
"""

from __future__ import annotations

import json

import pytest

from digitaltwin.domain.errors import UnknownUnitError, ValidationError
from digitaltwin.domain.readings import parse_item, parse_value
from digitaltwin.domain.units import FIELD_ALIASES, QUANTITIES, SeriesKind, to_canonical

TARIFF_EUR_PER_KWH = 0.30


# -- wh-vs-kwh-units ----------------------------------------------------------


def test_canonical_units() -> None:
    assert QUANTITIES["energy_total"].canonical_unit == "kWh"
    assert QUANTITIES["energy_total"].kind is SeriesKind.CUMULATIVE
    assert QUANTITIES["power"].canonical_unit == "kW"


def test_energy_in_wh_and_kwh_agree() -> None:
    assert to_canonical("energy_total", 1_502_500, "Wh") == pytest.approx(1502.5, abs=1e-9)
    assert to_canonical("energy_total", 1502.5, "kWh") == pytest.approx(1502.5, abs=1e-9)
    assert to_canonical("energy_total", 1.5025, "MWh") == pytest.approx(1502.5, abs=1e-9)
    delta_wh = to_canonical("energy_total", 1_502_500, "Wh") - to_canonical("energy_total", 1_500_000, "Wh")
    delta_kwh = to_canonical("energy_total", 1502.5, "kWh") - to_canonical("energy_total", 1500.0, "kWh")
    assert delta_wh == pytest.approx(2.5, abs=1e-6)
    assert delta_kwh == pytest.approx(2.5, abs=1e-6)
    assert delta_wh * TARIFF_EUR_PER_KWH == pytest.approx(0.75, abs=1e-6)  # not 750 EUR


def test_power_in_w_and_kw_agree() -> None:
    assert to_canonical("power", 2500, "W") == pytest.approx(2.5)
    assert to_canonical("power", 2.5, "kW") == pytest.approx(2.5)
    assert to_canonical("power", 2.5, None) == 2.5  # no unit: already canonical


@pytest.mark.parametrize("unit", ["kwhh", "", "KWHH", "J", 12])
def test_unknown_energy_unit_is_rejected_naming_unit(unit: object) -> None:
    with pytest.raises(UnknownUnitError) as err:
        to_canonical("energy_total", 12, unit)  # type: ignore[arg-type]
    assert isinstance(err.value, ValidationError)
    assert err.value.field == "unit"
    assert "kWh" in err.value.message  # lists the accepted units


@pytest.mark.parametrize(("quantity", "value", "unit"), [("power", 1e306, "MW"), ("energy_total", -1e306, "MWh")])
def test_conversion_that_overflows_is_rejected_not_infinite(quantity: str, value: float, unit: str) -> None:
    with pytest.raises(ValidationError) as err:
        to_canonical(quantity, value, unit, field="unit")
    assert err.value.field == "unit"
    assert "out of range" in err.value.message


def test_measurement_fields_named_with_units() -> None:
    assert FIELD_ALIASES["power_w"] == ("power", "W")
    assert FIELD_ALIASES["power_kw"] == ("power", "kW")
    assert FIELD_ALIASES["energy_total"] == ("energy_total", None)
    assert FIELD_ALIASES["energy_import_kwh_total"] == ("energy_total", "kWh")


WH_CASE = [
    b'{"device_id":"m-wh","ts":"2026-03-27T09:00:00Z","energy_total":1500000,"unit":"Wh"}',
    b'{"device_id":"m-wh","ts":"2026-03-27T10:00:00Z","energy_total":1502500,"unit":"Wh"}',
    b'{"device_id":"m-kwh","ts":"2026-03-27T09:00:00Z","energy_total":1500.0,"unit":"kWh"}',
    b'{"device_id":"m-kwh","ts":"2026-03-27T10:00:00Z","energy_total":1502.5,"unit":"kWh"}',
]


def test_case_items_normalise_to_kwh() -> None:
    values = [parse_item(json.loads(line))[0].value for line in WH_CASE]
    assert values == pytest.approx([1500.0, 1502.5, 1500.0, 1502.5], abs=1e-9)
    assert {parse_item(json.loads(line))[0].quantity for line in WH_CASE} == {"energy_total"}


def test_case_item_with_unknown_unit_is_rejected_naming_unit() -> None:
    with pytest.raises(ValidationError) as err:
        parse_item(json.loads(b'{"device_id":"m-bad","ts":"2026-03-27T10:00:00Z","energy_total":12,"unit":"kwhh"}'))
    assert err.value.field == "unit"


def test_power_items_with_w_and_kw_are_equivalent() -> None:
    kw = parse_item({"device_id": "p", "ts": "2026-03-27T10:00:00Z", "power": 2.5, "unit": "kW"})
    w = parse_item({"device_id": "p", "ts": "2026-03-27T10:00:00Z", "power": 2500, "unit": "W"})
    assert kw == w
    assert kw[0].quantity == "power" and kw[0].value == pytest.approx(2.5)


# -- numeric-strings and nan-and-infinity: values -------------------------------


@pytest.mark.parametrize(("raw", "expected"), [(1000, 1000.0), ("4000", 4000.0), (" 4000.5 ", 4000.5), ("-1e3", -1000.0), (0, 0.0)])
def test_numbers_and_plain_decimal_strings_are_accepted(raw: object, expected: float) -> None:
    assert parse_value(raw, field="power_w") == expected


@pytest.mark.parametrize(
    "raw",
    ["4,000 W", "4,000", "4000 W", "unavailable", "", "NaN", "Infinity", "1e999", None, True, [1], {"v": 1},
     float("nan"), float("inf"), float("-inf"), pytest.param(10**400, id="int-beyond-float")],
)
def test_other_values_are_rejected_naming_the_field(raw: object) -> None:
    with pytest.raises(ValidationError) as err:
        parse_value(raw, field="power_w")
    assert err.value.field == "power_w"


def test_nan_tokens_of_a_lenient_json_parser_are_rejected() -> None:
    for line in (
        b'{"device_id":"m-nan","ts":"2025-05-01T10:00:00Z","power_w":NaN}',
        b'{"device_id":"m-nan","ts":"2025-05-01T10:05:00Z","power_w":Infinity}',
    ):
        with pytest.raises(ValidationError) as err:
            parse_item(json.loads(line))  # json.loads accepts the tokens
        assert err.value.field == "power_w"
        assert "finite" in err.value.message
    ok = parse_item(json.loads(b'{"device_id":"m-nan","ts":"2025-05-01T10:10:00Z","power_w":1200}'))
    assert ok[0].value == pytest.approx(1.2)


def test_numeric_string_item_is_coerced_to_the_same_reading() -> None:
    as_string = parse_item(json.loads(b'{"device_id":"m-str","ts":"2025-05-01T10:20:00Z","power_w":"4000"}'))
    as_number = parse_item(json.loads(b'{"device_id":"m-str","ts":"2025-05-01T10:20:00Z","power_w":4000}'))
    assert as_string == as_number
    assert as_string[0].value == pytest.approx(4.0)
    with pytest.raises(ValidationError) as err:
        parse_item(json.loads(b'{"device_id":"m-str","ts":"2025-05-01T10:50:00Z","power_w":"4,000 W"}'))
    assert err.value.field == "power_w"
