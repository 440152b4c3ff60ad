"""Constrained IOB2 decoding: valid sequences only, the best of them, and the argmax when that is valid."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from polyner.labels import LABELS
from polyner.tagging.decoding import Decoder, check_decoding

LABEL = {label: i for i, label in enumerate(LABELS)}


def is_valid(tags: list[str]) -> bool:
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and (previous == "O" or previous[2:] != tag[2:]):
            return False
        previous = tag
    return True


def rows(*pairs: dict[str, float]) -> np.ndarray:
    """A probability matrix from {label: probability} rows; the rest of each row shared evenly."""
    out = np.zeros((len(pairs), len(LABELS)), dtype=np.float32)
    for r, row in enumerate(pairs):
        rest = (1.0 - sum(row.values())) / (len(LABELS) - len(row))
        out[r] = rest
        for label, p in row.items():
            out[r, LABEL[label]] = p
    return out


def test_a_leading_inside_tag_becomes_the_opener_it_needs():
    probs = rows({"I-PER": 0.6, "B-PER": 0.3}, {"I-PER": 0.9})
    assert [LABELS[i] for i in Decoder(LABELS)(probs)] == ["B-PER", "I-PER"]
    assert [LABELS[i] for i in Decoder(LABELS, "argmax")(probs)] == ["I-PER", "I-PER"]


def test_a_type_switch_inside_an_entity_is_resolved_by_probability():
    probs = rows({"B-ORG": 0.9}, {"I-LOC": 0.5, "I-ORG": 0.4}, {"O": 0.9})
    assert [LABELS[i] for i in Decoder(LABELS)(probs)] == ["B-ORG", "I-ORG", "O"]


def test_brute_force_best_valid_sequence():
    rng = np.random.default_rng(0)
    decode = Decoder(LABELS)
    for _ in range(40):
        n = int(rng.integers(1, 5))
        probs = rng.dirichlet(np.ones(len(LABELS)) * 0.3, size=n).astype(np.float32)
        got = [LABELS[i] for i in decode(probs)]
        assert is_valid(got)
        best = max((seq for seq in itertools.product(range(len(LABELS)), repeat=n)
                    if is_valid([LABELS[i] for i in seq])),
                   key=lambda seq: float(np.sum(np.log(np.maximum(probs[np.arange(n), list(seq)], 1e-12)))))
        score = lambda seq: float(np.sum(np.log(np.maximum(probs[np.arange(n), list(seq)], 1e-12))))  # noqa: E731
        assert score([LABEL[t] for t in got]) == pytest.approx(score(best), abs=1e-4)
        argmax = probs.argmax(-1)
        if is_valid([LABELS[i] for i in argmax]):
            assert list(decode(probs)) == list(argmax)


def test_empty_sentence_and_unknown_decoding():
    assert Decoder(LABELS)(np.zeros((0, len(LABELS)), dtype=np.float32)).shape == (0,)
    with pytest.raises(ValueError, match="unknown decoding 'beam'"):
        check_decoding("beam")


def test_tagger_decoding_option(tokenizer):
    """A model that only ever says I-PER: viterbi opens each run with B-PER, argmax leaves the I-PER;
    both give the same entities (the entity reader opens a run at a stray I-X)."""
    import torch

    from polyner.tagging.tagger import Tagger, TaggerConfig
    from conftest import CapitalRuleModel

    class InsideOnly(CapitalRuleModel):
        def forward(self, input_ids, attention_mask):
            out = super().forward(input_ids, attention_mask)
            out.logits[..., 1] = torch.where(out.logits[..., 2] > 0, 1.0, out.logits[..., 1])
            return out

    words = [["Anna", "Maria", "met", "Maria", "today"]]
    viterbi = Tagger(InsideOnly(tokenizer), tokenizer)
    argmax = Tagger(InsideOnly(tokenizer), tokenizer, TaggerConfig(decoding="argmax"))
    assert viterbi.tag_words(words) == [["B-PER", "I-PER", "O", "B-PER", "O"]]
    assert argmax.tag_words(words) == [["I-PER", "I-PER", "O", "I-PER", "O"]]
    text = "Anna Maria met Maria today"
    assert [(e["start"], e["end"]) for e in viterbi(text)] == [(e["start"], e["end"]) for e in argmax(text)]
    with pytest.raises(ValueError, match="unknown decoding"):
        Tagger(InsideOnly(tokenizer), tokenizer, TaggerConfig(decoding="crf"))


def test_validity_check_agrees_with_the_rule():
    decode = Decoder(LABELS)
    rng = np.random.default_rng(1)
    for _ in range(300):
        seq = rng.integers(0, len(LABELS), size=int(rng.integers(1, 6)))
        assert decode.is_valid(seq) == is_valid([LABELS[i] for i in seq])
