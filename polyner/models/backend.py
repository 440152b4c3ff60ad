"""Choose how a model directory is run: torch (model.safetensors) or ONNX Runtime (model.onnx).

"onnx" and "onnx-int8" also run a directory that holds only torch weights: it is exported to ONNX
(fp32, or dynamic int8) once, on first use, into ``$POLYNER_HOME/onnx`` (:mod:`polyner.models.onnx_cache`);
"torch" runs a directory that holds only an ONNX model (the packed default) from its weights read back once
into ``$POLYNER_HOME/torch`` (:func:`torch_directory`).
"""
from __future__ import annotations

from pathlib import Path

from polyner.models.io import ModelDirectoryError, check_model_dir

BACKENDS = ("torch", "onnx", "onnx-int8")
TORCH_FILE = "model.safetensors"


def check_backend(backend: str | None) -> str | None:
    """``backend`` itself when it is None, "torch" or "onnx"; a ValueError otherwise."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: expected 'torch', 'onnx', 'onnx-int8' "
                         "or None (chosen from the directory)")
    return backend


def choose_backend(path: str | Path, backend: str | None = None) -> str:
    """The backend to run ``path`` with.

    None picks ONNX when the directory holds ``model.onnx`` and no ``model.safetensors``, torch otherwise;
    "torch" and "onnx" force one and fail, naming the path, when the directory has no model for it ("torch" is
    served by an ONNX model whose export recorded its torch weights: see :func:`torch_directory`).
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

    path = check_model_dir(path)
    has_torch, has_onnx = (path / TORCH_FILE).exists(), (path / ONNX_FILE).exists()
    want_int8 = backend == "onnx-int8"
    if has_onnx and (not want_int8 or is_int8(path)):
        return path
    if not has_torch:  # check_model_dir saw a model file: an ONNX one that is not int8
        raise ModelDirectoryError(f"the ONNX model in {path} is not int8 and there are no torch weights "
                                  f"({TORCH_FILE}) to quantize: export one with `polyner export MODEL "
                                  "--format onnx --quantize int8 --out DIR`")
    from polyner.models.onnx_cache import cached_export

    return cached_export(path, "int8" if want_int8 else None)


def prepare_backend(path: str | Path, backend: str | None) -> tuple[Path, str | None]:
    """The directory a backend runs from, made once (the ONNX export, or the torch weights read back), and the
    backend to ask of it then: so that worker processes each load a ready directory instead of all building it."""
    check_backend(backend)
    if backend in ("onnx", "onnx-int8"):
        return onnx_directory(path, backend), None
    if backend == "torch":
        return torch_directory(path), "torch"
    return Path(path), None


def load_with_backend(path: str | Path, backend: str | None = None, onnx_threads: int | None = None):
    """``(model, tokenizer)`` from a model directory, run by the chosen backend (see :func:`choose_backend`).

    "onnx" / "onnx-int8" on a directory of torch weights export it once (see :func:`onnx_directory`).
    """
    check_backend(backend)
    if backend in ("onnx", "onnx-int8"):
        from polyner.models.onnx_backend import load_onnx_classifier, require_onnxruntime

        require_onnxruntime()
        return load_onnx_classifier(onnx_directory(path, backend), onnx_threads)
    chosen = choose_backend(path, backend)
    if chosen == "onnx":
        from polyner.models.onnx_backend import load_onnx_classifier

        return load_onnx_classifier(path, onnx_threads)
    from polyner.extras import require_extras

    require_extras("the torch backend", "train")
    path = torch_directory(path)
    from polyner.models.student_runtime import is_student_directory, load_student_runtime

    if is_student_directory(path):  # plain torch, no transformers import
        return load_student_runtime(path)
    from polyner.models.io import load_token_classifier

    return load_token_classifier(path)


def backend_of(model) -> str:
    """The backend name a loaded model runs on: "torch", "onnx" or "onnx-int8"."""
    model_file = getattr(model, "model_file", None)
    if model_file is None:
        return "torch"
    from polyner.models.onnx_backend import is_int8

    return "onnx-int8" if is_int8(Path(model_file).parent) else "onnx"
