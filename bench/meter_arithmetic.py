"""Time of the counter arithmetic on a year of 15-minute register reads (35,040 readings).

Prints milliseconds per call of :func:`digitaltwin.analytics.meter.counter_arithmetic` on a clean
register, on one with faults (glitches, a wrap, spikes) and with a power limit, and the ratio to
``np.diff`` (the floor: increases without any policy). Run: ``.venv/bin/python bench/meter_arithmetic.py``.
"""

from __future__ import annotations

import time

import numpy as np

from digitaltwin.analytics.meter import CounterRules, counter_arithmetic

N = 35_040


def best_ms(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def main() -> None:
    rng = np.random.default_rng(1)
    ts = np.arange(N) * 900.0
    clean = 10_000.0 + np.cumsum(rng.uniform(0, 10, N))
    faulty = clean.copy()
    faulty[rng.choice(N, 50, replace=False)] = 0.0  # glitches
    faulty[rng.choice(N, 10, replace=False)] *= 100  # spikes
    wrapped = np.mod(clean, 99_999.9)
    floor = best_ms(lambda: np.maximum(np.diff(clean), 0))
    for name, values, rules in (
        ("clean", clean, None),
        ("glitches+spikes, 40 kW limit", faulty, CounterRules(power_limit_kw=40.0)),
        ("wrapping, modulus 99999.9 kWh", wrapped, CounterRules(modulus_kwh=99_999.9)),
    ):
        ms = best_ms(lambda v=values, r=rules: counter_arithmetic(ts, v, r))
        print(f"{name:32s} {ms:8.2f} ms  ({ms / floor:6.0f} x np.diff at {floor:.3f} ms)")


if __name__ == "__main__":
    main()
