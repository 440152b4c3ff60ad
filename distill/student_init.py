"""Build a student from a preset: trimmed vocabulary, factorized teacher embeddings, teacher layers where widths allow."""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Sequence

import numpy as np
import torch

from polyner.labels import ID2LABEL
from polyner.models.io import ner_config_kwargs
from polyner.models.student import PolynerStudentConfig, PolynerStudentForTokenClassification
from polyner.models.student_geometry import StudentGeometry

logger = logging.getLogger(__name__)


def student_config(preset: StudentGeometry, vocab_size: int, teacher_config, max_length: int = 512
                   ) -> PolynerStudentConfig:
    """The student's config.json: the preset's encoder over the trimmed vocabulary, positions, LayerNorm epsilon and
    special ids as the teacher's, polyner's NER labels."""
    geometry = replace(preset, vocab=vocab_size, labels=len(ID2LABEL), pad_id=teacher_config.pad_token_id,
                       max_positions=min(max_length, teacher_config.max_position_embeddings),
                       layer_norm_eps=teacher_config.layer_norm_eps)
    return PolynerStudentConfig.from_geometry(
        geometry, bos_token_id=_special(teacher_config, "bos_token_id", 0),
        eos_token_id=_special(teacher_config, "eos_token_id", 2), **ner_config_kwargs())


def _special(config, name: str, default: int) -> int:
    value = getattr(config, name, None)
    return default if value is None else value


def orthonormal(rows: int, cols: int, seed: int) -> np.ndarray:
    """A ``rows x cols`` matrix with orthonormal columns (rows >= cols), from a seeded QR."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(rows, cols)))
    return q[:, :cols].astype(np.float32)


def init_embeddings(student: PolynerStudentForTokenClassification, coordinates: np.ndarray, components: np.ndarray,
                    mean: np.ndarray, teacher_position: np.ndarray, seed: int) -> None:
    """Student word rows = PCA coordinates of the teacher rows; the projection maps them (plus the mean)
    back to the teacher space, through a fixed orthonormal map when the student is narrower."""
    emb = student.student.embeddings
    rank, teacher_width = components.shape
    width = student.config.hidden_size
    to_student = np.eye(teacher_width, dtype=np.float32) if width == teacher_width else orthonormal(teacher_width, width, seed)
    with torch.no_grad():
        emb.word.weight.copy_(torch.from_numpy(coordinates[:, :emb.word.weight.shape[1]].astype(np.float32)))
        emb.projection.weight.copy_(torch.from_numpy((components @ to_student).T.astype(np.float32)))
        positions = (teacher_position[:emb.position.weight.shape[0]] + mean) @ to_student
        emb.position.weight.copy_(torch.from_numpy(positions.astype(np.float32)))


LAYER_MAP = {
    "query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
    "attention_output": "attention.output.dense", "attention_norm": "attention.output.LayerNorm",
    "intermediate": "intermediate.dense", "output": "output.dense", "output_norm": "output.LayerNorm",
}


def teacher_layer_picks(teacher_layers: int, student_layers: int) -> list[int]:
    """Evenly spaced teacher layers (first and last included) that start the student's layers."""
    return [int(round(i)) for i in np.linspace(0, teacher_layers - 1, student_layers)]


@torch.no_grad()
def rank_ffn_neurons(teacher: torch.nn.Module, batches: Sequence[dict[str, torch.Tensor]],
                     layers: Sequence[int]) -> dict[int, np.ndarray]:
    """Feed-forward neurons of each teacher layer in ``layers``, most important first.

    A neuron's importance is its mean absolute activation over the real tokens of ``batches`` times the
    norm of its output weights: what the layer loses when the neuron is cut.
    """
    base = getattr(teacher, teacher.base_model_prefix)
    sums: dict[int, torch.Tensor] = {index: torch.zeros((), dtype=torch.float64) for index in layers}
    seen = {"mask": None, "tokens": 0}  # the batch being run, read by the hooks

    def hook_for(index: int):
        def hook(_module, _inputs, output):
            mask = seen["mask"].unsqueeze(-1).to(output.dtype)
            sums[index] = sums[index] + (output.abs() * mask).sum(dim=(0, 1)).double()
        return hook

    hooks = [base.encoder.layer[index].intermediate.register_forward_hook(hook_for(index)) for index in layers]
    teacher.eval()
    try:
        for batch in batches:
            seen["mask"] = batch["attention_mask"]
            seen["tokens"] += int(batch["attention_mask"].sum())
            teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    finally:
        for handle in hooks:
            handle.remove()
    ranking = {}
    for index in layers:
        out_norm = base.encoder.layer[index].output.dense.weight.norm(dim=0).double()
        importance = (sums[index] / max(seen["tokens"], 1)) * out_norm
        ranking[index] = np.argsort(-importance.numpy(), kind="stable")
    return ranking


def copy_teacher_layers(student: PolynerStudentForTokenClassification, teacher_state: dict[str, torch.Tensor],
                        prefix: str = "bert.", ffn_ranking: dict[int, np.ndarray] | None = None) -> list[int]:
    """Initialise student layers from evenly spaced teacher layers when their widths match; return which.

    A student feed-forward block narrower than the teacher's keeps the teacher's most important neurons
    (``ffn_ranking`` from :func:`rank_ffn_neurons`; without it, the neurons with the largest weights).
    """
    teacher_layers = sorted({int(k[len(prefix + "encoder.layer."):].split(".")[0])
                             for k in teacher_state if k.startswith(prefix + "encoder.layer.")})
    n = len(student.student.layers)
    if not teacher_layers:
        return []
    picks = [teacher_layers[i] for i in teacher_layer_picks(len(teacher_layers), n)]
    ffn = student.config.intermediate_size
    sources: list[dict[str, torch.Tensor]] = []
    for source in picks:
        tensors = {f"{ours}.{param}": teacher_state.get(f"{prefix}encoder.layer.{source}.{theirs}.{param}")
                   for ours, theirs in LAYER_MAP.items() for param in ("weight", "bias")}
        if any(t is None for t in tensors.values()):
            return []
        teacher_ffn = tensors["intermediate.weight"].shape[0]
        if ffn < teacher_ffn:  # keep the most important neurons: rows of intermediate, columns of output
            if ffn_ranking is not None and source in ffn_ranking:
                order = ffn_ranking[source]
            else:
                order = np.argsort(-(tensors["intermediate.weight"].norm(dim=1)
                                     * tensors["output.weight"].norm(dim=0)).numpy(), kind="stable")
            keep = torch.from_numpy(np.sort(order[:ffn]).astype(np.int64))
            tensors["intermediate.weight"] = tensors["intermediate.weight"][keep]
            tensors["intermediate.bias"] = tensors["intermediate.bias"][keep]
            tensors["output.weight"] = tensors["output.weight"][:, keep]
        sources.append(tensors)
    for layer, tensors in zip(student.student.layers, sources):
        own = {f"{ours}.{param}": getattr(getattr(layer, ours), param)
               for ours in LAYER_MAP for param in ("weight", "bias")}
        if any(own[k].shape != tensors[k].shape for k in own):
            return []
    with torch.no_grad():
        for layer, tensors in zip(student.student.layers, sources):
            for key, value in tensors.items():
                ours, param = key.split(".")
                getattr(getattr(layer, ours), param).copy_(value)
    if student.config.hidden_size == teacher_state[prefix + "embeddings.LayerNorm.weight"].shape[0]:
        with torch.no_grad():
            student.student.embeddings.norm.weight.copy_(teacher_state[prefix + "embeddings.LayerNorm.weight"])
            student.student.embeddings.norm.bias.copy_(teacher_state[prefix + "embeddings.LayerNorm.bias"])
    return picks


def copy_teacher_classifier(student: PolynerStudentForTokenClassification, teacher_state: dict[str, torch.Tensor],
                            teacher_labels: dict[int, str]) -> bool:
    """Start from the teacher's token classifier when widths and labels (same order) match; return whether it did."""
    if {int(k): v for k, v in teacher_labels.items()} != {int(k): v for k, v in student.config.id2label.items()}:
        return False
    weight, bias = teacher_state.get("classifier.weight"), teacher_state.get("classifier.bias")
    if weight is None or bias is None or weight.shape != student.classifier.weight.shape:
        return False
    with torch.no_grad():
        student.classifier.weight.copy_(weight)
        student.classifier.bias.copy_(bias)
    return True
