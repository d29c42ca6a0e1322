"""Model artifacts and manifests: saving, verification and loading."""

from digitaltwin.registry.errors import ModelIntegrityError, ModelNotFoundError, RegistryError
from digitaltwin.registry.manifest import ModelManifest
from digitaltwin.registry.store import ModelRegistry

__all__ = ["ModelIntegrityError", "ModelManifest", "ModelNotFoundError", "ModelRegistry", "RegistryError"]
