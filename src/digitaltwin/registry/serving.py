"""The models being served, loaded from ``MODELS_DIR`` and reloaded when its files change.

For each asset and algorithm one model serves: the asset's champion (its
``active.json``) when it is of that algorithm, else the newest version of the
algorithm (a newer version of the champion's algorithm is loaded too, on
standby, so it is verified and activates at once). :meth:`ModelServer.reload`
loads what changed, including files changed in place; a model that fails to
load (bad checksum, unreadable manifest, refused artifact) is recorded in
:attr:`ModelServer.failures` and reported to ``on_failure``, and the model that
served before keeps serving. Only a failing *champion* makes the service not ready
(:meth:`ModelServer.champion_failures`, used by ``/readyz``). :meth:`ModelServer.watch` runs ``reload`` whenever
files change under ``MODELS_DIR`` (the guide's "place models in models/"), so a
model copied in or trained by another process serves without a restart.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from digitaltwin.forecasting.base import Forecaster
from digitaltwin.registry.manifest import ModelManifest
from digitaltwin.registry.store import MANIFEST_FILE, ModelRegistry, parse_model_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    """A loaded model and its manifest."""

    model: Forecaster
    manifest: ModelManifest
    mtime: float = 0.0


class ModelServer:
    """Loaded models by (asset, algorithm), with load failures kept visible.

    Args:
        registry: the model store.
        on_failure: called with ``(model_id, reason)`` for each failed load attempt.
        on_reload: called with ``(loaded, failed)`` counts after each reload.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        on_failure: Callable[[str, str], None] | None = None,
        on_reload: Callable[[int, int], None] | None = None,
    ) -> None:
        self.registry = registry
        self._on_failure = on_failure
        self._on_reload = on_reload
        self._serving: dict[tuple[str, str], Served] = {}
        self._standby: dict[tuple[str, str], Served] = {}
        self._champions: dict[str, str] = {}
        self._failures: dict[str, str] = {}
        self._attempted: dict[str, float] = {}  # failed model_id -> manifest mtime of the failed attempt
        self._lock = threading.RLock()
        self.reloads = 0

    # ------------------------------------------------------------------ read
    def get(self, asset_id: str, algorithm: str) -> Served | None:
        """The model serving ``algorithm`` for the asset, or ``None``."""
        return self._serving.get((asset_id, algorithm))

    def champion(self, asset_id: str) -> Served | None:
        """The asset's best model: its champion when one is active and loaded, else the
        served model with the lowest holdout MAE (newest on ties), else ``None``."""
        model_id = self._champions.get(asset_id)
        if model_id is not None:
            _, algorithm, _ = parse_model_id(model_id)
            served = self._serving.get((asset_id, algorithm))
            if served is not None and served.manifest.model_id == model_id:
                return served
        candidates = [s for (asset, _), s in self._serving.items() if asset == asset_id]
        if not candidates:
            return None

        def key(s: Served) -> tuple[float, str]:
            mae = s.manifest.metrics.get("mae", math.nan)
            return (mae if math.isfinite(mae) else math.inf, "".join(chr(0x10FFFF - ord(c)) for c in s.manifest.version))

        return min(candidates, key=key)

    def champion_id(self, asset_id: str) -> str | None:
        """The model id in the asset's ``active.json`` as last reloaded."""
        return self._champions.get(asset_id)

    @property
    def failures(self) -> dict[str, str]:
        """Current load failures: model id (or manifest path) -> reason."""
        with self._lock:
            return dict(self._failures)

    def champion_failures(self) -> dict[str, str]:
        """The load failures of models that are an asset's champion (``active.json``): model id -> reason.

        These make the service not ready (``/readyz``): the champion is what ``algorithm=best``
        (the default forecast) serves, so it must load. A failing version that is not a
        champion (a corrupt copy, a never-activated challenger) is only reported.
        """
        with self._lock:
            failures, champions = dict(self._failures), dict(self._champions)
        out: dict[str, str] = {}
        for model_id in champions.values():
            asset_id, algorithm, version = parse_model_id(model_id)
            directory = str(self.registry.models_dir / asset_id / algorithm / version)
            for key in (model_id, directory, f"{directory}/{MANIFEST_FILE}"):
                if key in failures:
                    out[model_id] = failures[key]
        return out

    @property
    def loaded(self) -> list[Served]:
        with self._lock:
            return list(self._serving.values())

    # ---------------------------------------------------------------- reload
    def reload(self) -> None:
        """Bring the served models in line with ``MODELS_DIR``; never raises for a bad model."""
        with self._lock:
            wanted: dict[tuple[str, str], ModelManifest] = {}
            standby: dict[tuple[str, str], ModelManifest] = {}  # newer than a pinned champion: verified, kept ready
            failures: dict[str, str] = {}
            champions: dict[str, str] = {}
            for asset_id in self.registry.assets():
                record = self.registry.active(asset_id)
                if record is not None:
                    champions[asset_id] = str(record["model_id"])
                newest: dict[str, ModelManifest] = {}
                pinned: ModelManifest | None = None
                for path, manifest, error in self.registry.scan(asset_id):
                    if manifest is None:
                        failures[str(path)] = error or "unreadable manifest"
                        continue
                    newest[manifest.algorithm] = manifest  # scan is sorted by version
                    if manifest.model_id == champions.get(asset_id):
                        pinned = manifest
                if pinned is not None and newest[pinned.algorithm].model_id != pinned.model_id:
                    standby[(asset_id, pinned.algorithm)] = newest[pinned.algorithm]
                    newest[pinned.algorithm] = pinned
                for algorithm, manifest in newest.items():
                    wanted[(asset_id, algorithm)] = manifest
            serving = dict(self._serving)
            for key, manifest in wanted.items():
                current = serving.get(key)
                if current is not None and current.manifest.model_id == manifest.model_id:
                    if current.mtime == self._mtime(manifest):
                        continue  # unchanged on disk
                    # changed in place: verify again; on failure the loaded copy keeps serving
                loaded = self._load(manifest, failures)
                if loaded is not None:
                    serving[key] = loaded
            for key in [k for k in serving if k not in wanted and not self._dir_exists(serving[k].manifest)]:
                del serving[key]  # its files were removed
            ready = dict(self._standby)
            for key, manifest in standby.items():
                current = ready.get(key)
                if current is None or current.manifest.model_id != manifest.model_id or current.mtime != self._mtime(manifest):
                    loaded = self._load(manifest, failures)
                    if loaded is not None:
                        ready[key] = loaded
            self._standby = {k: v for k, v in ready.items() if k in standby and v.manifest.model_id == standby[k].model_id}
            self._serving = serving
            self._champions = champions
            self._failures = failures
            self.reloads += 1
            loaded_count, failed_count = len(serving), len(failures)
        if self._on_reload is not None:
            self._on_reload(loaded_count, failed_count)

    def _load(self, manifest: ModelManifest, failures: dict[str, str]) -> Served | None:
        model_id = manifest.model_id
        mtime = self._mtime(manifest)
        try:
            model, read = self.registry.load(model_id)
        except Exception as exc:  # noqa: BLE001 - any load failure is reported, never raised
            reason = f"{type(exc).__name__}: {exc}"[:500]
            failures[model_id] = reason
            if self._attempted.get(model_id) != mtime:
                self._attempted[model_id] = mtime
                logger.error("model %s failed to load: %s", model_id, reason)
                if self._on_failure is not None:
                    self._on_failure(model_id, reason)
            return None
        self._attempted.pop(model_id, None)
        logger.info("serving model %s", model_id)
        return Served(model, read, mtime)

    def _dir(self, manifest: ModelManifest) -> Path:
        return self.registry.models_dir / manifest.asset_id / manifest.algorithm / manifest.version

    def _dir_exists(self, manifest: ModelManifest) -> bool:
        return (self._dir(manifest) / MANIFEST_FILE).is_file()

    def _mtime(self, manifest: ModelManifest) -> float:
        try:
            return max(p.stat().st_mtime_ns for p in self._dir(manifest).iterdir()) / 1e9
        except (OSError, ValueError):
            return 0.0

    # ----------------------------------------------------------------- watch
    def watch(self, stop: threading.Event) -> None:
        """Reload whenever files change under ``MODELS_DIR`` until ``stop`` is set (run in a thread).

        Uses ``watchfiles`` (inotify on Linux); the directory is created when missing.
        """
        from watchfiles import watch

        self.registry.models_dir.mkdir(parents=True, exist_ok=True)
        for _changes in watch(self.registry.models_dir, stop_event=stop, debounce=200, step=50, rust_timeout=500):
            try:
                self.reload()
            except Exception:  # noqa: BLE001 - the watcher must survive anything
                logger.exception("model reload failed")

    def start_watching(self) -> tuple[threading.Thread, threading.Event]:
        """Start :meth:`watch` in a daemon thread; set the returned event to stop it."""
        stop = threading.Event()
        thread = threading.Thread(target=self.watch, args=(stop,), name="models-watch", daemon=True)
        thread.start()
        return thread, stop
