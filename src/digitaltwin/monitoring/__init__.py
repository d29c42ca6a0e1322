"""Monitoring: anomaly detections, alarms and forecast skill (pure: no storage, no I/O)."""
