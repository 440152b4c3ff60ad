"""The optional parts of polyner (pip extras) and the one-line error when one is missing.

The core install tags text with the shipped default, an ONNX model run by onnxruntime: no torch.
Training, export, spaCy, the HTTP service and Ray each come with an extra (pyproject.toml); a feature
whose extra is not installed fails at once with ``polyner distill needs: pip install "polyner[train]"``.
"""
from __future__ import annotations

import importlib.util

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


def install_hint(what: str, extras: list[str] | tuple[str, ...]) -> str:
    """``WHAT needs: pip install "polyner[a,b]"``."""
    return f'{what} needs: pip install "polyner[{",".join(extras)}]"'


def require_extras(what: str, *extras: str) -> None:
    """Raise :class:`MissingExtraError` naming the missing extras of ``what`` (e.g. "polyner distill")."""
    missing = missing_extras(*extras)
    if missing:
        raise MissingExtraError(install_hint(what, missing))
