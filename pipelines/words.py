"""Split raw text into words with character offsets into the original string.

Words are runs of letters, marks and digits (hyphen-joined runs stay one word, however long); every
other visible character is a word of its own; whitespace and control characters separate words.
Han and kana characters, which are written without spaces, are one word each; runs of Thai,
Lao, Khmer and Myanmar are cut where the subword tokenizer cuts them.
"""
from __future__ import annotations

import unicodedata
from typing import Callable, Sequence

Span = tuple[int, int]
_JOINERS = {"-", "\u2010", "\u2011"}
_NO_SPACE_RANGES = ((0x0E00, 0x0EFF), (0x1000, 0x109F), (0x1780, 0x17FF), (0x19E0, 0x19FF))
_CJK_RANGES = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF),
               (0x20000, 0x2FA1F), (0x31F0, 0x31FF), (0xFF66, 0xFF9F))


def _in(ranges: Sequence[Span], code: int) -> bool:
    return any(lo <= code <= hi for lo, hi in ranges)


def char_kind(ch: str) -> str:
    """Classify a character: space, cjk, nospace, word, join (format chars) or punct."""
    code = ord(ch)
    if _in(_CJK_RANGES, code):
        return "cjk"
    if _in(_NO_SPACE_RANGES, code):
        return "nospace"
    cat = unicodedata.category(ch)
    if ch.isspace() or cat in ("Zs", "Zl", "Zp", "Cc", "Cs", "Co", "Cn"):
        return "space"
    if cat[0] in "LMN" or ch == "_":
        return "word"
    if cat == "Cf" or cat == "Sk" and code in range(0x1F3FB, 0x1F400):
        return "join"
    return "punct"


def segment_words(text: str, split_run: Callable[[str], list[Span]] | None = None) -> list[Span]:
    """Character spans ``(start, end)`` of the words of ``text``; ``text[start:end]`` is the word."""
    spans: list[Span] = []
    i, n = 0, len(text)
    while i < n:
        kind = char_kind(text[i])
        if kind == "space":
            i += 1
            continue
        if kind == "join":
            if spans and spans[-1][1] == i:  # zero-width joiner, variation selector: stay with the word
                spans[-1] = (spans[-1][0], i + 1)
            i += 1
            continue
        if kind in ("cjk", "punct"):
            j = i + 1
            while j < n and (char_kind(text[j]) == "join" or unicodedata.category(text[j])[0] == "M"):
                j += 1  # combining marks and joiners stay with the character they modify
            spans.append((i, j))
            i = j
            continue
        j = i + 1
        while j < n:
            k = char_kind(text[j])
            if k == kind or k == "join" or (kind == "word" and unicodedata.category(text[j])[0] == "M"):
                j += 1
            elif kind == "word" and text[j] in _JOINERS and j + 1 < n and char_kind(text[j + 1]) == "word":
                j += 2
            else:
                break
        if kind == "nospace" and split_run is not None:
            spans.extend((i + a, i + b) for a, b in split_run(text[i:j]))
        else:
            spans.append((i, j))
        i = j
    return spans


def tokenizer_run_splitter(tokenizer) -> Callable[[str], list[Span]]:
    """A ``split_run`` that cuts a run of a script without spaces where the tokenizer's pieces end."""

    def split(run: str) -> list[Span]:
        enc = tokenizer(run, add_special_tokens=False, return_offsets_mapping=True)
        cuts = sorted({end for _, end in enc["offset_mapping"] if 0 < end <= len(run)} | {len(run)})
        spans, start = [], 0
        for end in cuts:
            if end > start:
                spans.append((start, end))
                start = end
        return spans

    return split
