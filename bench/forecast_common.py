"""Shared helpers of the forecasting benchmarks: loading the datasets and printing one table."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from digitaltwin.demo_data import STEEL_CSV
from digitaltwin.forecasting.metrics import coverage, cv_rmse, mae, nmbe, rmse

ROOT = Path(__file__).resolve().parents[1]
CAMBRIDGE = ROOT / "datasets" / "cambridge_estates_2019"


def load_steel() -> pd.Series:
    """``Usage_kWh`` per 15 min indexed by UTC interval start (the file labels local interval ENDS)."""
    frame = pd.read_csv(STEEL_CSV, encoding="utf-8-sig", usecols=["date", "Usage_kWh"])
    end = pd.to_datetime(frame["date"], format="%d/%m/%Y %H:%M")
    end = end + pd.to_timedelta(((end.dt.hour == 0) & (end.dt.minute == 0)).astype(int), unit="D")
    start = (end - pd.Timedelta(minutes=15)).dt.tz_localize("Asia/Seoul").dt.tz_convert("UTC")
    return pd.Series(frame["Usage_kWh"].to_numpy(dtype=float), index=pd.DatetimeIndex(start), name="steel")


def load_cambridge(building: str) -> pd.Series:
    """Hourly kWh of one building, indexed by UTC hour start."""
    frame = pd.read_csv(CAMBRIDGE / f"UCam_Building_{building}" / "electricity" / "2019.csv")
    index = pd.DatetimeIndex(pd.to_datetime(frame["datetime"])).tz_localize("UTC")
    return pd.Series(frame["equipment load [kWh]"].to_numpy(dtype=float), index=index, name=building)


def load_bedford_temperature() -> pd.DataFrame:
    frame = pd.read_csv(CAMBRIDGE / "weather_bedford" / "2019.csv")
    index = pd.DatetimeIndex(pd.to_datetime(frame["datetime"])).tz_localize("UTC")
    return pd.DataFrame({"temperature": frame["air_temperature [degC]"].to_numpy(dtype=float)}, index=index)


def row(name: str, actual: np.ndarray, predicted: np.ndarray, seconds: float, low=None, high=None) -> dict[str, object]:  # noqa: ANN001
    out: dict[str, object] = {
        "model": name,
        "MAE kWh": mae(actual, predicted),
        "RMSE kWh": rmse(actual, predicted),
        "CV(RMSE) %": 100 * cv_rmse(actual, predicted),
        "NMBE %": 100 * nmbe(actual, predicted),
        "80% cover %": 100 * coverage(actual, low, high) if low is not None else math.nan,
        "seconds": seconds,
    }
    return out


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def print_table(rows: list[dict[str, object]], title: str) -> None:
    frame = pd.DataFrame(rows).set_index("model")
    print(f"\n{title}")
    print(frame.to_string(float_format=lambda v: f"{v:.2f}"))
    sys.stdout.flush()
