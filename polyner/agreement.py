"""Entity agreement between two taggers: how many entities both find with the same (start, end, label).

Used to check that another backend (ONNX fp32, int8) gives the entities of the torch model. The rate
is the number of entities found identically by both over the number of distinct entities found by
either (``matched / (matched + only_a + only_b)``), so an entity missed, added, moved or relabelled
on either side counts against it; two outputs with no entities at all agree fully.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Iterable, Sequence

from polyner.labels import tags_to_spans


@dataclass
class Agreement:
    """Counts of entities found by both, only by A and only by B."""

    matched: int
    only_a: int
    only_b: int
    texts: int

    @property
    def rate(self) -> float:
        """Exact-match agreement: matched over distinct entities of A and B together (1.0 when both found none)."""
        union = self.matched + self.only_a + self.only_b
        return self.matched / union if union else 1.0

    @property
    def recovered(self) -> float:
        """Share of A's entities that B found identically (A is the reference)."""
        total = self.matched + self.only_a
        return self.matched / total if total else 1.0

    def describe(self) -> str:
        """One line: rate, counts."""
        return (f"{100 * self.rate:.2f}% of entities agree ({self.matched} same, {self.only_a} only in A, "
                f"{self.only_b} only in B, {self.texts} texts)")


def entity_agreement(a: Sequence[Iterable[Hashable]], b: Sequence[Iterable[Hashable]]) -> Agreement:
    """Agreement of two outputs over the same texts, each text's entities given as (start, end, label) keys."""
    if len(a) != len(b):
        raise ValueError(f"the outputs cover {len(a)} and {len(b)} texts: they must cover the same texts")
    matched = only_a = only_b = 0
    for left, right in zip(a, b):
        left, right = set(left), set(right)
        matched += len(left & right)
        only_a += len(left - right)
        only_b += len(right - left)
    return Agreement(matched, only_a, only_b, len(a))


def entity_keys(entities: Iterable[dict]) -> set[tuple[int, int, str]]:
    """The (start, end, label) keys of a tagger's entity dicts."""
    return {(e["start"], e["end"], e["label"]) for e in entities}


def tag_keys(tags: Sequence[str]) -> set[tuple[int, int, str]]:
    """The (first word, end word, label) keys of the entities in an IOB2 tag sequence."""
    return {(span.start, span.end, span.label) for span in tags_to_spans(tags)}


def tagger_agreement(tagger_a, tagger_b, texts: Sequence[str], batch_size: int | None = None) -> Agreement:
    """Agreement of two taggers' entities on raw texts (character offsets)."""
    left = [entity_keys(e) for e in tagger_a(list(texts), batch_size=batch_size)]
    right = [entity_keys(e) for e in tagger_b(list(texts), batch_size=batch_size)]
    return entity_agreement(left, right)


def gold_texts(sentences: Iterable) -> list[str]:
    """Raw texts of gold sentences: their words joined by single spaces."""
    return [" ".join(s.words) for s in sentences if s.words]
