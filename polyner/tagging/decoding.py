"""Word labels from word probabilities: first-subword argmax, or the best IOB2-valid sequence (Viterbi).

The model scores each word's labels independently, so its argmax can open an entity with ``I-X`` or
continue an ``X`` with ``I-Y``. Constrained decoding picks the sequence with the highest product of word
probabilities among those IOB2 allows (``I-X`` only after ``B-X`` or ``I-X``), as spaCy's transition-based
NER and CRF taggers do by construction; with no invalid step in the argmax it returns the argmax.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

DECODINGS = ("viterbi", "argmax")
_FORBIDDEN = -1e9
_FLOOR = 1e-12  # log of a zero probability stays finite


def check_decoding(decoding: str) -> str:
    """``decoding`` itself when known; a ValueError naming the choices otherwise."""
    if decoding not in DECODINGS:
        raise ValueError(f"unknown decoding {decoding!r}: expected one of {DECODINGS}")
    return decoding


def transition_mask(labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``allowed[previous, current]`` and ``may_start[current]`` for IOB2 over ``labels``."""
    inside = [label.startswith("I-") for label in labels]
    kind = [label[2:] if label != "O" else "" for label in labels]
    allowed = np.array([[not inside[j] or (labels[i] != "O" and kind[i] == kind[j]) for j in range(len(labels))]
                        for i in range(len(labels))])
    return allowed, ~np.array(inside)


class Decoder:
    """Decode a ``words x labels`` probability matrix into label indices (see the module docstring)."""

    def __init__(self, labels: Sequence[str], decoding: str = "viterbi") -> None:
        self.decoding = check_decoding(decoding)
        allowed, may_start = transition_mask(labels)
        self._allowed, self._may_start = allowed, may_start
        self._transition = np.where(allowed, 0.0, _FORBIDDEN)
        self._start = np.where(may_start, 0.0, _FORBIDDEN)

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        """The chosen label index of each word (an empty array for no words)."""
        if len(probs) == 0:
            return np.zeros(0, dtype=np.int64)
        best = probs.argmax(-1)
        if self.decoding == "argmax" or self.is_valid(best):  # the common case: nothing to repair
            return best
        logp = np.log(np.maximum(probs, _FLOOR))
        score = logp[0] + self._start
        back = np.empty((len(probs), probs.shape[1]), dtype=np.int64)
        for t in range(1, len(probs)):
            candidates = score[:, None] + self._transition  # previous x current
            back[t] = candidates.argmax(0)
            score = candidates[back[t], np.arange(probs.shape[1])] + logp[t]
        path = np.empty(len(probs), dtype=np.int64)  # backtrack the best valid sequence
        path[-1] = int(score.argmax())
        for t in range(len(probs) - 1, 0, -1):
            path[t - 1] = back[t][path[t]]
        return path

    def is_valid(self, path: np.ndarray) -> bool:
        """Whether a label-index sequence is IOB2-valid (no I-X without a preceding B-X / I-X)."""
        return bool(self._may_start[path[0]] and self._allowed[path[:-1], path[1:]].all())
