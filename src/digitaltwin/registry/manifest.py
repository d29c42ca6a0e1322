"""The JSON manifest stored beside every model artifact."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

#: Version of the manifest layout; bumped when fields change meaning.
MANIFEST_SCHEMA = 1


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
        library_versions: versions of python, lightgbm, pandas, numpy, holidays, digitaltwin.
        artifact: file name of the model inside the version directory.
        sha256: hex SHA-256 of the artifact file.
        created_at: ISO 8601 UTC creation time.
        extra: free JSON-able details from the caller.
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
    artifact: str
    sha256: str
    created_at: str
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
        """
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
            artifact=str(data["artifact"]),
            sha256=str(data["sha256"]),
            created_at=str(data["created_at"]),
            extra=dict(data.get("extra") or {}),
            schema=int(data.get("schema", MANIFEST_SCHEMA)),
        )


def _json_float(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value
