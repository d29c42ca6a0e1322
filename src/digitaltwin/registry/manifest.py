"""The JSON manifest stored beside every model artifact."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

#: Version of the manifest layout; bumped when fields change meaning.
#: 2: several artifact files (``files``: name -> SHA-256) and ``data_fingerprint``.
MANIFEST_SCHEMA = 2


@dataclass(frozen=True)
class ModelManifest:
    """Everything known about one stored model.

    Attributes:
        model_id: ``<asset_id>--<algorithm>--<version>``.
        version: UTC creation time ``YYYYMMDDTHHMMSSffffffZ``; sorts chronologically.
        algorithm: forecaster name (``"lightgbm"`` ...).
        asset_id: asset the model forecasts.
        horizon_steps: steps ahead the model was fitted for.
        features: feature names (empty for models without features).
        params: the forecaster's artifact params (JSON), needed to load it.
        training_start: first training interval start, ISO 8601 UTC.
        training_end: last training interval start (or end of the window), ISO 8601 UTC.
        metrics: accuracy figures (e.g. backtest ``mae`` in kWh, ``cv_rmse`` as a fraction);
            ``NaN`` is written as JSON ``null`` and read back as ``NaN``.
        library_versions: versions of python and of the libraries the model depends on.
        files: artifact file names inside the version directory -> hex SHA-256 of each
            (native formats: ``model.txt`` LightGBM text, ``model.ubj`` XGBoost UBJ,
            ``model.skops`` scikit-learn via skops, ``model.safetensors`` PyTorch weights,
            ``model.json``; ensembles prefix each member's files with ``m<i>-``).
        created_at: ISO 8601 UTC creation time.
        data_fingerprint: hex SHA-256 of the training target (UTC stamps and values), so two
            models trained on the same data can be told apart from ones trained on different data.
        extra: free JSON-able details from the caller (e.g. the champion/challenger decision).
        schema: manifest layout version.
    """

    model_id: str
    version: str
    algorithm: str
    asset_id: str
    horizon_steps: int
    features: list[str]
    params: dict[str, Any]
    training_start: str
    training_end: str
    metrics: dict[str, float]
    library_versions: dict[str, str]
    files: dict[str, str]
    created_at: str
    data_fingerprint: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    schema: int = MANIFEST_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; the training window is nested as ``{"start", "end"}``."""
        data = asdict(self)
        data["training_window"] = {"start": data.pop("training_start"), "end": data.pop("training_end")}
        data["metrics"] = {k: _json_float(v) for k, v in self.metrics.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelManifest:
        """Inverse of :meth:`to_dict`.

        Raises:
            KeyError: a required field is missing.
            ValueError: a manifest of another schema version.
        """
        schema = int(data.get("schema", 1))
        if schema != MANIFEST_SCHEMA:
            raise ValueError(f"manifest schema {schema} is not supported (expected {MANIFEST_SCHEMA}); retrain the model")
        window = data["training_window"]
        return cls(
            model_id=str(data["model_id"]),
            version=str(data["version"]),
            algorithm=str(data["algorithm"]),
            asset_id=str(data["asset_id"]),
            horizon_steps=int(data["horizon_steps"]),
            features=[str(f) for f in data.get("features", [])],
            params=dict(data["params"]),
            training_start=str(window["start"]),
            training_end=str(window["end"]),
            metrics={str(k): (math.nan if v is None else float(v)) for k, v in data.get("metrics", {}).items()},
            library_versions={str(k): str(v) for k, v in data.get("library_versions", {}).items()},
            files={str(k): str(v) for k, v in dict(data["files"]).items()},
            created_at=str(data["created_at"]),
            data_fingerprint=str(data.get("data_fingerprint", "")),
            extra=dict(data.get("extra") or {}),
            schema=schema,
        )


def _json_float(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value
