"""Running a sequence classifier: encode sentences or sentence pairs, predict in length-sorted batches."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from polyner.tasks.squad import pad_batch


def encode_pairs(tokenizer, texts_a: Sequence[str], texts_b: Sequence[str | None] | None,
                 max_length: int) -> list[list[int]]:
    """Token ids of each sentence (or pair), truncated to ``max_length`` pieces, longest text first."""
    if texts_b is None or all(b is None for b in texts_b):
        encoded = tokenizer(list(texts_a), truncation=True, max_length=max_length)
    else:
        if any(b is None for b in texts_b):
            raise ValueError("either every example is a pair or none is")
        encoded = tokenizer(list(texts_a), list(texts_b), truncation="longest_first", max_length=max_length)
    return [list(ids) for ids in encoded["input_ids"]]


@torch.inference_mode()
def predict_logits(model, rows: Sequence[Sequence[int]], pad_id: int, batch_size: int = 64,
                   progress: bool = False) -> np.ndarray:
    """Logits ``(len(rows), num_labels)`` in input order; batches are sorted by length to pad little."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    result = np.zeros((len(rows), model.config.num_labels), dtype=np.float32)
    for begin in tqdm(range(0, len(order), batch_size), desc="classify", disable=not progress, leave=False):
        chunk = order[begin:begin + batch_size]
        ids, mask = pad_batch([rows[i] for i in chunk], pad_id)
        result[chunk] = model(input_ids=ids, attention_mask=mask).logits.float().numpy()
    return result
