"""Ingestion: CSV import, HTTP batches (and MQTT in a later issue)."""
