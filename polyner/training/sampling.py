"""Language-mixed batch sampling that is repeatable from (seed, step) alone, so resume is exact."""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np


class MixedLanguageSampler:
    """Draw batches that mix languages, each language weighted by ``size ** alpha``."""

    def __init__(self, langs: Sequence[str], alpha: float = 0.5, seed: int = 13) -> None:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, lang in enumerate(langs):
            groups[lang].append(i)
        if not groups:
            raise ValueError("no training sentences to sample from")
        self.langs = sorted(groups)
        self.groups = [np.asarray(groups[lang]) for lang in self.langs]
        sizes = np.array([len(g) for g in self.groups], dtype=np.float64)
        weights = sizes ** alpha
        self.probs = weights / weights.sum()
        self.seed = seed

    def batch(self, step: int, size: int) -> list[int]:
        """The sentence indices of batch number ``step`` (the same every time for the same seed)."""
        rng = np.random.default_rng([self.seed, step])
        picks = rng.choice(len(self.groups), size=size, p=self.probs)
        return [int(self.groups[g][rng.integers(len(self.groups[g]))]) for g in picks]
