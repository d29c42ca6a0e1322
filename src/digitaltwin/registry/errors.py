"""Typed errors of the model registry."""

from __future__ import annotations

from pathlib import Path


class RegistryError(Exception):
    """Base of every error raised on purpose by :mod:`digitaltwin.registry`."""


class ModelNotFoundError(RegistryError):
    """No stored model has this id.

    Args:
        model_id: the id asked for (``<asset_id>--<algorithm>--<version>``).
        path: directory where the model was looked for, when the id was well-formed. Kept on
            the exception for logs only: the message (which API clients see) never names a
            server path.
    """

    def __init__(self, model_id: str, path: Path | None = None) -> None:
        super().__init__(f"model {model_id!r} not found")
        self.model_id = model_id
        self.path = path


class ModelIntegrityError(RegistryError):
    """A stored artifact whose SHA-256 differs from its manifest, or an unreadable manifest.

    Args:
        path: the artifact (or manifest) file.
        expected: SHA-256 hex digest recorded in the manifest ("" if unknown).
        actual: SHA-256 hex digest of the file as read ("" if unknown).
        reason: override of the default message.
    """

    def __init__(self, path: Path, *, expected: str, actual: str, reason: str | None = None) -> None:
        super().__init__(reason or f"artifact {path} fails its checksum: expected sha256 {expected}, got {actual}")
        self.path = path
        self.expected = expected
        self.actual = actual
