"""polyner: small, fast named-entity recognition in 41 languages, and the tools to distil it."""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["ModelSpec", "load", "__version__"]


def __getattr__(name: str):
    """``polyner.load`` and ``polyner.ModelSpec``, imported on first use: ``import polyner`` (and every
    ``polyner`` command) stays light until a model is loaded."""
    if name in ("load", "ModelSpec"):
        from polyner import spec

        return getattr(spec, name)
    raise AttributeError(f"module 'polyner' has no attribute {name!r}")
