"""Stored backtest results: a JSON summary, the forecasts as CSV and a PNG plot per backtest.

Layout::

    backtests_dir/<backtest_id>/
        summary.json     :class:`BacktestRecord`
        forecasts.csv    one row per (origin, ts, algorithm): actual, predicted, quantiles (UTC ISO stamps)
        plot.png         actual against forecast with the 10-90 % interval
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from digitaltwin.forecasting.backtest import BacktestResult
from digitaltwin.registry.errors import RegistryError

SUMMARY_FILE = "summary.json"
FORECASTS_FILE = "forecasts.csv"
PLOT_FILE = "plot.png"
_ID = re.compile(r"^bt-\d{8}T\d{6}Z-[0-9a-f]{8}$")


class BacktestNotFoundError(RegistryError):
    """No stored backtest has this id."""

    def __init__(self, backtest_id: str) -> None:
        super().__init__(f"backtest {backtest_id!r} not found")
        self.backtest_id = backtest_id


@dataclass(frozen=True)
class BacktestRecord:
    """Summary of a stored backtest.

    Attributes:
        backtest_id: ``bt-<UTC stamp>-<8 hex>``.
        asset_id: the asset.
        algorithms: algorithms compared.
        horizon_steps: steps per origin; ``interval_seconds`` the grid step.
        origins: UTC ISO stamps of the scored origins; ``skipped`` maps left-out origins to the reason.
        retrain_every: origins between refits.
        levels: quantile levels.
        metrics: algorithm -> metric -> value (``None`` where undefined); units as in
            :class:`~digitaltwin.forecasting.backtest.BacktestResult`.
        created_at: ISO 8601 UTC.
        purpose: ``"backtest"`` or ``"champion/challenger"``.
        extra: free JSON details (e.g. the promotion decision).
    """

    backtest_id: str
    asset_id: str
    algorithms: list[str]
    horizon_steps: int
    interval_seconds: int
    origins: list[str]
    skipped: dict[str, str]
    retrain_every: int
    levels: list[float]
    metrics: dict[str, dict[str, float | None]]
    created_at: str
    purpose: str = "backtest"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BacktestStore:
    """Save and read backtests under one directory.

    Args:
        directory: root; created on first save.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def save(
        self,
        result: BacktestResult,
        *,
        asset_id: str,
        horizon_steps: int,
        interval_seconds: int,
        retrain_every: int,
        png: bytes | None,
        purpose: str = "backtest",
        extra: dict[str, Any] | None = None,
    ) -> BacktestRecord:
        """Store a backtest and return its record."""
        now = datetime.now(UTC)
        backtest_id = f"bt-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
        metrics = {
            str(name): {str(k): _json_float(v) for k, v in row.items()} for name, row in result.metrics.iterrows()
        }
        origins = sorted({_iso(o) for o in result.forecasts["origin"]}) if not result.forecasts.empty else []
        record = BacktestRecord(
            backtest_id=backtest_id,
            asset_id=asset_id,
            algorithms=[str(a) for a in result.metrics.index],
            horizon_steps=horizon_steps,
            interval_seconds=interval_seconds,
            origins=origins,
            skipped={_iso(k): v for k, v in result.skip_reasons.items()},
            retrain_every=retrain_every,
            levels=list(result.levels),
            metrics=metrics,
            created_at=now.isoformat().replace("+00:00", "Z"),
            purpose=purpose,
            extra=dict(extra or {}),
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        staging = self.directory / f".{backtest_id}.tmp"
        staging.mkdir()
        try:
            (staging / SUMMARY_FILE).write_text(json.dumps(record.to_dict(), indent=2, allow_nan=False), encoding="utf-8")
            frame = result.forecasts.copy()
            for column in ("origin", "ts"):
                if not frame.empty:
                    frame[column] = [_iso(v) for v in frame[column]]
            frame.to_csv(staging / FORECASTS_FILE, index=False)
            if png is not None:
                (staging / PLOT_FILE).write_bytes(png)
            os.replace(staging, self.directory / backtest_id)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return record

    def get(self, backtest_id: str) -> BacktestRecord:
        """The record of a stored backtest.

        Raises:
            BacktestNotFoundError: unknown or malformed id.
        """
        path = self._dir(backtest_id) / SUMMARY_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise BacktestNotFoundError(backtest_id) from None
        return BacktestRecord(**data)

    def plot(self, backtest_id: str) -> bytes:
        """PNG bytes of the backtest's plot.

        Raises:
            BacktestNotFoundError: unknown id or no plot stored.
        """
        try:
            return (self._dir(backtest_id) / PLOT_FILE).read_bytes()
        except OSError:
            raise BacktestNotFoundError(backtest_id) from None

    def forecasts_csv(self, backtest_id: str) -> bytes:
        """The forecasts table as CSV bytes.

        Raises:
            BacktestNotFoundError: unknown id.
        """
        try:
            return (self._dir(backtest_id) / FORECASTS_FILE).read_bytes()
        except OSError:
            raise BacktestNotFoundError(backtest_id) from None

    def _dir(self, backtest_id: str) -> Path:
        if not _ID.fullmatch(backtest_id):
            raise BacktestNotFoundError(backtest_id)
        return self.directory / backtest_id


def _iso(value: Any) -> str:
    import pandas as pd

    return pd.Timestamp(value).tz_convert("UTC").isoformat().replace("+00:00", "Z")


def _json_float(value: Any) -> float | None:
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value
