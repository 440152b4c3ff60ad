"""Where task data comes from: the Hugging Face hub through ``datasets`` when it is reachable, else local
files (``--data DIR``, or the shared copies in ../shared/data). The hub check fails fast when offline."""
from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Callable, TypeVar
from urllib.parse import urlparse

logger = logging.getLogger(__name__)
T = TypeVar("T")
OFFLINE_VARIABLES = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
REPO_ROOT = Path(__file__).resolve().parents[2]


def hub_reachable(timeout: float = 2.0) -> bool:
    """False when an offline variable is set or the hub endpoint does not answer a TCP connect in ``timeout`` s."""
    for name in OFFLINE_VARIABLES:
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError as exc:
        logger.info("the hub (%s) is not reachable: %s", host, exc)
        return False


def shared_data_dir(name: str) -> Path | None:
    """The local copy ``shared/data/NAME`` next to the working directory or to the repository, if any."""
    candidates = [Path.cwd() / ".." / "shared" / "data" / name, Path.cwd() / "shared" / "data" / name,
                  REPO_ROOT.parent / "shared" / "data" / name]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    return None


def load_with_fallback(hub: Callable[[], T], local: Callable[[Path], T], data_dir: str | Path | None,
                       shared_name: str, use_hub: bool = True) -> tuple[T, str]:
    """``local(data_dir)`` when a directory is given; else ``hub()`` if reachable, falling back to the shared copy.

    Returns the data and a description of where it came from.
    """
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"data directory not found: {folder}")
        return local(folder), str(folder)
    hub_error = "hub not tried"
    if use_hub and hub_reachable():
        try:
            return hub(), "hub"
        except Exception as exc:  # any datasets/network failure: fall back to the local copy
            hub_error = f"hub failed: {exc}"
            logger.warning("loading from the hub failed (%s); trying the local copy", exc)
    elif use_hub:
        hub_error = "hub not reachable"
    folder = shared_data_dir(shared_name)
    if folder is None:
        raise FileNotFoundError(f"{shared_name}: {hub_error}, and no local copy in ../shared/data/{shared_name}; "
                                f"pass --data DIR")
    return local(folder), str(folder)
