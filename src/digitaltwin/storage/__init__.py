"""Engine and session factory, tables, repositories; TimescaleDB behind a dialect check."""
