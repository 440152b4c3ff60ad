"""Build a student from a preset: trimmed vocabulary, factorized teacher embeddings, teacher layers where widths allow."""
from __future__ import annotations

import logging

import numpy as np
import torch

from polyner.distill.config import StudentPreset
from polyner.models.io import ner_config_kwargs
from polyner.models.student import PolynerStudentConfig, PolynerStudentForTokenClassification

logger = logging.getLogger(__name__)


def student_config(preset: StudentPreset, vocab_size: int, teacher_config, max_length: int = 512) -> PolynerStudentConfig:
    """The student's config.json: geometry from the preset, special ids and labels as the teacher's."""
    return PolynerStudentConfig(
        vocab_size=vocab_size, hidden_size=preset.hidden, num_hidden_layers=preset.layers,
        num_attention_heads=preset.heads, intermediate_size=preset.ffn, embedding_rank=preset.rank,
        max_position_embeddings=min(max_length, teacher_config.max_position_embeddings),
        layer_norm_eps=teacher_config.layer_norm_eps, pad_token_id=teacher_config.pad_token_id,
        bos_token_id=_special(teacher_config, "bos_token_id", 0), eos_token_id=_special(teacher_config, "eos_token_id", 2),
        **ner_config_kwargs())


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


def copy_teacher_layers(student: PolynerStudentForTokenClassification, teacher_state: dict[str, torch.Tensor],
                        prefix: str = "bert.") -> list[int]:
    """Initialise student layers from evenly spaced teacher layers when their shapes match; return which."""
    teacher_layers = sorted({int(k[len(prefix + "encoder.layer."):].split(".")[0])
                             for k in teacher_state if k.startswith(prefix + "encoder.layer.")})
    n = len(student.student.layers)
    if not teacher_layers:
        return []
    picks = [teacher_layers[int(round(i))] for i in np.linspace(0, len(teacher_layers) - 1, n)]
    for layer, source in zip(student.student.layers, picks):
        for ours, theirs in LAYER_MAP.items():
            module = getattr(layer, ours)
            for param in ("weight", "bias"):
                key = f"{prefix}encoder.layer.{source}.{theirs}.{param}"
                if key not in teacher_state or teacher_state[key].shape != getattr(module, param).shape:
                    return []
        with torch.no_grad():
            for ours, theirs in LAYER_MAP.items():
                module = getattr(layer, ours)
                module.weight.copy_(teacher_state[f"{prefix}encoder.layer.{source}.{theirs}.weight"])
                module.bias.copy_(teacher_state[f"{prefix}encoder.layer.{source}.{theirs}.bias"])
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
