"""Energy accounting: CO2, KPIs and the metering tree (pure computations, no I/O)."""
