"""The optional parts of polyner (pip extras) and the one-line error when one is missing.

The core install tags text with the shipped default, an ONNX model run by onnxruntime: no torch.
Training, export, spaCy, the HTTP service and Ray each come with an extra (pyproject.toml); a feature
whose extra is not installed fails at once with ``polyner distill needs: pip install "/path/to/polyner[train]"``
(the folder it was installed from: the ``polyner`` on PyPI is another project).
"""
from __future__ import annotations

import importlib.util
import json

from polyner.errors import UserError

#: The modules each extra installs that polyner imports (checked without importing them).
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "train": ("torch", "transformers", "datasets", "seqeval", "safetensors", "yaml", "onnx"),
    "export": ("torch", "transformers", "safetensors", "onnx"),
    "spacy": ("spacy",),
    "serve": ("fastapi", "uvicorn"),
    "ray": ("ray",),
}


class MissingExtraError(UserError, ImportError):
    """A feature needs an extra that is not installed; the message says what to install."""


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (found on the path; not imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a half-installed module
        return False


def missing_extras(*extras: str) -> list[str]:
    """The extras among ``extras`` with a module that is not installed."""
    unknown = [e for e in extras if e not in EXTRA_MODULES]
    if unknown:
        raise ValueError(f"unknown extras {unknown}: expected some of {sorted(EXTRA_MODULES)}")
    return [e for e in extras if not all(installed(m) for m in EXTRA_MODULES[e])]


def install_source() -> tuple[str, bool]:
    """Where this polyner was installed from, as pip takes it again, and whether editably: the source folder pip
    recorded (``direct_url.json``) while it exists, else ``.`` (the checkout; the ``polyner`` on PyPI is another
    project, so a bare name would install that)."""
    from importlib.metadata import distributions
    from pathlib import Path
    from urllib.parse import unquote, urlparse

    for dist in distributions(name="polyner"):
        try:
            record = json.loads(dist.read_text("direct_url.json") or "{}")
        except ValueError:
            continue
        url = urlparse(record.get("url", ""))
        if url.scheme == "file" and Path(unquote(url.path)).is_dir():
            return unquote(url.path), bool(record.get("dir_info", {}).get("editable"))
    return ".", False


def install_hint(what: str, extras: list[str] | tuple[str, ...]) -> str:
    """``WHAT needs: pip install "/path/to/polyner[a,b]"`` (``-e`` for an editable install; ``.[a,b]`` from the
    checkout when the source folder is unknown)."""
    source, editable = install_source()
    hint = f'{what} needs: pip install {"-e " if editable else ""}"{source}[{",".join(extras)}]"'
    return hint + (" (in the polyner checkout)" if source == "." else "")


def require_extras(what: str, *extras: str) -> None:
    """Raise :class:`MissingExtraError` naming the missing extras of ``what`` (e.g. "polyner distill")."""
    missing = missing_extras(*extras)
    if missing:
        raise MissingExtraError(install_hint(what, missing))
