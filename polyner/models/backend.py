"""Choose how a model directory is run: torch (model.safetensors) or ONNX Runtime (model.onnx)."""
from __future__ import annotations

from pathlib import Path

from polyner.models.io import ModelDirectoryError, check_model_dir

BACKENDS = ("torch", "onnx")
TORCH_FILE = "model.safetensors"


def check_backend(backend: str | None) -> str | None:
    """``backend`` itself when it is None, "torch" or "onnx"; a ValueError otherwise."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: expected 'torch', 'onnx' or None (chosen from the directory)")
    return backend


def choose_backend(path: str | Path, backend: str | None = None) -> str:
    """The backend to run ``path`` with.

    None picks ONNX when the directory holds ``model.onnx`` and no ``model.safetensors``, torch otherwise;
    "torch" and "onnx" force one and fail, naming the path, when the directory has no model for it.
    """
    from polyner.models.onnx_backend import ONNX_FILE

    check_backend(backend)
    path = check_model_dir(path)
    has_torch, has_onnx = (path / TORCH_FILE).exists(), (path / ONNX_FILE).exists()
    if backend is None:
        return "onnx" if has_onnx and not has_torch else "torch"
    if backend == "onnx" and not has_onnx:
        raise ModelDirectoryError(f"no ONNX model ({ONNX_FILE}) in {path}: "
                                  f"export one with `polyner export {path} --format onnx --out DIR`")
    if backend == "torch" and not has_torch:
        hint = "; it holds an ONNX model: load it with backend='onnx'" if has_onnx else ""
        raise ModelDirectoryError(f"no torch weights ({TORCH_FILE}) in {path}{hint}")
    return backend


def load_with_backend(path: str | Path, backend: str | None = None, onnx_threads: int | None = None):
    """``(model, tokenizer)`` from a model directory, run by the chosen backend (see :func:`choose_backend`)."""
    chosen = choose_backend(path, backend)
    if chosen == "onnx":
        from polyner.models.onnx_backend import load_onnx_classifier

        return load_onnx_classifier(path, onnx_threads)
    from polyner.models.io import load_token_classifier

    return load_token_classifier(path)
