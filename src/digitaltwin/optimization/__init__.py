"""Scheduling of flexible assets (batteries, deferrable loads, curtailable PV) under a tariff, solved with HiGHS."""
