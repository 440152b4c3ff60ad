"""The pieces of a transformers-free model shared by the ONNX backend and the plain-torch student runtime.

:func:`read_config` gives ``config.json`` as a namespace, :class:`LogitsOutput` is what such a model returns
in place of transformers' ``TokenClassifierOutput``; importing transformers for either would be most of a
cold ``polyner.load``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from polyner.models.io import ModelDirectoryError

if TYPE_CHECKING:
    import torch


@dataclass
class LogitsOutput:
    """What a call of a transformers-free model (ONNX, or the student run by :mod:`~polyner.models.student_runtime`)
    returns: ``out.logits`` or ``out["logits"]``, as from a transformers ``TokenClassifierOutput`` (whose import
    alone would be most of the first call's time)."""

    logits: torch.Tensor

    def __getitem__(self, key: str) -> torch.Tensor:
        if key != "logits":
            raise KeyError(key)
        return self.logits


class PlainConfig(SimpleNamespace):
    """config.json as attributes (``id2label`` with int keys, ``label2id``, ``num_labels``, every other field).

    A plain namespace rather than a transformers ``PretrainedConfig``: importing that class costs about a
    second of a cold ``polyner.load``, and inference needs only the label maps and the geometry.
    """

    def get(self, key: str, default=None):
        """A field, or ``default`` when config.json has none."""
        return getattr(self, key, default)


def read_config(path: Path) -> PlainConfig:
    """config.json as a :class:`PlainConfig` (label maps, geometry), without importing any model class; its
    values are range-checked (:func:`~polyner.models.checks.check_config_values`)."""
    from polyner.models.checks import check_config_values

    config_file = Path(path) / "config.json"
    try:
        data = json.loads(config_file.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        id2label = {int(k): str(v) for k, v in (data.get("id2label") or {}).items()}
    except Exception as exc:
        raise ModelDirectoryError(f"cannot read config.json in {path}: {exc}") from exc
    check_config_values(data, config_file)
    data["id2label"] = id2label
    data["label2id"] = {label: i for i, label in id2label.items()}
    data["num_labels"] = len(id2label)
    data.setdefault("model_type", None)
    return PlainConfig(**data)
