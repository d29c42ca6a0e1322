"""Ingestion: CSV import, HTTP batches and the MQTT subscriber, with one batching writer."""
