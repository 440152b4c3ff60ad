"""Split raw text into words with character offsets into the original string.

Words are runs of letters, marks and digits (hyphen-joined runs stay one word, however long; punctuation that the
corpora keep inside words stays there: צה"ל, O'Brien, Ankara'da, EU:n, U.S.; a web or e-mail address is one
word); every other visible character is a word of its own; whitespace and control characters separate words.
Scripts written without spaces (Han and kana; Thai, Lao, Khmer, Myanmar) have no word boundaries
in the text: a run of them is cut where the subword tokenizer cuts it, so that every word is whole
pieces and every piece lies inside one word, and an entity edge can only fall between pieces.
:func:`recut_words` reads pre-split sentences (gold data, ``Tagger.tag_words``) the same way, so that
training and tagging see the same words.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

from polyner.labels import inside, repair_iob2
from polyner.tagging.word_punctuation import address_end, inner_punctuation

Span = tuple[int, int]
SplitRun = Callable[[str], list[Span]]  # the words of a run of a script without spaces, as spans into the run
_JOINERS = {"-", "\u2010", "\u2011"}
_NO_SPACE_RANGES = ((0x0E00, 0x0EFF), (0x1000, 0x109F), (0x1780, 0x17FF), (0x19E0, 0x19FF))
# Kana, Han, and the marks written inside Han words: 々 〆 〇 (佐々木, 〆切) and 〻.
_CJK_RANGES = ((0x3005, 0x3007), (0x303B, 0x303B), (0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF),
               (0xF900, 0xFAFF), (0x20000, 0x2FA1F), (0x31F0, 0x31FF), (0xFF66, 0xFF9F))
_REGIONAL_INDICATORS = (0x1F1E6, 0x1F1FF)
_FIRST_UNSPACED = min(lo for lo, _ in _NO_SPACE_RANGES + _CJK_RANGES)
def _in(ranges: Sequence[Span], code: int) -> bool:
    return any(lo <= code <= hi for lo, hi in ranges)


@lru_cache(maxsize=1 << 16)
def char_kind(ch: str) -> str:
    """Classify a character: space, cjk, nospace, word, join (format chars) or punct (cached: texts reuse few).

    The zero-width space is a space: it marks a word break (Thai and Khmer text written with it, Han text copied
    from the web) and the tokenizer reads it as one; the other format characters join, except after Han or kana
    (see :func:`segment_words`)."""
    code = ord(ch)
    if code == 0x200B:
        return "space"
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


def segment_words(text: str, split_run: SplitRun | None = None) -> list[Span]:
    """Character spans ``(start, end)`` of the words of ``text``; ``text[start:end]`` is the word.

    A run of a script without spaces is cut by ``split_run`` (the tagger passes
    :func:`tokenizer_run_splitter`); without one, a Han or kana character is a word and a Thai,
    Lao, Khmer or Myanmar run is one word.
    """
    spans: list[Span] = []
    last_kind = ""  # the kind of the run the last word came from
    i, n = 0, len(text)
    while i < n:
        kind = char_kind(text[i])
        if kind == "space":
            i += 1
            continue
        if kind == "join":
            if spans and spans[-1][1] == i and last_kind != "cjk":  # a ZWJ stays with the word (Han has none)
                spans[-1] = (spans[-1][0], i + 1)
            i += 1
            continue
        last_kind = kind
        if kind == "word" and (end := address_end(text, i)):  # a web or e-mail address is one word
            spans.append((i, end))
            i = end
            continue
        if kind == "punct":  # one character a word; a flag (two regional indicators) is one
            j = _after_marks(text, i + 2 if _is_flag_pair(text, i) else i + 1)
            spans.append((i, _trim_format_chars(text, i, j)))
            i = j
            continue
        j = i + 1
        while j < n:
            k = char_kind(text[j])
            if k == kind or (k == "join" and kind != "cjk") or _is_mark(text[j]):
                j += 1  # combining marks and joiners stay with the character they modify (Han has no joiners:
                # the tokenizer reads a zero-width joiner there as a space, so it ends the run)
            elif kind == "word" and text[j] in _JOINERS and j + 1 < n and char_kind(text[j + 1]) == "word":
                j += 2
            elif kind == "word" and (inner := inner_punctuation(text, i, j)):
                j += inner
            else:
                break
        if kind == "word":
            spans.append((i, _trim_format_chars(text, i, j)))
        else:
            run = [(i + a, i + b) for a, b in _cut_run(text[i:j], kind, split_run)]
            if run:  # the run's last word loses the format characters it ends with (inside a run they stay)
                run[-1] = (run[-1][0], _trim_format_chars(text, *run[-1]))
            spans.extend(run)
        i = j
    return spans


def is_symbol_word(word: str) -> bool:
    """Whether ``word`` is pictographic symbols only (emoji, a flag, © ® ™), with what joins them (a variation
    selector, a skin tone, a zero-width joiner): no name starts or ends with one. Math and currency signs and modifier
    letters are not (the + of Canal+ or Disney+ is part of the name)."""
    categories = [unicodedata.category(ch) for ch in word]
    return "So" in categories and all(c in ("So", "Sk", "Mn", "Me", "Cf") for c in categories)


def _is_flag_pair(text: str, i: int) -> bool:
    """Whether ``text[i:i + 2]`` is two regional indicator symbols (a flag, 🇫🇷). Flags pair from the left: a run of
    them is read two by two, as renderers read it."""
    return (i + 1 < len(text) and _REGIONAL_INDICATORS[0] <= ord(text[i]) <= _REGIONAL_INDICATORS[1]
            and _REGIONAL_INDICATORS[0] <= ord(text[i + 1]) <= _REGIONAL_INDICATORS[1])


def _trim_format_chars(text: str, start: int, end: int) -> int:
    """The end of the word ``text[start:end]`` without the invisible format characters it ends with (a right-to-left
    mark after an Arabic or Hebrew word, a bidi pop, a zero-width joiner with nothing to join): they belong to no
    entity. Inside a word (a Persian zero-width non-joiner, a soft hyphen) they stay."""
    while end - 1 > start and unicodedata.category(text[end - 1]) == "Cf":
        end -= 1
    return end


@lru_cache(maxsize=1 << 16)
def _is_mark(ch: str) -> bool:
    """A combining mark (Unicode category M*)."""
    return unicodedata.category(ch)[0] == "M"


def _after_marks(text: str, j: int) -> int:
    """The end of the combining marks and joiners that start at ``j``."""
    while j < len(text) and (char_kind(text[j]) == "join" or _is_mark(text[j])):
        j += 1
    return j


def _cut_run(run: str, kind: str, split_run: SplitRun | None) -> list[Span]:
    """The words of a run of one script written without spaces (see :func:`segment_words`)."""
    if split_run is not None:
        return split_run(run)
    if kind == "nospace":
        return [(0, len(run))]
    spans, i = [], 0
    while i < len(run):
        j = _after_marks(run, i + 1)
        spans.append((i, j))
        i = j
    return spans


def unspaced_kind(word: str) -> str | None:
    """The kind ("cjk" or "nospace") of a word in one script written without spaces (marks allowed), else None."""
    if not word or ord(word[0]) < _FIRST_UNSPACED:  # most words: Latin, Cyrillic, Arabic, Devanagari, ...
        return None
    kind = char_kind(word[0])
    if kind not in ("cjk", "nospace"):
        return None
    for ch in word[1:]:
        if char_kind(ch) not in (kind, "join") and not _is_mark(ch):
            return None
    return kind


@dataclass(frozen=True)
class Recut:
    """A pre-split sentence read as the tagger reads text: its ``words``, and for each of them ``source`` (the
    given word holding its first character) and ``starts`` (whether it begins where that word begins);
    ``holder[w]`` is the word holding the first character of given word ``w``."""

    words: list[str]
    source: list[int]
    starts: list[bool]
    holder: list[int]

    def tags_of(self, tags: Sequence[str]) -> list[str]:
        """The given words' IOB2 tags carried over to :attr:`words` (a word starting inside an entity continues it)."""
        carried = [tags[w] if start else inside(tags[w]) for w, start in zip(self.source, self.starts)]
        return repair_iob2(carried)

    def back(self, tagged: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
        """Labels of :attr:`words` carried back to the given words: each takes the label of the word holding its
        first character, as a continuation when that word began earlier."""
        return [tagged[h] if self.source[h] == w and self.starts[h] else (inside(tagged[h][0]), tagged[h][1])
                for w, h in enumerate(self.holder)]


def run_groups(words: Sequence[str], adjacent: Sequence[bool] | None = None) -> list[Span]:
    """``[start, end)`` ranges of ``words``: each run of adjacent words of one script written without spaces
    (:func:`unspaced_kind`), and every other word on its own.

    ``adjacent[k]`` says whether word ``k + 1`` follows word ``k`` with nothing between them in the text (words cut
    out of raw text: a space ends a run); None reads every pair as adjacent (pre-split sentences: gold data).
    """
    groups: list[Span] = []
    i = 0
    while i < len(words):
        kind = unspaced_kind(words[i])
        j = i + 1
        if kind is not None:
            while j < len(words) and unspaced_kind(words[j]) == kind and (adjacent is None or adjacent[j - 1]):
                j += 1
        groups.append((i, j))
        i = j
    return groups


def recut_words(words: Sequence[str], split_run: SplitRun | None = None) -> Recut:
    """Join adjacent given words of one script without spaces, as that script is written, and cut the
    runs again as :func:`segment_words` cuts them; other words are kept as they are."""
    out: list[str] = []
    source: list[int] = []
    starts: list[bool] = []
    holder: list[int] = []
    for i, j in run_groups(words):
        kind = unspaced_kind(words[i])
        if kind is None:
            holder.append(len(out))
            out.append(words[i])
            source.append(i)
            starts.append(True)
            continue
        run = "".join(words[i:j])
        owner = [w for w in range(i, j) for _ in words[w]]  # the given word of each character of the run
        offset = [k for w in range(i, j) for k in range(len(words[w]))]
        for a, b in _cut_run(run, kind, split_run):
            if a >= b:
                continue
            for c in range(a, b):
                if offset[c] == 0:
                    holder.append(len(out))
            out.append(run[a:b])
            source.append(owner[a])
            starts.append(offset[a] == 0)
    return Recut(out, source, starts, holder)


def tokenizer_run_splitter(tokenizer) -> SplitRun:
    """A ``split_run`` that cuts a run of a script without spaces where the tokenizer's pieces end, but never
    before a combining mark or joiner (a piece ending inside a character cluster continues into the next word)."""

    backend = getattr(tokenizer, "backend_tokenizer", None)  # one lookup, not the whole vocabulary as a dict
    # the word-initial ▁ alone: its offsets cover the run's first character
    bare_space = backend.token_to_id("\u2581") if backend is not None else tokenizer.get_vocab().get("\u2581")

    def split(run: str) -> list[Span]:
        enc = tokenizer(run, add_special_tokens=False, return_offsets_mapping=True)
        cuts = sorted({end for piece, (_, end) in zip(enc["input_ids"], enc["offset_mapping"])
                       if piece != bare_space and 0 < end < len(run) and _after_marks(run, end) == end}
                      | {len(run)})
        spans, start = [], 0
        for end in cuts:
            if end > start:
                spans.append((start, end))
                start = end
        return spans

    return split
