"""Split-conformal calibration of forecast intervals.

A model is fitted on the history before a holdout, predicts the holdout from
several origins, and the residuals ``actual - predicted`` give the quantiles
added to later point forecasts (split conformal prediction: Vovk, Gammerman and
Shafer, "Algorithmic Learning in a Random World", 2005; Lei et al., "Distribution-
Free Predictive Inference for Regression", JASA 2018). Residuals are grouped
in :data:`BINS` bins of the predicted value (Mondrian conformal prediction), so
intervals are narrow where the load is low and wide where it is high.

The residual quantiles are centred on their median: the served model is refitted
on the latest data, so the bias the holdout model showed (it was fitted weeks
earlier, and loads drift) is not carried over; the holdout gives the interval's
width and shape, the point forecast its location.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Levels stored per bin; a requested level is interpolated between them.
GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)
#: Mondrian bins by predicted value (terciles of the holdout predictions).
BINS = 3
#: Fewest residuals for a calibration to be kept (fewer: quantiles unavailable).
MIN_RESIDUALS = 24
#: Bounds of a quantile level that can be asked for.
LEVEL_MIN, LEVEL_MAX = float(GRID[0]), float(GRID[-1])


def holdout_plan(horizon_steps: int, samples_per_day: int) -> tuple[int, int]:
    """Number of holdout origins and their spacing (steps) for a horizon.

    About 2,000 holdout residuals, at most 96 origins spread over one to four
    weeks: day-ahead on 15-min data gives 21 daily origins; one step ahead gives
    96 origins a 7th of a day apart.

    Returns:
        ``(origins, spacing_steps)``; spacing >= ``horizon_steps``, so predictions do not overlap.
    """
    week = 7 * samples_per_day
    n = max(1, min(96, math.ceil(2000 / horizon_steps), (4 * week) // horizon_steps))
    return n, max(horizon_steps, week // n)


@dataclass(frozen=True)
class Calibration:
    """Residual quantiles per bin of the predicted value.

    Attributes:
        edges: ``BINS - 1`` increasing bin edges in the target unit.
        residuals: ``BINS`` rows of ``len(GRID)`` residual quantiles (``actual - predicted``).
        n: residuals the calibration was computed from.
    """

    edges: tuple[float, ...]
    residuals: tuple[tuple[float, ...], ...]
    n: int

    @classmethod
    def from_residuals(cls, predicted: np.ndarray, actual: np.ndarray) -> Calibration | None:
        """Calibrate on holdout pairs; ``None`` with fewer than :data:`MIN_RESIDUALS` valid pairs."""
        predicted = np.asarray(predicted, dtype=float).ravel()
        actual = np.asarray(actual, dtype=float).ravel()
        keep = np.isfinite(predicted) & np.isfinite(actual)
        predicted, actual = predicted[keep], actual[keep]
        if predicted.size < MIN_RESIDUALS:
            return None
        residual = actual - predicted
        bins = BINS if predicted.size >= BINS * MIN_RESIDUALS else 1
        edges = np.quantile(predicted, np.arange(1, bins) / bins) if bins > 1 else np.array([])
        which = np.searchsorted(edges, predicted, side="right")
        rows = []
        for b in range(bins):
            part = residual[which == b]
            if part.size < MIN_RESIDUALS // 2:
                part = residual
            table = np.quantile(part, GRID)
            rows.append(tuple(float(v) for v in table - np.median(part)))
        return cls(tuple(float(e) for e in edges), tuple(rows), int(predicted.size))

    def quantiles(self, point: np.ndarray, levels: list[float]) -> np.ndarray:
        """Quantile forecasts: ``point`` plus the residual quantile of its bin.

        Args:
            point: point forecasts, shape ``(steps,)``.
            levels: increasing levels in ``[0.01, 0.99]``.

        Returns:
            Array ``(steps, len(levels))``, non-decreasing along the levels.
        """
        point = np.asarray(point, dtype=float)
        table = np.asarray(self.residuals)
        which = np.searchsorted(np.asarray(self.edges), point, side="right")
        out = np.empty((point.size, len(levels)))
        for j, level in enumerate(levels):
            per_bin = np.array([np.interp(level, GRID, row) for row in table])
            out[:, j] = point + per_bin[which]
        return np.maximum.accumulate(out, axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {"edges": list(self.edges), "residuals": [list(r) for r in self.residuals], "n": self.n}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Calibration | None:
        if not data:
            return None
        return cls(
            tuple(float(e) for e in data["edges"]),
            tuple(tuple(float(v) for v in row) for row in data["residuals"]),
            int(data["n"]),
        )
