"""The torch weights inside an exported ONNX model: where each one went, and how to read them back.

``polyner export`` records in ``onnx_export.json`` (``"weights"``) which graph initializer holds each tensor of
the torch model's state dict, and whether it was stored transposed (a ``Linear`` weight becomes a ``MatMul``
operand). :func:`read_weights` reads them back, dequantizing int8 ones (``NAME_quantized``, ``NAME_scale``,
``NAME_zero_point``, per channel along the axis of their ``DequantizeLinear``), so a directory that ships only
``model.onnx`` (the packed default) can be turned back into ``model.safetensors`` for fine-tuning or
distillation (:func:`rebuild_torch_directory`): exact for an fp32 export, the int8 weights dequantized for an
int8 one. Needs ``onnx`` (the ``train`` / ``export`` extras), never torch.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from polyner.models.io import ModelDirectoryError

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)
WEIGHTS_KEY = "weights"
TORCH_FILE = "model.safetensors"


def _digest(array: np.ndarray) -> tuple:
    array = np.ascontiguousarray(array)
    return array.dtype.str, array.shape, hashlib.sha1(array.tobytes()).hexdigest()


def weight_map(state: dict[str, np.ndarray], initializers: Iterable[tuple[str, np.ndarray]]) -> dict[str, dict]:
    """``{torch name: {"initializer": graph name, "transposed": bool}}`` for every tensor of ``state`` found, by
    value, among the graph's float initializers (as they are, or transposed for 2-D ones)."""
    by_value: dict[tuple, str] = {}
    for name, array in initializers:
        by_value.setdefault(_digest(array), name)
    found: dict[str, dict] = {}
    for name, array in state.items():
        if (graph_name := by_value.get(_digest(array))) is not None:
            found[name] = {"initializer": graph_name, "transposed": False}
        elif array.ndim == 2 and (graph_name := by_value.get(_digest(array.T))) is not None:
            found[name] = {"initializer": graph_name, "transposed": True}
    return found


def graph_initializers(model: "onnx.ModelProto") -> dict[str, np.ndarray]:
    """The initializers of a graph as numpy arrays, by name."""
    from onnx import numpy_helper

    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


def _dequantize_axes(model: "onnx.ModelProto") -> dict[str, int]:
    """The ``axis`` of a DequantizeLinear that reads a quantized initializer directly (a MatMulInteger's weight
    has none: its scales run along the last axis, the output channels)."""
    axes = {}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear":
            axes[node.input[0]] = next((a.i for a in node.attribute if a.name == "axis"), 1)
    return axes


def read_weights(path: str | Path) -> dict[str, np.ndarray]:
    """The torch state dict (float32 numpy arrays) stored in ``path/model.onnx``, dequantized where int8."""
    from polyner.extras import require_extras
    from polyner.models.onnx_backend import ONNX_FILE, export_info

    require_extras("reading torch weights from an ONNX model", "export")
    import onnx

    path = Path(path)
    mapping = export_info(path).get(WEIGHTS_KEY)
    if not mapping:
        raise ModelDirectoryError(f"{path} holds no map of its torch weights (onnx_export.json \"{WEIGHTS_KEY}\"): "
                                  "re-export it with this version of `polyner export` / `polyner pack`")
    model = onnx.load(str(path / ONNX_FILE))
    values = graph_initializers(model)
    axes = _dequantize_axes(model)
    state = {}
    for name, where in mapping.items():
        key = where["initializer"]
        if key in values:
            array = values[key].astype(np.float32)
        elif f"{key}_quantized" in values:
            q = values[f"{key}_quantized"].astype(np.float32)
            scale = values[f"{key}_scale"].astype(np.float32)
            zero = values[f"{key}_zero_point"].astype(np.float32)
            if scale.ndim:  # per channel: scale and zero point run along the DequantizeLinear axis
                shape = [1] * q.ndim
                shape[axes.get(f"{key}_quantized", -1)] = -1
                scale, zero = scale.reshape(shape), zero.reshape(shape)
            array = (q - zero) * scale
        else:
            raise ModelDirectoryError(f"{path / ONNX_FILE} has no initializer {key!r} for the torch weight {name}")
        state[name] = np.ascontiguousarray(array.T if where["transposed"] else array)
    return state


def write_torch_directory(source: str | Path, out: str | Path) -> Path:
    """Write the torch model directory of the ONNX model in ``source`` into ``out`` (weights as float32
    safetensors, config.json with the Hugging Face ``auto_map``, tokenizer and card copied)."""
    from safetensors.numpy import save_file

    from polyner.models.hf_interop import add_auto_map
    from polyner.models.io import COPIED_FILES, TOKENIZER_FILES

    source, out = Path(source), Path(out)
    state = read_weights(source)
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / TORCH_FILE), metadata={"format": "pt", "source": "dequantized from model.onnx"})
    for name in ("config.json", *TOKENIZER_FILES, *COPIED_FILES):
        if (source / name).exists():
            shutil.copyfile(source / name, out / name)
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    config["torch_dtype"] = "float32"
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    add_auto_map(out)
    logger.info("rebuilt torch weights of %s in %s", source, out)
    return out


def rebuild_torch_directory(source: str | Path) -> Path:
    """A torch model directory for the ONNX-only model in ``source``, rebuilt once into ``$POLYNER_HOME/torch``."""
    from polyner.models.onnx_backend import ONNX_FILE
    from polyner.models.onnx_cache import build_once, fingerprint

    source = Path(source).resolve()

    def build(partial: Path, step) -> None:
        step("reading model.onnx")
        write_torch_directory(source, partial)

    return build_once("torch", f"{source.name}-{fingerprint(source, ('config.json', ONNX_FILE))}", build,
                      f"rebuilding the torch weights of {source.name} from its ONNX model",
                      complete=(TORCH_FILE, "config.json"))
