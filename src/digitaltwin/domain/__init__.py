"""Pure domain types: assets, readings, quantities and units, errors. No I/O."""
