"""The distilled student for inference without transformers: the same modules and weight names, plain torch.

Loading a ``polyner_student`` directory through transformers' Auto* classes imports transformers'
modelling code, about five seconds of a cold ``polyner.load()``. This module builds the student from
``config.json`` with the blocks of :mod:`polyner.models.student_layers`, reads ``model.safetensors``
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
from polyner.models.student_layers import StudentEmbeddings, StudentLayer, encode

STUDENT_TYPE = "polyner_student"
WEIGHTS_FILE = "model.safetensors"


def is_student_directory(path: str | Path) -> bool:
    """Whether ``path/config.json`` describes a polyner student (``model_type: polyner_student``)."""
    try:
        return json.loads((Path(path) / "config.json").read_text(encoding="utf-8")).get("model_type") == STUDENT_TYPE
    except (OSError, ValueError, AttributeError):
        return False


class _StudentEncoder(nn.Module):
    def __init__(self, config: PlainConfig) -> None:
        super().__init__()
        self.embeddings = StudentEmbeddings(config)
        self.layers = nn.ModuleList(StudentLayer(config) for _ in range(config.num_hidden_layers))


class StudentRuntime(nn.Module):
    """A polyner student token classifier called like a transformers model: ``model(input_ids=..., attention_mask=...)``."""

    def __init__(self, config: PlainConfig) -> None:
        super().__init__()
        self.config = config
        self.student = _StudentEncoder(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_) -> LogitsOutput:
        """Token logits for a batch."""
        hidden, _ = encode(self.student.embeddings, self.student.layers, input_ids, attention_mask)
        return LogitsOutput(logits=self.classifier(hidden))


def student_config(path: Path) -> PlainConfig:
    """config.json of a student as a namespace with the fields the blocks read (``rank`` included)."""
    config = read_config(path)
    defaults = {"embedding_rank": 0, "max_position_embeddings": 512, "layer_norm_eps": 1e-12, "pad_token_id": 1,
                "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    for key, value in defaults.items():
        if config.get(key) is None:
            setattr(config, key, value)
    missing = [k for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
               if not isinstance(config.get(k), int)]
    if missing or not config.num_labels:
        raise ModelDirectoryError(f"config.json in {path} is not a complete polyner student config: "
                                  f"missing {missing or ['id2label']}")
    config.rank = config.embedding_rank or config.hidden_size
    return config


def load_student_runtime(path: str | Path):
    """``(StudentRuntime, tokenizer)`` from a student directory, float32, in eval mode."""
    from safetensors.torch import load_file

    from polyner.models.rust_tokenizer import load_inference_tokenizer

    path = check_model_dir(path)
    config = student_config(path)
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
