"""The operator dashboard: static pages served by the product under ``/``, reading only the public API."""
