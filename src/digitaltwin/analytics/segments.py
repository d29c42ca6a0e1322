"""Segments: energy spread evenly over half-open time spans, the common form of every series kind."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Segments:
    """Energy spread over time spans; arrays of equal length, sorted by ``start_s``.

    Attributes:
        start_s, end_s: span bounds in epoch seconds, ``end_s > start_s``.
        energy_kwh: energy of each span in kWh.
    """

    start_s: np.ndarray
    end_s: np.ndarray
    energy_kwh: np.ndarray

    @property
    def mean_power_kw(self) -> np.ndarray:
        return self.energy_kwh / ((self.end_s - self.start_s) / 3600.0)

    def take(self, keep: np.ndarray) -> Segments:
        """The segments where the boolean mask ``keep`` is true."""
        return Segments(self.start_s[keep], self.end_s[keep], self.energy_kwh[keep])


def empty_segments() -> Segments:
    """No segment at all."""
    empty = np.empty(0, dtype=np.float64)
    return Segments(empty, empty, empty)
