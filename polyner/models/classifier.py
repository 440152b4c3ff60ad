"""What the tagger asks of a model: :class:`TokenClassifier`, with the torch adapter :class:`TorchClassifier`.

A token classifier gives float32 logits (batch x pieces x labels) for numpy id and mask arrays, and says which
labels they are, which window (pieces per window) it was trained for and which backend runs it. The ONNX Runtime
model (:class:`~polyner.models.onnx_backend.OnnxTokenClassifier`) is one; a torch module is wrapped in
:class:`TorchClassifier`. Nothing here imports torch until a torch model is run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from polyner.labels import ID2LABEL
from polyner.models.io import ModelDirectoryError

DEFAULT_MAX_LENGTH = 128  # pieces per window for a model whose config.json names no window


@runtime_checkable
class TokenClassifier(Protocol):
    """A model the :class:`~polyner.tagging.tagger.Tagger` runs."""

    backend: str  # "torch", "onnx" or "onnx-int8"
    config: Any  # the model's config.json, as an object (label maps, geometry, polyner_languages, ...)

    @property
    def id2label(self) -> dict[int, str]:
        """Label name by logit index."""

    def window(self) -> int:
        """Pieces per window (specials included) the model asks to be read in: see :func:`config_window`."""

    def unspaced_runs(self) -> str:
        """How runs of scripts without spaces become pieces: "words" or "text" (see polyner.tagging.pieces)."""

    @property
    def folder(self) -> Path | None:
        """The directory the weights are read from (None: built in memory)."""

    def parameters_count(self) -> int:
        """How many weights the model has (0 when the runtime does not say)."""

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Float32 logits (batch x pieces x labels) for int64 ``input_ids`` and ``attention_mask``."""


def config_id2label(config: Any) -> dict[int, str]:
    """The label map of a model's config (int keys), or polyner's own when it names none."""
    id2label = getattr(config, "id2label", None) or ID2LABEL
    return {int(k): v for k, v in id2label.items()}


def config_window(config: Any, source: str | Path | None = None) -> int:
    """The window (pieces, specials included) a model asks to be read in: ``ner_max_length`` in its config.json,
    else :data:`DEFAULT_MAX_LENGTH`.

    ``polyner distill`` writes the length its student was trained on: positions beyond it were never trained
    after the teacher's initialisation, and the shipped student tags best (on dev) in windows of that length.
    A bad value is a ModelDirectoryError naming ``source`` (the model directory).
    """
    value = getattr(config, "ner_max_length", None)
    if value is None:
        return DEFAULT_MAX_LENGTH
    if isinstance(value, bool) or not isinstance(value, int) or value < 4:
        raise ModelDirectoryError(f"{source or 'model'}: config.json: ner_max_length must be an int of at least 4, "
                                  f"not {value!r}")
    return value


def config_unspaced_runs(config: Any, source: str | Path | None = None) -> str:
    """How a model reads runs of scripts without spaces (:mod:`polyner.tagging.pieces`): ``ner_unspaced_runs`` in
    its config.json, else "words" (every model before the field). A bad value is a ModelDirectoryError naming
    ``source``."""
    from polyner.tagging.pieces import UNSPACED_RUNS

    value = getattr(config, "ner_unspaced_runs", None)
    if value is None:
        return "words"
    if value not in UNSPACED_RUNS:
        raise ModelDirectoryError(f"{source or 'model'}: config.json: ner_unspaced_runs must be one of "
                                  f"{', '.join(map(repr, UNSPACED_RUNS))}, not {value!r}")
    return value


class ConfigReader:
    """The labels and window of a :class:`TokenClassifier`, read from its ``config`` (errors name its ``folder``)."""

    config: Any
    folder: Path | None

    @property
    def id2label(self) -> dict[int, str]:
        return config_id2label(self.config)

    def window(self) -> int:
        return config_window(self.config, self.folder)

    def unspaced_runs(self) -> str:
        return config_unspaced_runs(self.config, self.folder)


class TorchClassifier(ConfigReader):
    """A torch token-classification module (transformers' or polyner's plain-torch student) as a
    :class:`TokenClassifier`: run under ``inference_mode``, numpy in and out."""

    backend = "torch"

    def __init__(self, module, source: str | Path | None = None) -> None:
        self.module = module.eval()
        self.source = Path(source) if source else None

    @property
    def config(self) -> Any:
        return getattr(self.module, "config", None)  # a module built in a test may have none

    @property
    def folder(self) -> Path | None:
        return self.source

    def parameters_count(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.module(input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(attention_mask))
        return out.logits.float().numpy()

    def __repr__(self) -> str:
        return f"TorchClassifier({type(self.module).__name__}, source={self.source})"


def as_token_classifier(model, source: str | Path | None = None) -> TokenClassifier:
    """``model`` itself when it is a :class:`TokenClassifier`, else (a torch module) wrapped in :class:`TorchClassifier`."""
    if isinstance(model, TokenClassifier):
        return model
    return TorchClassifier(model, source)
