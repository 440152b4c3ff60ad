"""A tiny polyner student saved in HF layout, for the ONNX and bench tests."""
from __future__ import annotations

from pathlib import Path

import torch


def save_tiny_student(tokenizer, folder: Path, seed: int = 0) -> Path:
    """A 2-layer, 32-wide student (rank-16 embeddings) with the polyner label maps and random weights."""
    from polyner.models.io import ner_config_kwargs
    from polyner.models.student import PolynerStudentConfig, PolynerStudentForTokenClassification

    torch.manual_seed(seed)
    config = PolynerStudentConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, embedding_rank=16,
                                  max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
                                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **ner_config_kwargs())
    model = PolynerStudentForTokenClassification(config).eval()
    with torch.no_grad():  # a larger classifier bias spread so random weights still emit entities
        model.classifier.bias.copy_(torch.tensor([0.0, 0.5, 0.3, 0.5, 0.3, 0.5, 0.3]))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
