"""NER evaluation per language, and the results table writer.

Two readings of a gold sentence: its own words (``tag_words``; word-level seqeval, strict IOB2: what the corpora
measure) or raw text (the words joined by spaces, by nothing in scripts written without them; the tagger cuts the
text itself, as it does for users), scored on character spans with the same strict match.
"""
from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from polyner.data.iob2 import Sentence
from polyner.labels import repair_iob2

logger = logging.getLogger(__name__)


@dataclass
class Scores:
    """Precision, recall and F1 (0..100) on one set of sentences."""

    precision: float
    recall: float
    f1: float
    sentences: int
    entities: int


def score_tags(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> Scores:
    """seqeval strict IOB2 scores; predicted orphan I-X are read as B-X, as the decoder reads them."""
    gold = [repair_iob2(g) for g in gold]
    predicted = [repair_iob2(p) for p in predicted]
    kwargs = dict(mode="strict", scheme=IOB2, zero_division=0)
    entities = sum(t.startswith("B-") for g in gold for t in g)
    return Scores(100 * precision_score(gold, predicted, **kwargs), 100 * recall_score(gold, predicted, **kwargs),
                  100 * f1_score(gold, predicted, **kwargs), len(gold), entities)


def by_language(sentences: Iterable[Sentence], score: Callable[[str, list[Sentence]], Scores],
                what: str = "") -> dict[str, Scores]:
    """``score(lang, sentences)`` for each language's sentences, languages in order."""
    groups: dict[str, list[Sentence]] = defaultdict(list)
    for sentence in sentences:
        groups[sentence.lang].append(sentence)
    results = {}
    for lang in sorted(groups):
        results[lang] = score(lang, groups[lang])
        logger.info("%s: F1 %.2f on %d sentences%s", lang, results[lang].f1, len(groups[lang]), what)
    return results


def evaluate_by_language(tag_words: Callable[[list[list[str]]], list[list[str]]],
                         sentences: Iterable[Sentence]) -> dict[str, Scores]:
    """Score a word tagger on sentences grouped by language."""
    return by_language(sentences, lambda lang, group: score_tags([s.tags for s in group],
                                                                 tag_words([s.words for s in group])))


#: Scripts of these languages are written without spaces: raw text joins their words with nothing.
UNSPACED_LANGUAGES = ("zh", "ja", "th", "lo", "km", "my")
READINGS = ("words", "text")


def sentence_text(words: Sequence[str], lang: str) -> tuple[str, list[int]]:
    """The sentence as raw text (words joined by a space, by nothing in :data:`UNSPACED_LANGUAGES`) and the offset
    of each word in it."""
    separator = "" if lang in UNSPACED_LANGUAGES else " "
    starts, position = [], 0
    for word in words:
        starts.append(position)
        position += len(word) + len(separator)
    return separator.join(words), starts


def gold_char_spans(words: Sequence[str], tags: Sequence[str], starts: Sequence[int]) -> set[tuple[int, int, str]]:
    """Gold entities as character spans of the raw text, each ending where the tagger ends a name: without a Latin
    case ending joined to its last word (gold Ankara'da, the tagger's Ankara; :func:`name_end`)."""
    from polyner.labels import tags_to_spans
    from polyner.languages import written_in_turkish
    from polyner.tagging.word_punctuation import name_end

    turkish = written_in_turkish(" ".join(words))
    return {(starts[span.start], starts[span.end - 1] + name_end(words[span.end - 1], turkish), span.label)
            for span in tags_to_spans(repair_iob2(tags))}


def score_spans(gold: Sequence[set], found: Sequence[set]) -> Scores:
    """Strict scores of found entity spans against gold ones (same start, end and label), micro over sentences:
    seqeval's strict mode on spans."""
    correct = sum(len(g & f) for g, f in zip(gold, found))
    gold_n, found_n = sum(map(len, gold)), sum(map(len, found))
    precision = 100 * correct / found_n if found_n else 0.0
    recall = 100 * correct / gold_n if gold_n else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Scores(precision, recall, f1, len(gold), gold_n)


def evaluate_text_by_language(tag_texts: Callable[[list[str]], list[list[dict]]],
                              sentences: Iterable[Sentence]) -> dict[str, Scores]:
    """Score a raw-text tagger (``Tagger.__call__`` on a list) on sentences read as text, grouped by language."""
    def score(lang: str, group: list[Sentence]) -> Scores:
        texts, gold = [], []
        for sentence in group:
            text, starts = sentence_text(sentence.words, lang)
            texts.append(text)
            gold.append(gold_char_spans(sentence.words, sentence.tags, starts))
        found = [{(e["start"], e["end"], e["label"]) for e in entities} for entities in tag_texts(texts)]
        return score_spans(gold, found)

    return by_language(sentences, score, " read as text")


def macro(scores: dict[str, Scores]) -> Scores:
    """The unweighted mean over languages."""
    n = max(len(scores), 1)
    return Scores(sum(s.precision for s in scores.values()) / n, sum(s.recall for s in scores.values()) / n,
                  sum(s.f1 for s in scores.values()) / n, sum(s.sentences for s in scores.values()),
                  sum(s.entities for s in scores.values()))


@dataclass
class ResultTable:
    """Per-language scores of one or more models on one split, as a markdown table."""

    split: str
    models: list[str]
    scores: list[dict[str, Scores]] = field(default_factory=list)

    def markdown(self) -> str:
        """Rows per language: P/R/F1 for each model (F1 only when several), then the macro average."""
        langs = sorted({lang for s in self.scores for lang in s})
        several = len(self.models) > 1
        head = ["lang", "sentences", "entities"]
        for name in self.models:
            head += [f"F1 {name}"] if several else ["P", "R", "F1"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

        def row(label: str, per_model: list[Scores | None]) -> str:
            ref = next(s for s in per_model if s is not None)
            cells = [label, str(ref.sentences), str(ref.entities)]
            for s in per_model:
                if s is None:
                    cells += ["-"] if several else ["-", "-", "-"]
                else:
                    cells += [f"{s.f1:.2f}"] if several else [f"{s.precision:.2f}", f"{s.recall:.2f}", f"{s.f1:.2f}"]
            return "| " + " | ".join(cells) + " |"

        for lang in langs:
            lines.append(row(lang, [s.get(lang) for s in self.scores]))
        lines.append(row("**macro**", [macro(s) for s in self.scores]))
        return "\n".join(lines)


def write_section(path: str | Path, name: str, body: str) -> Path:
    """Replace (or append) the section ``name`` of a markdown results file, keeping the others."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    begin, end = f"<!-- polyner:{name} -->", f"<!-- /polyner:{name} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Results\n\nWritten by `polyner evaluate --write`.\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")
    return path
