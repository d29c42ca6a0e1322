"""Energy accounting: tariffs (URDB and native forms), bills with line items, CO2, KPIs and the metering tree."""
