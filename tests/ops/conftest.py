"""The API's fixtures (``client``: an app on SQLite and on PostgreSQL) for the metrics contract test."""

from tests.api.conftest import *  # noqa: F403  (re-exported fixtures)
