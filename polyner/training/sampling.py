"""Language-mixed batch sampling that is repeatable from (seed, step) alone, so resume is exact."""
from __future__ import annotations

from collections import defaultdict
from typing import Mapping, Sequence

import numpy as np


class MixedLanguageSampler:
    """Draw batches that mix groups (languages, or source/language pairs), each weighted by ``size ** alpha``.

    ``weights`` multiplies the pull of named groups (silver sources get less than gold, for example).
    With ``lengths`` and ``bucket`` > 1, ``bucket`` consecutive batches are drawn together, sorted by
    length and cut into batches of similar length (less padding, the same sentences overall); which
    of them is batch ``step`` still depends on (seed, step) alone.
    """

    def __init__(self, langs: Sequence[str], alpha: float = 0.5, seed: int = 13,
                 weights: Mapping[str, float] | None = None, lengths: Sequence[int] | None = None,
                 bucket: int = 1) -> None:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, lang in enumerate(langs):
            groups[lang].append(i)
        if not groups:
            raise ValueError("no training sentences to sample from")
        if bucket < 1:
            raise ValueError(f"bucket must be >= 1, got {bucket}")
        if bucket > 1 and (lengths is None or len(lengths) != len(langs)):
            raise ValueError("length bucketing needs one length per sentence")
        self.langs = sorted(groups)
        self.groups = [np.asarray(groups[lang]) for lang in self.langs]
        sizes = np.array([len(g) for g in self.groups], dtype=np.float64)
        pull = np.array([(weights or {}).get(lang, 1.0) for lang in self.langs], dtype=np.float64)
        if (pull < 0).any() or not (pull > 0).any():
            raise ValueError("group weights must be >= 0 and not all 0")
        weights_ = pull * sizes ** alpha
        self.probs = weights_ / weights_.sum()
        self.seed = seed
        self.bucket = bucket
        self.lengths = np.asarray(lengths) if lengths is not None else None

    def _draw(self, rng: np.random.Generator, size: int) -> list[int]:
        picks = rng.choice(len(self.groups), size=size, p=self.probs)
        return [int(self.groups[g][rng.integers(len(self.groups[g]))]) for g in picks]

    def batch(self, step: int, size: int) -> list[int]:
        """The sentence indices of batch number ``step`` (the same every time for the same seed)."""
        if self.bucket == 1:
            return self._draw(np.random.default_rng([self.seed, step]), size)
        block, slot = divmod(step, self.bucket)
        rng = np.random.default_rng([self.seed, block, self.bucket])
        drawn = np.asarray(self._draw(rng, size * self.bucket))
        by_length = drawn[np.argsort(self.lengths[drawn], kind="stable")]
        order = rng.permutation(self.bucket)
        chosen = order[slot]
        return [int(i) for i in by_length[chosen * size:(chosen + 1) * size]]
