"""Energy accounting: tariffs (URDB and native forms) and bills with line items."""
