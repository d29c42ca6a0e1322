"""ASGI entry point for multi-worker servers: ``uvicorn digitaltwin.api.asgi:app --workers N``.

Each worker process imports this module, so it configures the log files itself (the
parent's logging configuration does not reach spawned workers).
"""

from digitaltwin.api.app import create_app
from digitaltwin.config import Settings
from digitaltwin.observability.logs import configure_logging, secret_values

_settings = Settings()
configure_logging(_settings.log_dir, level=_settings.log_level, secrets=secret_values(_settings))
app = create_app(_settings)
