"""Pieces shared by every training loop: padding a batch, seeding, threads."""
from __future__ import annotations

import random
from typing import Sequence

import numpy as np
import torch

from polyner.data.align import EncodedSet
from polyner.labels import IGNORE_INDEX


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def collate(data: EncodedSet, indices: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad the sentences ``indices`` of ``data`` into input_ids, attention_mask and labels tensors."""
    examples = [data.example(i) for i in indices]
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for row, (x, y) in enumerate(examples):
        ids[row, :len(x)] = torch.from_numpy(x.astype(np.int64))
        mask[row, :len(x)] = 1
        labels[row, :len(y)] = torch.from_numpy(y.astype(np.int64))
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
