"""The one label scheme of polyner: IOB2 over PER, ORG and LOC."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

ENTITY_TYPES: tuple[str, ...] = ("PER", "ORG", "LOC")
LABELS: tuple[str, ...] = ("O",) + tuple(f"{p}-{t}" for t in ENTITY_TYPES for p in ("B", "I"))
ID2LABEL: dict[int, str] = dict(enumerate(LABELS))
LABEL2ID: dict[str, int] = {label: i for i, label in ID2LABEL.items()}
IGNORE_INDEX = -100


@dataclass(frozen=True)
class TagSpan:
    """An entity over word indices: words[start:end] carry the type ``label``."""

    start: int
    end: int
    label: str


def normalize_tag(tag: str) -> str:
    """Map a tag onto the scheme: unknown types become O, IOB1/BIOES prefixes become IOB2."""
    tag = tag.strip().upper()
    if tag in ("", "O"):
        return "O"
    prefix, _, kind = tag.partition("-")
    if not kind:
        return "O"
    kind = {"PERSON": "PER", "PERS": "PER", "LOCATION": "LOC", "GPE": "LOC", "ORGANIZATION": "ORG"}.get(kind, kind)
    if kind not in ENTITY_TYPES:
        return "O"
    prefix = {"S": "B", "E": "I", "L": "I", "U": "B"}.get(prefix, prefix)
    return f"{prefix}-{kind}" if prefix in ("B", "I") else "O"


def inside(tag: str) -> str:
    """The tag of a later part of what ``tag`` labels: I-X for B-X or I-X, O for O."""
    return tag if tag == "O" else "I-" + tag[2:]


def repair_iob2(tags: Sequence[str]) -> list[str]:
    """Turn every I-X that does not continue an X into B-X, as the decoder reads it."""
    fixed: list[str] = []
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tag = "B-" + tag[2:]
        fixed.append(tag)
        previous = tag
    return fixed


def tags_to_spans(tags: Sequence[str]) -> list[TagSpan]:
    """Entities as maximal runs B-X I-X*; an I-X with no opener starts a new entity."""
    spans: list[TagSpan] = []
    start, kind = -1, ""
    for i, tag in enumerate(list(tags) + ["O"]):
        continues = tag.startswith("I-") and tag[2:] == kind
        if start >= 0 and not continues:
            spans.append(TagSpan(start, i, kind))
            start, kind = -1, ""
        if tag != "O" and not continues:
            start, kind = i, tag[2:]
    return spans

