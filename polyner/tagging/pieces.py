"""How a model reads pre-split words as pieces: one place for the tagger and for every training path.

A model's ``ner_unspaced_runs`` (config.json) says how the words of a run of a script written without spaces
(Han, kana, Thai, ...; the words :func:`~polyner.tagging.words.recut_words` cuts) become pieces:

* ``"words"`` (models without the field): every word is tokenized as a word of its own, so each starts with the
  word-initial ``▁``. A Chinese run then takes about twice the pieces it takes as text, nearly half of them a bare
  ``▁`` with no content, and many sentences no longer fit a 64-piece window.
* ``"text"``: the run is tokenized as it is written, in one piece sequence, and each word takes the pieces that
  start inside it. Words cut at the tokenizer's pieces (as the tagger cuts them) get exactly their own pieces.

Every other word is tokenized on its own in both modes.

The tagger gives the tokenizer each word in its reading form (:func:`reading_form`): without the Arabic tatweel
(ـ), a letter-stretching mark that XLM-R's pieces do not join (كتـــاب reads as كتاب), and without Arabic vowel marks
and Hebrew points (كِتاب, שָׁלוֹם read as كتاب, שלום): the texts our models learn from are mostly written without
them, and one mark a word cost the shipped default 22 points of F1 on Arabic and Hebrew dev; in a Persian text the
Arabic yeh and kaf are read as Persian's, and a text in capitals is read in title case (:func:`reading_forms`). The
word's text and offsets stay as written. Training reads its data as written: it seldom has these marks, and the teacher outputs
cached for a distillation run are keyed on the pieces of its text.
"""
from __future__ import annotations

import re
from bisect import bisect_right
from typing import Any, Sequence

from polyner.languages import written_in_turkish
from polyner.tagging.words import run_groups

UNSPACED_RUNS = ("words", "text")
#: What the reading form leaves out: tatweel, the Arabic vowel marks (fatha, tanween, shadda, sukun, ..., the dagger
#: alif; not the maddah and hamza marks U+0653-0655, which decomposed text writes as part of a letter: ئ = ي + U+0654)
#: and the Hebrew points and cantillation marks (not maqaf, paseq, sof pasuq, nun hafukha: punctuation).
UNREAD = frozenset([0x0640, *range(0x064B, 0x0653), *range(0x0656, 0x0660), 0x0670, *range(0x0591, 0x05BE), 0x05BF,
                    0x05C1, 0x05C2, 0x05C4, 0x05C5, 0x05C7])
_UNREAD = re.compile("[" + "".join(map(chr, sorted(UNREAD))) + "]")


def reading_form(word: str) -> str:
    """``word`` as the tokenizer is given it (see the module docstring): without :data:`UNREAD` characters, unless
    that leaves nothing (a line of tatweel stays a word the model reads)."""
    if _UNREAD.search(word) is None:
        return word
    return _UNREAD.sub("", word) or word


#: Letters Persian (and Urdu) write and standard Arabic does not: a text with more of them than of the Arabic ة is
#: Persian, and its Arabic yeh, kaf and alif maqsura (ي ك ى, which Persian typed on an Arabic keyboard often has)
#: are read as the Persian ی and ک, the letters its training text has (Persian dev written with ي and ك: 54.45 ->
#: 33.02 for the shipped default). Iraqi and Gulf Arabic write گ and چ too, and foreign names in Arabic news have
#: them (گوگل), but Arabic text has ة where Persian has next to none; Uyghur and Pashto (their own letters below)
#: keep their ي and ى.
PERSIAN_ONLY = re.compile("[پچژگ]")
TA_MARBUTA = "\u0629"
NOT_PERSIAN = re.compile("[\u06d0\u06cd\u06c6\u06c8\u06c7\u06ad\u06ab\u069a\u0681]")  # ې ۍ ۆ ۈ ۇ ڭ ګ ښ ځ
_TO_PERSIAN = str.maketrans({"\u064a": "\u06cc", "\u0643": "\u06a9", "\u0649": "\u06cc"})


def is_persian(text: str) -> bool:
    """Whether ``text`` is Persian written in Arabic script (see :data:`PERSIAN_ONLY`)."""
    persian = len(PERSIAN_ONLY.findall(text))
    return persian > text.count(TA_MARBUTA) and NOT_PERSIAN.search(text) is None


#: A text whose cased letters are at least this share uppercase (at least :data:`CAPS_MIN_LETTERS` of them, and most
#: of its letters: not Latin acronyms in Arabic text) is written in capitals: its words are read in title case.
#: Models learn names from their capitals; in a text of capitals every word has them (en dev in capitals: 35.45
#: against 74.06; title-cased 61.85; de 14.52 -> 47.67, ru 6.06 -> 52.89, tr 10.02 -> 36.96). Short lines in
#: capitals (bylines, "( ANTONIO MONTERO )") are left as written: the training data has them. Its cost: Spanish dev
#: has 38 EFE headlines in capitals, like its training data, which the model read well as written (es 77.97 ->
#: 77.17; whole dev 71.62 -> 71.59); keeping short words in capitals cost less there (77.70) but lost a quarter of the
#: gain in German (36.61).
CAPS_SHARE = 0.9
CAPS_MIN_LETTERS = 30


def reading_forms(words: Sequence[str]) -> list[str]:
    """The reading form of each word of one text (:func:`reading_form`); a text in capitals in title case
    (:data:`CAPS_SHARE`), a Persian text with Persian's yeh and kaf (:data:`PERSIAN_ONLY`)."""
    forms = [reading_form(word) for word in words]
    text = "".join(forms)
    if in_capitals(text):
        turkish = written_in_turkish(" ".join(forms))
        forms = [title_case(form, turkish) for form in forms]
    if PERSIAN_ONLY.search(text) is not None and is_persian(text):
        forms = [form.translate(_TO_PERSIAN) for form in forms]
    return forms


_TURKISH_LOWER = str.maketrans({"I": "ı", "İ": "i"})
_ALNUM_RUN = re.compile(r"[^\W_]+")


def lower_case(text: str, turkish: bool = False) -> str:
    """``text`` in lower case; with ``turkish`` I and İ lower to ı and i (``str.lower`` gives i and i + a combining
    dot)."""
    return (text.translate(_TURKISH_LOWER) if turkish else text).lower()


def title_case(word: str, turkish: bool = False) -> str:
    """``word`` with each run of letters and digits capital first, lower case after (DİYARBAKIR: Diyarbakır with
    ``turkish``, BADEN-WÜRTTEMBERG: Baden-Württemberg, ΟΔΟΣ: Οδος, 21ST: 21st). After an apostrophe inside a word a
    run of one or two letters is lower case (MCDONALD'S: Mcdonald's, WE'LL: We'll), a longer one a name (O'BRIEN:
    O'Brien). Unlike ``str.title``, Turkish İ and I lower to i and ı, never to i + a combining dot."""
    out, last = [], 0
    for run in _ALNUM_RUN.finditer(word):
        start, text = run.start(), run.group()
        rest = lower_case(text[1:], turkish).replace("i\u0307", "i")
        after_apostrophe = start >= 2 and word[start - 1] in "'’" and word[start - 2].isalnum()
        first = text[0].lower() if after_apostrophe and len(text) < 3 else text[0]
        out.append(word[last:start] + first + rest)
        last = run.end()
    return "".join(out) + word[last:]


def in_capitals(text: str) -> bool:
    """Whether ``text`` is written in capitals (see :data:`CAPS_SHARE`)."""
    upper = lower = letters = 0
    for ch in text:
        if ch.isupper():
            upper += 1
        elif ch.islower():
            lower += 1
        elif ch.isalpha():
            letters += 1
    cased = upper + lower
    return cased >= CAPS_MIN_LETTERS and cased > letters and upper >= CAPS_SHARE * cased


def check_unspaced_runs(value: Any) -> str:
    """``value`` if it is one of :data:`UNSPACED_RUNS`, else a ValueError."""
    if value not in UNSPACED_RUNS:
        raise ValueError(f"unspaced_runs must be one of {', '.join(map(repr, UNSPACED_RUNS))}, not {value!r}")
    return value


def special_ids(tokenizer) -> tuple[int, int]:
    """The ids that open and close a model's input (``<s>``/``</s>`` for XLM-R, ``[CLS]``/``[SEP]`` for BERT)."""
    bos = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    eos = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    return bos, eos


def joined_runs(words: Sequence[str], unspaced_runs: str, adjacent: Sequence[bool] | None = None) -> list[str]:
    """The units the tokenizer is given for ``words``: the words themselves, or with each run joined (``"text"``;
    ``adjacent`` as in :func:`~polyner.tagging.words.run_groups`)."""
    if unspaced_runs == "words":
        return list(words)
    return ["".join(words[a:b]) for a, b in run_groups(words, adjacent)]


def word_pieces(tokenizer, sentences: Sequence[Sequence[str]], unspaced_runs: str = "words",
                adjacent: Sequence[Sequence[bool]] | None = None) -> list[list[list[int]]]:
    """The piece ids of every word of every sentence, without special tokens (see the module docstring).

    ``adjacent`` (words cut out of raw text) gives for each sentence whether each word touches the next in the
    text, so that a run is never joined across a space (None: pre-split sentences, every pair touches).
    A word may get no piece: an empty word, or (``"text"``) a word whose first character falls inside a piece
    that started in the word before, which happens only when the words were not cut at this tokenizer's pieces.
    """
    check_unspaced_runs(unspaced_runs)
    out: list[list[list[int]]] = [[[] for _ in words] for words in sentences]
    filled = [i for i, words in enumerate(sentences) if len(words)]
    if not filled:
        return out
    touching = {i: None if adjacent is None else adjacent[i] for i in filled}
    groups = {i: ([(w, w + 1) for w in range(len(sentences[i]))] if unspaced_runs == "words"
                  else run_groups(sentences[i], touching[i])) for i in filled}
    units = [joined_runs(sentences[i], unspaced_runs, touching[i]) for i in filled]
    enc = tokenizer(units, is_split_into_words=True, add_special_tokens=False,
                    return_offsets_mapping=unspaced_runs == "text")
    for row, i in enumerate(filled):
        words, pieces = sentences[i], out[i]
        offsets = enc["offset_mapping"][row] if unspaced_runs == "text" else None
        starts_of: dict[int, list[int]] = {}
        for k, (piece, unit) in enumerate(zip(enc["input_ids"][row], enc.word_ids(row))):
            if unit is None:
                continue
            a, b = groups[i][unit]
            if b - a == 1:
                pieces[a].append(piece)
                continue
            starts = starts_of.get(unit)
            if starts is None:  # where each word of the run starts in the joined run
                starts = starts_of[unit] = [0]
                for w in range(a, b - 1):
                    starts.append(starts[-1] + len(words[w]))
            pieces[a + max(bisect_right(starts, offsets[k][0]) - 1, 0)].append(piece)
    return out
