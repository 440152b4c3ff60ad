"""polyner: small, fast named-entity recognition in 41 languages, and the tools to distil it."""
from __future__ import annotations

__version__ = "0.1.0"

from polyner.loading import load  # noqa: E402

__all__ = ["load", "__version__"]
