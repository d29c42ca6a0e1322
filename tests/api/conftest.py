"""An app on the parametrised backend, served in-process by Starlette's TestClient."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from digitaltwin.api.app import create_app
from digitaltwin.config import Settings
from digitaltwin.storage.repository import Repository


@pytest.fixture
def client(settings: Settings, repo: Repository) -> Iterator[TestClient]:
    """A client of an app on the same (migrated, emptied) database as ``repo``."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client
