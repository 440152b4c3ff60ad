"""The transfer set: unlabeled text, gold and silver training text with labels dropped, and augmented text.

Every sentence is a list of words split exactly as the tagger splits raw text (gold and augmented
sentences are read through ``recut_words``, as ``Tagger.tag_words`` reads them), so the student is
distilled on the input it will see. Augmented sentences swap entity mentions for other names of
the same type, language and script; their sources are the gold training sentences and, for
languages without gold data, unlabeled sentences tagged by the teacher.
"""
from __future__ import annotations

import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from polyner.data.iob2 import Sentence, read_gold
from polyner.data.training_sets import training_files
from polyner.tagging.words import recut_words, segment_words

logger = logging.getLogger(__name__)


@dataclass
class TransferSentence:
    """One transfer sentence: words, language and where it came from (unlabeled, gold, augmented)."""

    words: list[str]
    lang: str
    origin: str


class MissingLanguageError(ValueError):
    """A requested language has no text at all to distil on."""


def unlabeled_files(paths: Iterable[str | Path], languages: Sequence[str]) -> dict[str, list[Path]]:
    """Files per language: ``LANG.txt`` files, directories holding them, or ``LANG=PATH`` pairs."""
    found: dict[str, list[Path]] = defaultdict(list)
    wanted = set(languages)
    for item in paths:
        item = str(item)
        if "=" in item and not Path(item).exists():
            lang, _, path = item.partition("=")
            candidates = [(lang.strip(), Path(path))]
        else:
            path = Path(item)
            if path.is_dir():
                candidates = [(p.stem, p) for p in sorted(path.glob("*.txt"))]
            else:
                candidates = [(path.stem, path)]
        for lang, path in candidates:
            if not path.exists():
                raise FileNotFoundError(f"unlabeled text file not found: {path}")
            if lang in wanted:
                found[lang].append(path)
    return found


#: Letters that nearly every sentence of three or more words holds in these languages (Turkish: all but 1.2% of our
#: gold sentences). Such a line with none of them was written with them stripped, as 73% of the lines of our
#: unlabeled Turkish are ("Hi itirazm yok" for "Hiç itirazım yok"): text no one writes, not transfer text.
EXPECTED_LETTERS: dict[str, frozenset[str]] = {"tr": frozenset("çğıöşüÇĞİÖŞÜ")}
STRIPPED_MIN_WORDS = 3


def letters_stripped(line: str, lang: str) -> bool:
    """Whether ``line`` of language ``lang`` lost the letters every longer sentence of it has (see
    :data:`EXPECTED_LETTERS`); False for other languages and short lines."""
    letters = EXPECTED_LETTERS.get(lang)
    return letters is not None and len(line.split()) >= STRIPPED_MIN_WORDS and letters.isdisjoint(line)


def usable_lines(paths: Sequence[Path], lang: str = "") -> list[str]:
    """The non-empty lines of ``paths`` in file order, without lines of ``lang`` whose letters were stripped
    (:func:`letters_stripped`)."""
    lines = [line.strip() for path in paths for line in path.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    kept = [line for line in lines if not letters_stripped(line, lang)]
    if len(kept) < len(lines):
        logger.info("%s: %d of %d unlabeled lines left out, written without the letters of the language",
                    lang, len(lines) - len(kept), len(lines))
    return kept


def read_lines(paths: Sequence[Path], limit: int, rng: random.Random, lang: str = "") -> list[str]:
    """A sample of at most ``limit`` of the :func:`usable_lines` of ``paths``."""
    kept = usable_lines(paths, lang)
    rng.shuffle(kept)
    return kept[:limit]


def to_words(text: str, split_run: Callable | None = None) -> list[str]:
    """Split raw text into words as the tagger does."""
    return [text[s:e] for s, e in segment_words(text, split_run)]


def balanced_sample(sentences: Sequence[Sentence], limit: int, rng: random.Random | None = None) -> list[Sentence]:
    """At most ``limit`` sentences taken from their sources in turn, so that a large source does not crowd out
    the others of its language; within a source, sentences with entities come first (the transfer text is
    there to teach entities; unlabeled text brings the sentences without). ``rng`` shuffles each source first
    (None keeps the given order)."""
    by_source: dict[str, list[Sentence]] = defaultdict(list)
    for sentence in sentences:
        by_source[sentence.source].append(sentence)
    queues = []
    for source in sorted(by_source):
        group = list(by_source[source])
        if rng is not None:
            rng.shuffle(group)
        group.sort(key=lambda s: all(t == "O" for t in s.tags))  # stable: entities first, order kept otherwise
        queues.append(group)
    picked: list[Sentence] = []
    depth = 0
    while len(picked) < limit and any(depth < len(q) for q in queues):
        picked += [q[depth] for q in queues if depth < len(q)][:limit - len(picked)]
        depth += 1
    return picked


def build_transfer_set(languages: Sequence[str], unlabeled: Sequence[str | Path], gold: str | Path | None,
                       unlabeled_per_language: int, gold_text_per_language: int,
                       augmented_per_language: int, tag_words: Callable[[list[list[str]]], list[list[str]]] | None,
                       exclude_sources: Sequence[str] = (), seed: int = 13,
                       split_run: Callable | None = None, silver: str | Path | None = None,
                       silver_text_per_language: int = 0,
                       text_scale: Mapping[str, float] | None = None) -> list[TransferSentence]:
    """Collect the transfer sentences of ``languages``; raise naming every language left without text.

    ``text_scale`` multiplies a language's unlabeled, gold and silver counts (languages left out: 1).

    ``tag_words`` (the teacher's word tagger) labels unlabeled sentences of languages without
    gold training data, so that they too get augmented text; None skips that. Silver training
    sentences (``silver``) add their text, up to ``silver_text_per_language`` per language.
    """
    unknown = sorted(set(text_scale or {}) - set(languages))
    if unknown:
        raise ValueError(f"language_text_scale names language(s) {', '.join(unknown)} that this run does not "
                         f"distil ({', '.join(languages)})")
    rng = random.Random(seed)
    files = unlabeled_files(unlabeled, languages)
    gold_train: dict[str, list[Sentence]] = defaultdict(list)
    silver_train: dict[str, list[Sentence]] = defaultdict(list)
    if gold is not None:
        for file in training_files(gold, silver if silver_text_per_language > 0 else None, languages,
                                   exclude_sources):
            for sentence in read_gold([file]):
                (silver_train if file.kind == "silver" else gold_train)[sentence.lang].append(sentence)
    missing = [lang for lang in languages
               if not files.get(lang) and not gold_train.get(lang) and not silver_train.get(lang)]
    if missing:
        raise MissingLanguageError(
            f"no text for language(s) {', '.join(missing)}: give an unlabeled file LANG.txt (or LANG=PATH) "
            "or gold training data for each")
    transfer: list[TransferSentence] = []
    augment_sources: list[Sentence] = []
    for lang in languages:
        scale = (text_scale or {}).get(lang, 1.0)
        raw = read_lines(files.get(lang, []), round(unlabeled_per_language * scale), rng, lang)
        raw_words = [w for w in (to_words(t, split_run) for t in raw) if w]
        transfer += [TransferSentence(words, lang, "unlabeled") for words in raw_words]
        golds = list(gold_train.get(lang, []))
        rng.shuffle(golds)
        transfer += [TransferSentence(recut_words(s.words, split_run).words, lang, "gold")
                     for s in balanced_sample(golds, round(gold_text_per_language * scale))]
        transfer += [TransferSentence(recut_words(s.words, split_run).words, lang, "silver")
                     for s in balanced_sample(silver_train.get(lang, []), round(silver_text_per_language * scale), rng)]
        if augmented_per_language <= 0:
            continue
        with_entities = [s for s in golds if any(t != "O" for t in s.tags)]
        if not with_entities and tag_words is not None and raw_words:
            candidates = raw_words[: 3 * augmented_per_language]
            tagged = [Sentence(w, t, lang, "teacher") for w, t in zip(candidates, tag_words(candidates))]
            with_entities = [s for s in tagged if any(t != "O" for t in s.tags)]
        augment_sources += with_entities[:augmented_per_language]
    if augment_sources:
        from polyner.distill.augment import augment_sentences

        for sentence in augment_sentences(augment_sources, per_sentence=1, seed=seed):
            transfer.append(TransferSentence(recut_words(sentence.words, split_run).words, sentence.lang, "augmented"))
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for sentence in transfer:
        counts[sentence.lang, sentence.origin] += 1
    logger.info("transfer set: %d sentences; per language and origin: %s", len(transfer), dict(counts))
    return transfer
