"""Energy from power, interval energy or counters; time buckets in site time."""
