"""A file-system registry of fitted forecasters: native artifacts plus checked JSON manifests.

Layout::

    models_dir/<asset_id>/<algorithm>/<version>/
        model.txt | model.json     the artifact (native format, never pickle)
        manifest.json              :class:`ModelManifest`, with the artifact's SHA-256

A version directory is written under a temporary name and renamed into place,
so readers never see a half-written model.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import os
import platform
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import holidays
import lightgbm
import numpy
import pandas as pd

import digitaltwin
from digitaltwin.forecasting.algorithms import ALGORITHMS
from digitaltwin.forecasting.base import Forecaster
from digitaltwin.forecasting.errors import UnknownAlgorithmError
from digitaltwin.registry.errors import ModelIntegrityError, ModelNotFoundError
from digitaltwin.registry.manifest import ModelManifest

__all__ = ["ModelManifest", "ModelRegistry", "parse_model_id"]

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
ID_SEPARATOR = "--"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_VERSION = re.compile(r"^\d{8}T\d{12}Z$")


def parse_model_id(model_id: str) -> tuple[str, str, str]:
    """Split ``<asset_id>--<algorithm>--<version>`` into its parts.

    Raises:
        ModelNotFoundError: the id is malformed (it cannot name a stored model).
    """
    parts = model_id.rsplit(ID_SEPARATOR, 2)
    if len(parts) != 3 or not all(_SAFE_NAME.match(p) for p in parts) or not _VERSION.match(parts[2]):
        raise ModelNotFoundError(model_id)
    return parts[0], parts[1], parts[2]


class ModelRegistry:
    """Save, verify and load forecasters under one directory.

    Args:
        models_dir: root directory; created on first save.
    """

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = Path(models_dir)

    def save(
        self,
        forecaster: Forecaster,
        *,
        asset_id: str,
        training_start: datetime | pd.Timestamp,
        training_end: datetime | pd.Timestamp,
        metrics: dict[str, float] | None,
        extra: dict[str, Any] | None = None,
    ) -> ModelManifest:
        """Store a fitted forecaster as a new version.

        Args:
            forecaster: a fitted forecaster.
            asset_id: asset the model forecasts; letters, digits, ``.``, ``_``, ``-``.
            training_start: tz-aware start of the training window.
            training_end: tz-aware end of the training window.
            metrics: accuracy figures to record (e.g. ``{"mae": 11.3}``), or ``None``.
            extra: other JSON-able details to record.

        Returns:
            The manifest written.

        Raises:
            NotFittedError: the forecaster is not fitted.
            ValueError: unsafe ``asset_id``, naive or inverted training window,
                or ``extra``/params that are not JSON-able.
        """
        _check_name(asset_id, "asset_id")
        start, end = _utc_iso(training_start, "training_start"), _utc_iso(training_end, "training_end")
        if pd.Timestamp(start) > pd.Timestamp(end):
            raise ValueError(f"training_start {start} is after training_end {end}")
        data, params = forecaster.to_artifact()
        algorithm_dir = self.models_dir / asset_id / forecaster.name
        algorithm_dir.mkdir(parents=True, exist_ok=True)
        now = datetime.now(UTC)
        while True:  # versions are unique: bump by 1 us while the name is taken
            version = now.strftime("%Y%m%dT%H%M%S%fZ")
            staging = algorithm_dir / f".{version}.tmp"
            if not (algorithm_dir / version).exists():
                try:
                    staging.mkdir()
                    break
                except FileExistsError:
                    pass
            now += timedelta(microseconds=1)
        manifest = ModelManifest(
            model_id=ID_SEPARATOR.join((asset_id, forecaster.name, version)),
            version=version,
            algorithm=forecaster.name,
            asset_id=asset_id,
            horizon_steps=forecaster.horizon_steps,
            features=[str(f) for f in params.get("feature_names", [])],
            params=params,
            training_start=start,
            training_end=end,
            metrics={str(k): float(v) for k, v in (metrics or {}).items()},
            library_versions=library_versions(),
            artifact=forecaster.artifact_filename,
            sha256=hashlib.sha256(data).hexdigest(),
            created_at=now.isoformat().replace("+00:00", "Z"),
            extra=dict(extra or {}),
        )
        try:
            try:
                text = json.dumps(manifest.to_dict(), indent=2, sort_keys=True, allow_nan=False)
            except TypeError as exc:
                raise ValueError(f"manifest of {manifest.model_id} is not JSON-able: {exc}") from exc
            (staging / manifest.artifact).write_bytes(data)
            (staging / MANIFEST_FILE).write_text(text + "\n", encoding="utf-8")
            os.replace(staging, algorithm_dir / version)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return ModelManifest.from_dict(json.loads(text))  # as load() will read it back

    def load(self, model_id: str) -> tuple[Forecaster, ModelManifest]:
        """Load a model after checking its artifact against the manifest's SHA-256.

        Returns:
            The fitted forecaster and its manifest.

        Raises:
            ModelNotFoundError: no model with this id (or a malformed id).
            ModelIntegrityError: unreadable manifest, or artifact hash mismatch.
            UnknownAlgorithmError: the manifest names an algorithm this build lacks.
        """
        asset_id, algorithm, version = parse_model_id(model_id)
        directory = self.models_dir / asset_id / algorithm / version
        if not (directory / MANIFEST_FILE).is_file():
            raise ModelNotFoundError(model_id, directory)
        manifest = self._read_manifest(directory)
        if manifest.model_id != model_id:
            raise ModelIntegrityError(
                directory / MANIFEST_FILE,
                expected="",
                actual="",
                reason=f"manifest in {directory} names {manifest.model_id!r}",
            )
        artifact = directory / manifest.artifact
        if Path(manifest.artifact).name != manifest.artifact or not artifact.is_file():
            raise ModelIntegrityError(
                artifact, expected=manifest.sha256, actual="", reason=f"artifact {artifact} is missing"
            )
        data = artifact.read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != manifest.sha256:
            raise ModelIntegrityError(artifact, expected=manifest.sha256, actual=actual)
        cls = ALGORITHMS.get(manifest.algorithm)
        if cls is None:
            raise UnknownAlgorithmError(manifest.algorithm, sorted(ALGORITHMS))
        return cls.from_artifact(data, manifest.params), manifest

    def latest(self, asset_id: str, algorithm: str) -> ModelManifest | None:
        """Manifest of the newest version of ``algorithm`` for ``asset_id``, or ``None``."""
        _check_name(asset_id, "asset_id")
        versions = self._versions(self.models_dir / asset_id / algorithm)
        for directory in reversed(versions):
            manifest = self._try_read(directory)
            if manifest is not None:
                return manifest
        return None

    def list(self, asset_id: str | None = None) -> builtins.list[ModelManifest]:
        """Manifests of all stored models (of one asset when given), sorted by asset, algorithm, version.

        Unreadable manifests are skipped with a warning.
        """
        if not self.models_dir.is_dir():
            return []
        if asset_id is not None:
            _check_name(asset_id, "asset_id")
            assets = [self.models_dir / asset_id]
        else:
            assets = sorted(p for p in self.models_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        found: builtins.list[ModelManifest] = []
        for asset in assets:
            if not asset.is_dir():
                continue
            for algorithm_dir in sorted(p for p in asset.iterdir() if p.is_dir()):
                for directory in self._versions(algorithm_dir):
                    manifest = self._try_read(directory)
                    if manifest is not None:
                        found.append(manifest)
        return found

    # ----------------------------------------------------------------- helpers
    @staticmethod
    def _versions(algorithm_dir: Path) -> builtins.list[Path]:
        if not algorithm_dir.is_dir():
            return []
        return sorted(p for p in algorithm_dir.iterdir() if p.is_dir() and _VERSION.match(p.name))

    @staticmethod
    def _read_manifest(directory: Path) -> ModelManifest:
        path = directory / MANIFEST_FILE
        try:
            return ModelManifest.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelIntegrityError(
                path, expected="", actual="", reason=f"manifest {path} is unreadable: {exc}"
            ) from exc

    def _try_read(self, directory: Path) -> ModelManifest | None:
        if not (directory / MANIFEST_FILE).is_file():
            return None
        try:
            return self._read_manifest(directory)
        except ModelIntegrityError as exc:
            logger.warning("skipping model in %s: %s", directory, exc)
            return None


def library_versions() -> dict[str, str]:
    """Versions of the libraries a stored model depends on."""
    return {
        "python": platform.python_version(),
        "lightgbm": lightgbm.__version__,
        "pandas": pd.__version__,
        "numpy": numpy.__version__,
        "holidays": holidays.__version__,
        "digitaltwin": digitaltwin.__version__,
    }


def _check_name(value: str, field: str) -> None:
    if not isinstance(value, str) or not _SAFE_NAME.match(value) or ID_SEPARATOR in value:
        raise ValueError(f"{field} {value!r} must be letters, digits, '.', '_' or single '-', starting alphanumeric")


def _utc_iso(value: datetime | pd.Timestamp, field: str) -> str:
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        raise ValueError(f"{field} {value!r} is naive; give a tz-aware timestamp")
    return stamp.tz_convert("UTC").isoformat().replace("+00:00", "Z")
