"""Where polyner keeps built models and caches: ``$POLYNER_HOME`` (default ~/.cache/polyner)."""
from __future__ import annotations

import os
from pathlib import Path


def polyner_home() -> Path:
    """The user cache directory, created on first use."""
    home = Path(os.environ.get("POLYNER_HOME") or Path.home() / ".cache" / "polyner").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def cache_dir(*parts: str) -> Path:
    """A sub-directory of the polyner home, created on first use."""
    path = polyner_home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
