"""Choose how a model directory is run: torch (model.safetensors) or ONNX Runtime (model.onnx).

"onnx" and "onnx-int8" also run a directory that holds only torch weights: it is exported to ONNX (fp32, or int8
with per-token activation scales) once, on first use, into ``$POLYNER_HOME/onnx``
(:func:`~polyner.models.onnx_export.cached_export`);
"torch" runs a directory that holds only an ONNX model (the packed default) from its weights read back once
into ``$POLYNER_HOME/torch`` (:func:`torch_directory`).
"""
from __future__ import annotations

from pathlib import Path

from polyner.models.io import ModelDirectoryError, check_model_dir

BACKENDS = ("torch", "onnx", "onnx-int8")
TORCH_FILE = "model.safetensors"


def check_backend(backend: str | None) -> str | None:
    """``backend`` itself when it is None, "torch", "onnx" or "onnx-int8"; a ValueError otherwise."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: expected 'torch', 'onnx', 'onnx-int8' "
                         "or None (chosen from the directory)")
    return backend


def choose_backend(path: str | Path, backend: str | None = None) -> str:
    """The backend to run the model directory ``path`` with: "torch", "onnx" or "onnx-int8".

    None picks ONNX when the directory holds ``model.onnx`` and no ``model.safetensors``, torch otherwise. A
    backend asked for is checked against what the directory holds, failing (naming the path) when it cannot run:
    "onnx" needs an ONNX model or torch weights to export, "onnx-int8" an int8 ONNX model or torch weights to
    quantize, "torch" torch weights or an ONNX model whose export recorded them (see :func:`torch_directory`).
    """
    from polyner.models.onnx_backend import ONNX_FILE, is_int8

    check_backend(backend)
    path = check_model_dir(path)
    has_torch, has_onnx = (path / TORCH_FILE).exists(), (path / ONNX_FILE).exists()
    if backend is None:
        return "onnx" if has_onnx and not has_torch else "torch"
    if backend == "onnx-int8" and not has_torch and not is_int8(path):  # check_model_dir saw an ONNX model
        raise ModelDirectoryError(f"the ONNX model in {path} is not int8 and there are no torch weights "
                                  f"({TORCH_FILE}) to quantize: export one with `polyner export MODEL "
                                  "--format onnx --quantize int8 --out DIR`")
    if backend == "torch" and not has_torch and not (has_onnx and _has_weight_map(path)):
        hint = "; it holds an ONNX model: load it with backend='onnx'" if has_onnx else ""
        raise ModelDirectoryError(f"no torch weights ({TORCH_FILE}) in {path}{hint}")
    return backend


def _has_weight_map(path: Path) -> bool:
    from polyner.models.onnx_backend import export_info
    from polyner.models.onnx_weights import WEIGHTS_KEY

    return bool(export_info(path).get(WEIGHTS_KEY))


def torch_directory(path: str | Path) -> Path:
    """A directory with the torch weights of the model in ``path``: ``path`` itself when it holds
    ``model.safetensors``, else (an ONNX-only directory such as the packed default) the weights read back from its
    ``model.onnx`` once into ``$POLYNER_HOME/torch`` (dequantized when int8; see :mod:`~polyner.models.onnx_weights`).
    """
    choose_backend(path, "torch")  # fails, naming the path, without torch weights or a map of them
    path = Path(path).expanduser()
    if (path / TORCH_FILE).exists():
        return path
    from polyner.extras import require_extras
    from polyner.models.onnx_weights import rebuild_torch_directory

    require_extras("rebuilding torch weights from an ONNX model", "export")
    return rebuild_torch_directory(path)


def onnx_directory(path: str | Path, backend: str) -> Path:
    """The directory whose ``model.onnx`` runs ``path`` with ``backend`` "onnx" or "onnx-int8".

    A directory's own ONNX model serves "onnx" (whatever its quantization) and "onnx-int8" when it is
    int8; otherwise the torch weights are exported once into the cache (fp32 for "onnx", int8 for
    "onnx-int8"). Fails, naming the path, when the directory has neither a fitting ONNX model nor torch weights.
    """
    from polyner.models.onnx_backend import ONNX_FILE, is_int8

    choose_backend(path, backend)  # fails, naming the path, when nothing in it can run on that backend
    path = Path(path).expanduser()
    if (path / ONNX_FILE).exists() and (backend == "onnx" or is_int8(path)):
        return path
    from polyner.models.onnx_export import cached_export

    return cached_export(path, "int8" if backend == "onnx-int8" else None)


def prepare_backend(path: str | Path, backend: str) -> Path:
    """The directory ``backend`` runs the model in ``path`` from, made once (the ONNX export, or the torch weights
    read back): so that worker processes each load a ready directory instead of all building it."""
    if backend in ("onnx", "onnx-int8"):
        return onnx_directory(path, backend)
    return torch_directory(path)


def load_classifier(path: str | Path, backend: str, threads: int | None = None):
    """``(model, tokenizer)`` from a model directory, run by ``backend`` (chosen by :func:`choose_backend`): an
    :class:`~polyner.models.onnx_backend.OnnxTokenClassifier` with ``threads`` intra-op threads, or a torch module.

    "onnx" / "onnx-int8" on a directory of torch weights export it once, "torch" on an ONNX-only directory reads its
    weights back once (see :func:`prepare_backend`).
    """
    if backend in ("onnx", "onnx-int8"):
        from polyner.models.onnx_backend import load_onnx_classifier, require_onnxruntime

        require_onnxruntime()
        return load_onnx_classifier(onnx_directory(path, backend), threads)
    if backend != "torch":
        raise ValueError(f"unknown backend {backend!r}: expected 'torch', 'onnx' or 'onnx-int8'")
    from polyner.extras import require_extras

    require_extras("the torch backend", "train")
    path = torch_directory(path)
    from polyner.models.student_runtime import is_student_directory, load_student_runtime

    if is_student_directory(path):  # plain torch, no transformers import
        return load_student_runtime(path)
    from polyner.models.io import load_token_classifier

    return load_token_classifier(path)
