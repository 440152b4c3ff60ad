"""Where polyner keeps built models and caches: ``$POLYNER_HOME`` (default ~/.cache/polyner), and how a cache
entry names the files it was built from."""
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


def hash_file(digest, path: Path):
    """Feed the bytes of ``path`` to ``digest`` (a hashlib object) in 1 MiB blocks; return ``digest``."""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest
