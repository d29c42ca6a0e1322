"""Use cases that tie domain, analytics, forecasting and storage together."""
