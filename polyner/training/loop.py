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


def linear_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps``, then linear decay to 0 at ``total_steps``."""
    warmup = max(1, warmup_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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
