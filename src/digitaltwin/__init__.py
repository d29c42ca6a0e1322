"""Digital Twin Energy: a live digital twin of energy assets."""

__version__ = "0.1.0"
