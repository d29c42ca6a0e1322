"""ASGI entry point for multi-worker servers: ``uvicorn digitaltwin.api.asgi:app --workers N``."""

from digitaltwin.api.app import create_app
from digitaltwin.config import Settings

app = create_app(Settings())
