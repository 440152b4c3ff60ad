"""The distilled student for inference without transformers: the same modules and weight names, plain torch.

Loading a ``polyner_student`` directory through transformers' Auto* classes imports transformers'
modelling code, about five seconds of a cold ``polyner.load()``. This module builds the student from
``config.json`` as the module tree of :mod:`polyner.models.student_layers` (the tree the transformers classes
hold, so the weight names are the same by construction), reads ``model.safetensors``
(strictly: every weight present with its shape, nothing unexpected, checked from the file's header before
anything is allocated) and takes the tokenizer from ``tokenizer.json``.
Training, saving and fine-tuning keep using :mod:`polyner.models.student`.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from polyner.models.checks import check_tensors_fit, shapes_on_meta
from polyner.models.io import ModelDirectoryError, check_model_dir
from polyner.models.plain import LogitsOutput, PlainConfig, read_config
from polyner.models.student_geometry import StudentGeometry
from polyner.models.student_layers import TokenClassifierParts

STUDENT_TYPE = "polyner_student"
WEIGHTS_FILE = "model.safetensors"


def is_student_directory(path: str | Path) -> bool:
    """Whether ``path/config.json`` describes a polyner student (``model_type: polyner_student``)."""
    try:
        return json.loads((Path(path) / "config.json").read_text(encoding="utf-8")).get("model_type") == STUDENT_TYPE
    except (OSError, ValueError, AttributeError):
        return False


class StudentRuntime(TokenClassifierParts, nn.Module):
    """The student's module tree (:class:`~polyner.models.student_layers.TokenClassifierParts`) built from its
    config.json (``model.config``: labels and every other field), called like a transformers model:
    ``model(input_ids=..., attention_mask=...)`` gives an output with ``.logits``."""

    def __init__(self, config: PlainConfig) -> None:
        super().__init__()
        self.config = config
        self.geometry = StudentGeometry.from_config(config)
        self.add_token_classifier(self.geometry)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_) -> LogitsOutput:
        """Token logits for a batch."""
        return LogitsOutput(logits=self.token_logits(input_ids, attention_mask)[0])


def read_student_config(path: Path) -> PlainConfig:
    """config.json of a student as a namespace, checked to hold the sizes and labels every saved student has."""
    config = read_config(path)
    missing = [k for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
               if not isinstance(config.get(k), int)]
    if missing or not config.num_labels:
        raise ModelDirectoryError(f"config.json in {path} is not a complete polyner student config: "
                                  f"missing {missing or ['id2label']}")
    return config


def load_student_runtime(path: str | Path):
    """``(StudentRuntime, tokenizer)`` from a student directory, float32, in eval mode."""
    from safetensors.torch import load_file

    from polyner.models.rust_tokenizer import load_inference_tokenizer

    path = check_model_dir(path)
    config = read_student_config(path)
    expected, _ = shapes_on_meta(lambda: StudentRuntime(config))  # nothing allocated until the weights fit
    check_tensors_fit(expected, path / WEIGHTS_FILE, f"its config.json (model_type {STUDENT_TYPE!r})")
    model = StudentRuntime(config)
    try:
        state = load_file(str(path / WEIGHTS_FILE))
    except Exception as exc:  # safetensors raises its own error types for truncated or foreign files
        raise ModelDirectoryError(f"cannot load the model in {path}: {exc}") from exc
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as exc:
        raise ModelDirectoryError(f"cannot load the model in {path}: the weights do not fit its config.json: "
                                  f"{str(exc).splitlines()[0]}") from exc
    return model.eval(), load_inference_tokenizer(path)
