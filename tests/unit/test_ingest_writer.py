"""The batching writer's bulk histogram update leaves a histogram as observing value by value would."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from digitaltwin.ingest.writer import observe_many

BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


def test_observe_many_equals_observing_each_value() -> None:
    rng = np.random.default_rng(7)
    values = np.concatenate([rng.exponential(0.3, 5000), [0.0, 0.01, 0.025, 1.0, 3600.0, 3600.5, 1e6]])  # bounds included
    one, many = CollectorRegistry(), CollectorRegistry()
    by_value = Histogram("lag_seconds", "lag", buckets=BUCKETS, registry=one)
    in_bulk = Histogram("lag_seconds", "lag", buckets=BUCKETS, registry=many)
    for v in values:
        by_value.observe(float(v))
    observe_many(in_bulk, values[: len(values) // 2])
    observe_many(in_bulk, values[len(values) // 2 :])
    observe_many(in_bulk, np.zeros(0))

    def samples(registry: CollectorRegistry) -> dict[str, float]:
        return {f"{s.name}{sorted(s.labels.items())}": s.value for m in registry.collect() for s in m.samples if not s.name.endswith("_created")}

    got, want = samples(many), samples(one)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert abs(got[key] - value) <= 1e-9 * max(1.0, abs(value)), key


def test_observe_many_bounds_are_inclusive() -> None:
    registry = CollectorRegistry()
    histogram = Histogram("lag_seconds", "lag", buckets=(0.01, 1.0), registry=registry)
    observe_many(histogram, np.array([0.01, 0.02, 1.0, 7.0]))
    text = generate_latest(registry)
    assert b'lag_seconds_bucket{le="0.01"} 1.0' in text
    assert b'lag_seconds_bucket{le="1.0"} 3.0' in text
    assert b'lag_seconds_bucket{le="+Inf"} 4.0' in text
    assert b"lag_seconds_sum 8.03" in text
