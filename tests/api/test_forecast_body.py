"""The forecast route's body (orjson) is the text pydantic writes for the same :class:`ForecastOut`."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import orjson
import pandas as pd
import pytest

from digitaltwin.api.forecast_schemas import ForecastOut
from digitaltwin.api.routers.forecast import forecast_body
from digitaltwin.forecasting.base import Forecast
from digitaltwin.services.forecasting import ForecastResult


def result(levels: list[float], *, flatliner: bool = False) -> ForecastResult:
    index = pd.date_range("2018-12-31 15:00", periods=96, freq="15min", tz="UTC")
    index = index.insert(0, pd.Timestamp("2018-12-31 14:59:59.250001", tz="UTC"))  # a stamp with microseconds
    rng = np.random.default_rng(3)
    values = pd.Series(np.r_[rng.gamma(2.0, 10.0, 95), 0.0, 1e-7], index=index, name="steel-plant")
    table = pd.DataFrame({q: values.to_numpy() * (0.5 + q) for q in levels}, index=index)
    return ForecastResult("steel-plant", "lightgbm", Forecast(values, table, flatliner), timedelta(minutes=15), None)


@pytest.mark.parametrize("levels", [[], [0.1, 0.5, 0.9], [0.05, 0.975]])
def test_body_is_the_text_of_the_validated_model(levels: list[float]) -> None:
    answer = result(levels, flatliner=not levels)
    body = forecast_body("steel-plant", answer, levels)
    parsed = orjson.loads(body)
    expected = ForecastOut.model_validate({**parsed, "issued_at": parsed["issued_at"]}).model_dump_json()
    assert body.decode() == expected
    assert parsed["issued_at"].endswith("Z") and parsed["flatliner"] is (not levels)
    assert [p["value"] for p in parsed["points"]] == answer.values.tolist()  # every float reads back the same
    assert parsed["points"][0]["ts"] == "2018-12-31T14:59:59.250001Z" and parsed["points"][1]["ts"] == "2018-12-31T15:00:00Z"
    if levels:
        assert list(parsed["points"][5]["quantiles"]) == [f"{q:g}" for q in levels]
    else:
        assert all(p["quantiles"] is None for p in parsed["points"])
