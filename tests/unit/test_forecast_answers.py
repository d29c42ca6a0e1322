"""Which forecasts the fingerprint alone may answer (services/forecast_answers.py), and the split body."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from digitaltwin.services.forecast_answers import forecast_body_key, join_body, split_body
from digitaltwin.storage.energy_fingerprint import ASSET_ATTRIBUTES, QUANTITY, SERIES_KIND


def _row(quantity: str, kind: str, attributes: dict | None = None) -> tuple[object, ...]:
    row: list[object] = [None] * 18
    row[ASSET_ATTRIBUTES], row[QUANTITY], row[SERIES_KIND] = attributes or {}, quantity, kind
    return tuple(row)


def _key(rows: list[tuple[object, ...]], **changes: object) -> bytes | None:
    args = {"horizon": timedelta(hours=24), "levels": [0.1, 0.9], "max_hold": timedelta(minutes=30), **changes}
    return forecast_body_key(rows, "a", ("m-1", ()), **args)  # type: ignore[arg-type]


def test_interval_and_counter_energy_are_keyed_power_and_exogenous_inputs_are_not() -> None:
    assert _key([_row("energy", "interval"), _row("power", "instantaneous")]) is not None  # energy is what is forecast
    assert _key([_row("energy_total", "cumulative")]) is not None
    assert _key([_row("power", "instantaneous")]) is None  # a held power sample reads the current time
    assert _key([_row("energy", "interval", {"forecast_exog": [{"asset_id": "w", "quantity": "temperature"}]})]) is None
    assert _key([_row("temperature", "instantaneous")]) is None  # no energy series: the forecast's own 404
    assert _key([]) is None


def test_every_part_of_the_request_and_the_inputs_changes_the_key() -> None:
    rows = [_row("energy", "interval")]
    keys = {
        _key(rows), _key(rows, horizon=timedelta(hours=12)), _key(rows, levels=[]), _key(rows, max_hold=timedelta(hours=1)),
        _key([_row("energy", "interval", {"rated_power_kw": 5})]),
        forecast_body_key(rows, "a", ("m-2", ()), horizon=timedelta(hours=24), levels=[0.1, 0.9], max_hold=timedelta(minutes=30)),
    }
    assert len(keys) == 6


def test_a_split_body_joins_with_each_answers_issued_at() -> None:
    def render(issued_at: object) -> bytes:
        return orjson.dumps({"asset_id": "a", "issued_at": issued_at, "points": [1.5]}, option=orjson.OPT_UTC_Z)

    at = datetime(2026, 12, 6, 7, 0, 0, 123456, tzinfo=UTC)
    assert join_body(split_body(render), at) == render(at)
