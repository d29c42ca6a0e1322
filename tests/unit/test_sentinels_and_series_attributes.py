"""'Not available' sentinels are rejected naming the field; series attributes are checked naming the key."""

from __future__ import annotations

import pytest

from digitaltwin.domain.errors import ValidationError
from digitaltwin.domain.readings import parse_item
from digitaltwin.domain.sentinels import SENTINELS, sentinel_name
from digitaltwin.domain.series_attributes import check_series_attributes, energy_flow, export_positive

TS = "2026-03-27T09:00:00Z"


@pytest.mark.parametrize("raw", sorted(SENTINELS))
@pytest.mark.parametrize(
    ("field", "extra"),
    [("power_w", {}), ("energy_total", {"unit": "Wh"}), ("energy_total", {"unit": "kWh"}), ("voltage_v", {})],
)
def test_every_sentinel_is_rejected_naming_the_field(raw: float, field: str, extra: dict[str, str]) -> None:
    value = int(raw)
    with pytest.raises(ValidationError) as err:
        parse_item({"device_id": "m-1", "ts": TS, field: value, **extra})
    assert err.value.field == field


def test_sentinels_within_the_plausible_range_are_rejected_too() -> None:
    """65535 W is 65.5 kW and 0xFFFFFFFF Wh is 4.3 GWh: both inside the global bounds, both rejected."""
    for item, field in (
        ({"device_id": "m", "ts": TS, "power_w": 65535}, "power_w"),
        ({"device_id": "m", "ts": TS, "energy_total": 4294967295, "unit": "Wh"}, "energy_total"),
        ({"device_id": "m", "ts": TS, "power_w": "32767"}, "power_w"),  # as a decimal string too
        ({"asset_id": "m", "ts": TS, "quantity": "power", "value": 2147483647, "unit": "W"}, "value"),
    ):
        with pytest.raises(ValidationError, match="not available") as err:
            parse_item(item)
        assert err.value.field == field


@pytest.mark.parametrize("quantity", ["energy_total", "energy_export_total", "co2"])
def test_minus_one_is_a_sentinel_where_the_quantity_cannot_be_negative(quantity: str) -> None:
    assert sentinel_name(quantity, -1.0) is not None
    unit = "kg" if quantity == "co2" else "kWh"
    with pytest.raises(ValidationError, match="not available") as err:
        parse_item({"asset_id": "m", "ts": TS, "quantity": quantity, "value": -1, "unit": unit})
    assert err.value.field == "value"


def test_real_values_next_to_sentinels_are_kept() -> None:
    assert sentinel_name("power", -1.0) is None  # export power of 1 kW is real
    for value in (65534, 65536, 32766, 4294967294):
        (reading,) = parse_item({"device_id": "m", "ts": TS, "power_w": value})
        assert reading.value == pytest.approx(value / 1000)


def test_series_attributes_are_normalised() -> None:
    assert check_series_attributes("energy_total", {"counter_modulus": 2**32, "counter_modulus_unit": "Wh"}) == {
        "counter_modulus_kwh": pytest.approx(2**32 / 1000)
    }
    assert check_series_attributes("power", {"sign_convention": "export_positive"}) == {"sign_convention": "export_positive"}
    assert check_series_attributes("energy_total", {"direction": "export", "resolution_kwh": 0.01, "meter_serial": "A-1"}) == {
        "direction": "export", "resolution_kwh": 0.01, "meter_serial": "A-1",
    }


@pytest.mark.parametrize(
    ("quantity", "attributes", "field"),
    [
        ("power", {"sign_convention": "up"}, "sign_convention"),
        ("energy_total", {"sign_convention": "import_positive"}, "sign_convention"),
        ("power", {"counter_modulus_kwh": 100}, "counter_modulus_kwh"),
        ("energy_total", {"counter_modulus_kwh": -5}, "counter_modulus_kwh"),
        ("energy_total", {"counter_modulus_kwh": True}, "counter_modulus_kwh"),
        ("energy_total", {"counter_modulus": 65536}, "counter_modulus_unit"),
        ("energy_total", {"counter_modulus": 65536, "counter_modulus_unit": "Whh"}, "counter_modulus_unit"),
        ("energy_total", {"counter_modulus_unit": "Wh"}, "counter_modulus_unit"),
        ("energy_export_total", {"direction": "import"}, "direction"),
        ("power", {"direction": "import"}, "direction"),
        ("energy_total", {"obis": "1.8.0"}, "obis"),
        ("energy_total", {"meter_serial": ""}, "meter_serial"),
        ("energy_total", {"resolution_kwh": 0}, "resolution_kwh"),
        ("energy_total", ["direction"], "attributes"),
    ],
)
def test_bad_series_attributes_name_the_key(quantity: str, attributes: object, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        check_series_attributes(quantity, attributes)
    assert err.value.field == field


def test_directions_follow_declarations_then_the_asset() -> None:
    assert energy_flow("pv", {}) == "produce" and energy_flow("battery", {}) == "both" and energy_flow("ev", {}) == "consume"
    assert energy_flow("pv", {"energy_flow": "both"}) == "both"
    assert export_positive("power", {}, "produce") and not export_positive("power", {}, "consume")
    assert export_positive("power", {"sign_convention": "export_positive"}, "consume")
    assert not export_positive("energy_total", {"direction": "import"}, "produce")
    assert export_positive("energy_export_total", {}, "consume")


@pytest.mark.parametrize(
    ("quantity", "value", "unit"),
    [("power", 65535, "W"), ("power", -32768, "W"), ("energy_total", 4294967295, "Wh"), ("energy_total", -1, "kWh"), ("power", 2147483647, "W")],
)
def test_mqtt_sentinels_leave_the_fast_path_and_become_dead_letters(quantity: str, value: int, unit: str) -> None:
    import json
    import time
    from datetime import UTC, datetime

    from digitaltwin.ingest.mqtt_payload import _fast_readings, decode_message

    body = {"ts": int(time.time() * 1000), "quantity": quantity, "value": value, "unit": unit}
    assert _fast_readings(body, "m1") is None
    message = decode_message(
        "p/dt/site-a/m1/telemetry", json.dumps(body).encode(), received_at=datetime(2026, 1, 1, tzinfo=UTC), max_bytes=1 << 20, prefix="p/"
    )
    assert message.readings == [] or not message.readings
    (letter,) = message.dead_letters
    assert letter.field == "value" and "not available" in letter.reason
