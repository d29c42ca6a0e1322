"""A file-system registry of fitted forecasters: native artifacts plus checked JSON manifests.

Layout::

    models_dir/<asset_id>/
        active.json                    the asset's champion: {"model_id", "activated_at", "reason", "by"}
        <algorithm>/<version>/
            model.txt | model.ubj | model.skops | model.safetensors | model.json ...
            manifest.json              :class:`ModelManifest`, with each file's SHA-256

A version directory is written under a temporary name and renamed into place,
and ``active.json`` is replaced atomically, so readers never see a half-written
model or pointer. Artifacts are native formats, never pickle.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import re
import shutil
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from digitaltwin.domain.errors import ConflictError
from digitaltwin.forecasting.algorithms import algorithm_class
from digitaltwin.forecasting.base import Forecaster
from digitaltwin.registry.errors import ModelIntegrityError, ModelNotFoundError
from digitaltwin.registry.manifest import ModelManifest

__all__ = ["ActiveModel", "ModelManifest", "ModelRegistry", "data_fingerprint", "parse_model_id"]

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
ACTIVE_FILE = "active.json"
#: Folder of the per-asset training locks (a dot name: never taken for an asset).
LOCKS_DIR = ".locks"
ID_SEPARATOR = "--"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_VERSION = re.compile(r"^\d{8}T\d{12}Z$")
#: Distributions whose versions a manifest records (when installed).
_LIBRARIES = ("lightgbm", "xgboost", "xgboost-cpu", "scikit-learn", "skops", "torch", "safetensors", "pandas", "numpy", "holidays", "digitaltwin")


def parse_model_id(model_id: str) -> tuple[str, str, str]:
    """Split ``<asset_id>--<algorithm>--<version>`` into its parts.

    Raises:
        ModelNotFoundError: the id is malformed (it cannot name a stored model).
    """
    parts = model_id.rsplit(ID_SEPARATOR, 2)
    if len(parts) != 3 or not all(_SAFE_NAME.fullmatch(p) for p in parts) or not _VERSION.fullmatch(parts[2]):
        raise ModelNotFoundError(model_id)
    return parts[0], parts[1], parts[2]


def data_fingerprint(y: pd.Series) -> str:
    """Hex SHA-256 of a training target: its UTC stamps (ns) and float64 values (NaN included)."""
    digest = hashlib.sha256()
    index = pd.DatetimeIndex(y.index).tz_convert("UTC")
    digest.update(index.asi8.tobytes())
    digest.update(y.to_numpy(dtype="float64").tobytes())
    return digest.hexdigest()


class ActiveModel(dict):  # type: ignore[type-arg]
    """The ``active.json`` record of an asset: ``model_id``, ``activated_at``, ``reason``, ``by``."""


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
        fingerprint: str = "",
    ) -> ModelManifest:
        """Store a fitted forecaster as a new version.

        Args:
            forecaster: a fitted forecaster.
            asset_id: asset the model forecasts; letters, digits, ``.``, ``_``, ``-``.
            training_start: tz-aware start of the training window.
            training_end: tz-aware end of the training window.
            metrics: accuracy figures to record (e.g. ``{"mae": 11.3}``), or ``None``.
            extra: other JSON-able details to record.
            fingerprint: :func:`data_fingerprint` of the training target.

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
        files, params = forecaster.to_artifact()
        for name in files:
            if Path(name).name != name or name == MANIFEST_FILE or name.startswith("."):
                raise ValueError(f"artifact file name {name!r} is not a plain file name")
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
            features=[str(f) for f in forecaster.feature_names],
            params=params,
            training_start=start,
            training_end=end,
            metrics={str(k): float(v) for k, v in (metrics or {}).items()},
            library_versions=library_versions(),
            files={name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
            created_at=now.isoformat().replace("+00:00", "Z"),
            data_fingerprint=fingerprint,
            extra=dict(extra or {}),
        )
        try:
            try:
                text = json.dumps(manifest.to_dict(), indent=2, sort_keys=True, allow_nan=False)
            except TypeError as exc:
                raise ValueError(f"manifest of {manifest.model_id} is not JSON-able: {exc}") from exc
            for name, data in files.items():
                (staging / name).write_bytes(data)
            (staging / MANIFEST_FILE).write_text(text + "\n", encoding="utf-8")
            os.replace(staging, algorithm_dir / version)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return ModelManifest.from_dict(json.loads(text))  # as load() will read it back

    @contextlib.contextmanager
    def training(self, asset_id: str) -> Iterator[None]:
        """Hold the asset's training lock (``MODELS_DIR/.locks/<asset_id>.lock``, ``flock``) meanwhile.

        One training per asset at a time, across the processes sharing ``MODELS_DIR`` on this
        host (API workers, the retraining scheduler, the CLI): a client retrying a training
        whose request timed out (504) while it still runs is told so instead of training again,
        and two trainings cannot both decide on the same champion. The lock goes with the
        process that holds it, so a crash never leaves it taken.

        Raises:
            ConflictError: naming ``asset_id`` (HTTP 409) when a training of the asset is running.
            ValueError: unsafe ``asset_id``.
        """
        _check_name(asset_id, "asset_id")
        folder = self.models_dir / LOCKS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{asset_id}.lock", "a+b") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConflictError(
                    f"a training of asset {asset_id!r} is already running; its model will appear in "
                    f"GET /api/v1/models?asset_id={asset_id} when it ends",
                    field="asset_id",
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def load(self, model_id: str) -> tuple[Forecaster, ModelManifest]:
        """Load a model after checking its artifact against the manifest's SHA-256.

        Returns:
            The fitted forecaster and its manifest.

        Raises:
            ModelNotFoundError: no model with this id (or a malformed id).
            ModelIntegrityError: unreadable manifest, artifact hash mismatch, or an artifact
                its forecaster class refuses (e.g. a skops file with untrusted types).
            UnknownAlgorithmError: the manifest names an algorithm this build lacks.
            OptionalDependencyError: the algorithm needs an extra that is not installed.
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
        files: dict[str, bytes] = {}
        for name, expected in manifest.files.items():
            artifact = directory / name
            if Path(name).name != name or not artifact.is_file():
                raise ModelIntegrityError(artifact, expected=expected, actual="", reason=f"artifact {artifact} is missing")
            data = artifact.read_bytes()
            actual = hashlib.sha256(data).hexdigest()
            if actual != expected:
                raise ModelIntegrityError(artifact, expected=expected, actual=actual)
            files[name] = data
        cls = algorithm_class(manifest.algorithm)
        try:
            forecaster = cls.from_artifact(files, manifest.params)
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelIntegrityError(
                directory, expected="", actual="", reason=f"model {model_id} does not load: {exc}"
            ) from exc
        return forecaster, manifest

    def manifest(self, model_id: str) -> ModelManifest:
        """The manifest of a stored model (not verified against its files; see :meth:`load`).

        Raises:
            ModelNotFoundError: no model with this id.
            ModelIntegrityError: unreadable manifest.
        """
        asset_id, algorithm, version = parse_model_id(model_id)
        directory = self.models_dir / asset_id / algorithm / version
        if not (directory / MANIFEST_FILE).is_file():
            raise ModelNotFoundError(model_id, directory)
        return self._read_manifest(directory)

    def activate(self, model_id: str, *, reason: str, by: str | None = None) -> ActiveModel:
        """Make ``model_id`` its asset's champion (atomically replaces ``active.json``).

        Args:
            model_id: a stored model.
            reason: why (``"first model"``, ``"beat ... on backtest"``, ``"admin"``).
            by: who (a user name) or ``None`` for the system.

        Raises:
            ModelNotFoundError: no model with this id.
        """
        manifest = self.manifest(model_id)
        record = ActiveModel(
            model_id=model_id,
            activated_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            reason=reason,
            by=by,
        )
        path = self.models_dir / manifest.asset_id / ACTIVE_FILE
        staging = path.with_name(f".{ACTIVE_FILE}.{os.getpid()}.tmp")
        staging.write_text(json.dumps(record, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(staging, path)
        return record

    def active(self, asset_id: str) -> ActiveModel | None:
        """The asset's ``active.json`` record, or ``None`` when no model was activated (or it is unreadable)."""
        _check_name(asset_id, "asset_id")
        path = self.models_dir / asset_id / ACTIVE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            parse_model_id(str(data["model_id"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, ModelNotFoundError) as exc:
            logger.warning("ignoring unreadable %s: %s", path, exc)
            return None
        return ActiveModel(data)

    def scan(self, asset_id: str) -> builtins.list[tuple[Path, ModelManifest | None, str | None]]:
        """Every version directory of the asset as ``(directory, manifest or None, error or None)``.

        Sorted by algorithm, then version (oldest first). A directory whose manifest
        cannot be read comes with ``None`` and the reason, so a caller can report it.
        """
        _check_name(asset_id, "asset_id")
        asset = self.models_dir / asset_id
        if not asset.is_dir():
            return []
        found: builtins.list[tuple[Path, ModelManifest | None, str | None]] = []
        for algorithm_dir in sorted(p for p in asset.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for directory in self._versions(algorithm_dir):
                if not (directory / MANIFEST_FILE).is_file():
                    continue
                try:
                    found.append((directory, self._read_manifest(directory), None))
                except ModelIntegrityError as exc:
                    found.append((directory, None, str(exc)))
        return found

    def assets(self) -> builtins.list[str]:
        """Asset ids with a folder in ``models_dir``."""
        if not self.models_dir.is_dir():
            return []
        return sorted(p.name for p in self.models_dir.iterdir() if p.is_dir() and _SAFE_NAME.fullmatch(p.name))

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
        return sorted(p for p in algorithm_dir.iterdir() if p.is_dir() and _VERSION.fullmatch(p.name))

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
    """Versions of python and of the installed libraries a stored model may depend on."""
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    if "torch" in versions and "torch" not in sys.modules:
        versions.pop("torch")  # installed but not used by this model
    return versions


def _check_name(value: str, field: str) -> None:
    if not isinstance(value, str) or not _SAFE_NAME.fullmatch(value) or ID_SEPARATOR in value:
        raise ValueError(f"{field} {value!r} must be letters, digits, '.', '_' or single '-', starting alphanumeric")


def _utc_iso(value: datetime | pd.Timestamp, field: str) -> str:
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        raise ValueError(f"{field} {value!r} is naive; give a tz-aware timestamp")
    return stamp.tz_convert("UTC").isoformat().replace("+00:00", "Z")
