"""Run an exported token classifier with ONNX Runtime: :class:`OnnxTokenClassifier` is a
:class:`~polyner.models.classifier.TokenClassifier` (numpy in and out), so loading and tagging with an ONNX model
import neither torch nor transformers: a cold start takes about half a second and 190 MB. It is also called like a
torch model (``model(input_ids=..., attention_mask=...).logits``, torch tensors), to compare it with one. onnxruntime is part of the core install (the shipped default is an
ONNX model) and is imported only here, when an ONNX model is loaded.
"""
from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from polyner.models.classifier import ConfigReader
from polyner.models.io import ModelDirectoryError
from polyner.models.plain import LogitsOutput, read_config

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)
ONNX_FILE = "model.onnx"
EXPORT_INFO_FILE = "onnx_export.json"
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "logits"


def require_onnxruntime():
    """The ``onnxruntime`` module, or an ImportError naming the extra that installs it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError(f"the ONNX backend needs onnxruntime, part of polyner's core install: pip install onnxruntime "
                          f"({exc})") from exc
    return onnxruntime


def export_info(path: str | Path) -> dict:
    """What ``polyner export`` wrote about the ONNX model in ``path`` (quantization, opset, ...); {} if nothing."""
    info = Path(path) / EXPORT_INFO_FILE
    if not info.exists():
        return {}
    try:
        return json.loads(info.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelDirectoryError(f"corrupt {EXPORT_INFO_FILE} in {path}: {exc}") from exc


def is_int8(path: str | Path) -> bool:
    """Whether the ONNX model in ``path`` was exported as int8 (per its ``onnx_export.json``)."""
    return export_info(path).get("quantization") == "int8"


class OnnxTokenClassifier(ConfigReader):
    """A :class:`~polyner.models.classifier.TokenClassifier` run by ONNX Runtime; its backend is "onnx-int8" when
    the export recorded int8 weights, else "onnx"."""

    training = False

    def __init__(self, model_file: str | Path, config, threads: int | None = None) -> None:
        ort = require_onnxruntime()
        self.model_file = Path(model_file)
        self.folder = self.model_file.parent
        self.config = config
        self.backend = "onnx-int8" if is_int8(self.folder) else "onnx"
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads) if threads else 0  # 0: onnxruntime's default (all cores)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(str(self.model_file), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ModelDirectoryError(f"cannot load the ONNX model {self.model_file}: {exc}") from exc
        inputs = {i.name for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        if not set(INPUT_NAMES) <= inputs or OUTPUT_NAME not in outputs:
            raise ModelDirectoryError(
                f"{self.model_file} is not a polyner token classifier: expected inputs {list(INPUT_NAMES)} and "
                f"output {OUTPUT_NAME!r}, found inputs {sorted(inputs)} and outputs {outputs}")
        labels = next(o.shape for o in self.session.get_outputs() if o.name == OUTPUT_NAME)[-1]
        expected = getattr(config, "num_labels", None)
        if isinstance(labels, int) and expected and labels != expected:
            raise ModelDirectoryError(f"{self.model_file} gives {labels} labels per piece but its config.json "
                                      f"names {expected} (id2label): they do not belong together")
        self.threads = threads

    def parameters_count(self) -> int:
        """0: ONNX Runtime does not count a graph's weights."""
        return 0

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None) -> np.ndarray:
        """Logits (float32, batch x sequence x labels) for int64 id and mask arrays: numpy in and out, no torch."""
        ids = _as_int64(input_ids)
        mask = np.ones_like(ids) if attention_mask is None else _as_int64(attention_mask)
        (logits,) = self.session.run([OUTPUT_NAME], {"input_ids": ids, "attention_mask": mask})
        return np.asarray(logits, dtype=np.float32)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_):
        """Logits for a batch, as a torch model gives them: a :class:`LogitsOutput` holding a float32 torch tensor."""
        import torch

        return LogitsOutput(logits=torch.from_numpy(self.logits(input_ids, attention_mask)))

    forward = __call__

    def eval(self) -> "OnnxTokenClassifier":
        """No-op (an ONNX graph is always in inference mode); returns self, like ``nn.Module.eval``."""
        return self

    def __repr__(self) -> str:
        return f"OnnxTokenClassifier({self.model_file}, threads={self.threads})"


def _as_int64(values) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor (torch is not imported by the ONNX backend itself)
        values = values.detach().cpu().numpy()
    return np.ascontiguousarray(values, dtype=np.int64)


def load_onnx_classifier(path: str | Path, threads: int | None = None):
    """Load ``(OnnxTokenClassifier, tokenizer)`` from a directory holding ``model.onnx``, config.json and a tokenizer."""
    from polyner.models.io import check_model_dir
    from polyner.models.rust_tokenizer import load_inference_tokenizer

    path = check_model_dir(path)
    model_file = path / ONNX_FILE
    if not model_file.exists():
        raise ModelDirectoryError(f"no ONNX model ({ONNX_FILE}) in {path}: "
                                  f"export one with `polyner export {path} --format onnx --out DIR`")
    require_onnxruntime()
    export_info(path)  # a corrupt info file is reported now, with the path
    config = read_config(path)
    # the tokenizer (tokenizers builds its Unigram model, ~0.4 s for 85k pieces) and the ONNX session are both
    # built in native code that releases the GIL: side by side they take the time of the longer one
    with ThreadPoolExecutor(max_workers=1) as pool:
        tokenizer = pool.submit(load_inference_tokenizer, path)
        model = OnnxTokenClassifier(model_file, config, threads)
        return model, tokenizer.result()
