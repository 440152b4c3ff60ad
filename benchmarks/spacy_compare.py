"""polyner inside spaCy against spaCy's own trained pipelines, on the same gold test sentences.

For each gold test set (default: French europeana_ner, English wikigold and uner) the script reads at
most ``--max-sentences`` sentences, builds spaCy docs from the gold words
(``Doc(nlp.vocab, words=..., spaces=...)``, so tokens are the gold words), runs them through

* ``spacy.blank(lang)`` + the ``polyner`` component (``--model PATH``, default the shipped default), and
* spaCy's trained pipeline for that language (``fr_core_news_sm``, ``en_core_web_sm``; NER and what it
  needs only), when it is installed — when it is not, the table says so,

and prints word-level entity precision/recall/F1 (seqeval, strict IOB2, on the gold words) and words/s
side by side, with the ratios polyner / spaCy. spaCy labels are mapped PERSON/PER -> PER, ORG -> ORG,
GPE/LOC/FAC -> LOC; other labels (MISC, NORP, DATE, ...) are dropped, as the gold sets have only
PER, ORG and LOC. Entities are read back onto gold words by character offsets, so a token that
polyner splits at an entity edge still scores on its gold word (first word overlapped: B-, the rest: I-).

    python benchmarks/spacy_compare.py                                   # shipped model, 500 sentences a set
    python benchmarks/spacy_compare.py --model runs/student --max-sentences 20 --sets fr:europeana_ner

Speed: docs are built before timing; each pipeline gets a short warm-up; ``--threads`` torch threads
(spaCy's own pipelines run on numpy and are single-threaded here unless BLAS says otherwise).
"""
from __future__ import annotations

import argparse
import sys
from bisect import bisect_right
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

DEFAULT_GOLD = Path(__file__).resolve().parents[2] / "shared" / "data" / "gold"
DEFAULT_SETS = "fr:europeana_ner,en:wikigold,en:uner"
DEFAULT_SPACY = "fr=fr_core_news_sm,en=en_core_web_sm"
LABEL_MAP = {"PER": "PER", "PERSON": "PER", "ORG": "ORG", "LOC": "LOC", "GPE": "LOC", "FAC": "LOC"}
NO_SPACE_BEFORE = set(".,;:!?)]}%»”’…")
NO_SPACE_AFTER = set("([{«“‘")
CLITICS = {"'s", "n't", "'re", "'ve", "'ll", "'d", "'m"}  # English clitics written against their word


@dataclass
class Result:
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    words_per_s: float | None = None
    note: str = ""


def spaces_for(words: list[str]) -> list[bool]:
    """Whether each word is followed by a space, so the doc text reads naturally (no space before
    closing punctuation, after opening brackets or an elided article such as l' or d', between CJK chars)."""
    spaces = []
    for word, nxt in zip(words, words[1:] + [None]):
        if nxt is None:
            spaces.append(False)
        elif nxt[:1] in NO_SPACE_BEFORE or nxt.lower() in CLITICS or word[-1:] in NO_SPACE_AFTER or word[-1:] in "'’" and len(word) <= 3:
            spaces.append(False)
        elif _cjk(word[-1:]) and _cjk(nxt[:1]):
            spaces.append(False)
        else:
            spaces.append(True)
    return spaces


def _cjk(ch: str) -> bool:
    return bool(ch) and unicodedata.name(ch, "").startswith(("CJK", "HIRAGANA", "KATAKANA"))


def word_tags(doc, n_words: int, offsets: list[tuple[int, int]]) -> list[str]:
    """IOB2 tags on the gold words from the doc's entities, by character offsets; unmapped labels dropped."""
    tags = ["O"] * n_words
    starts = [s for s, _ in offsets]
    for ent in doc.ents:
        label = LABEL_MAP.get(ent.label_)
        if label is None:
            continue
        first = max(bisect_right(starts, ent.start_char) - 1, 0)
        inside = False
        for w in range(first, n_words):
            start, end = offsets[w]
            if start >= ent.end_char:
                break
            if end <= ent.start_char or tags[w] != "O":
                continue
            tags[w] = f"{'I' if inside else 'B'}-{label}"
            inside = True
    return tags


def make_docs(vocab, sentences) -> tuple[list, list[list[tuple[int, int]]]]:
    """Docs whose tokens are the gold words, and each word's character offsets in the doc text."""
    from spacy.tokens import Doc

    docs, offsets = [], []
    for sentence in sentences:
        spaces = spaces_for(sentence.words)
        doc = Doc(vocab, words=sentence.words, spaces=spaces)
        docs.append(doc)
        offsets.append([(t.idx, t.idx + len(t.text)) for t in doc])
    return docs, offsets


def run(nlp, sentences, batch_size: int, warmup: int = 8) -> Result:
    """F1 on the gold words and words/s of ``nlp`` over the sentences."""
    from polyner.evaluate import score_tags

    list(nlp.pipe(make_docs(nlp.vocab, sentences[:warmup])[0], batch_size=batch_size))
    docs, offsets = make_docs(nlp.vocab, sentences)
    started = time.perf_counter()
    done = list(nlp.pipe(docs, batch_size=batch_size))
    seconds = time.perf_counter() - started
    predicted = [word_tags(doc, len(s.words), off) for doc, s, off in zip(done, sentences, offsets)]
    scores = score_tags([s.tags for s in sentences], predicted)
    words = sum(len(s.words) for s in sentences)
    return Result(scores.precision, scores.recall, scores.f1, words / max(seconds, 1e-9))


def load_polyner(lang: str, model: str | None, batch_size: int):
    import spacy

    nlp = spacy.blank(lang if _has_lang(lang) else "xx")
    nlp.add_pipe("polyner", config={"model": model, "batch_size": batch_size, "detect_language": False})
    nlp.get_pipe("polyner").tagger  # load now, not inside the timed run
    return nlp


def _has_lang(lang: str) -> bool:
    import spacy

    try:
        spacy.util.get_lang_class(lang)
        return True
    except ImportError:
        return False


def load_spacy_pipeline(name: str):
    """spaCy's trained pipeline with only NER (and any tok2vec it listens to) enabled; None if not installed."""
    import spacy

    if not spacy.util.is_package(name):
        return None
    nlp = spacy.load(name)
    if "ner" not in nlp.pipe_names:
        raise ValueError(f"spaCy pipeline {name} has no 'ner' component")
    needed = {"ner"}
    for pipe_name, pipe in nlp.pipeline:
        if "ner" in getattr(pipe, "listening_components", []):
            needed.add(pipe_name)
    for pipe_name in nlp.pipe_names:
        if pipe_name not in needed:
            nlp.disable_pipe(pipe_name)
    return nlp


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="polyner model directory or name (default: the shipped model)")
    parser.add_argument("--gold", type=Path, default=DEFAULT_GOLD, help="gold root: source/lang/split.iob2")
    parser.add_argument("--sets", default=DEFAULT_SETS, help=f"lang:source,... (default {DEFAULT_SETS})")
    parser.add_argument("--spacy", default=DEFAULT_SPACY, help=f"lang=package,... (default {DEFAULT_SPACY})")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-sentences", type=int, default=500, help="per set (default 500)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for polyner (default 2)")
    args = parser.parse_args(argv)

    import spacy
    import torch

    from polyner.data.iob2 import discover_gold, read_iob2

    torch.set_num_threads(args.threads)
    packages = dict(item.split("=", 1) for item in args.spacy.split(",") if item)
    rows = []
    for item in args.sets.split(","):
        lang, _, source = item.partition(":")
        found = [g for g in discover_gold(args.gold, langs=[lang], splits=[args.split]) if not source or g.source == source]
        if not found:
            print(f"note: no gold {args.split} set for {item} under {args.gold}", file=sys.stderr)
            continue
        for gold in found:
            sentences = [s for s in read_iob2(gold.path, gold.lang, gold.source) if s.words][:args.max_sentences]
            words = sum(len(s.words) for s in sentences)
            try:
                ours = run(load_polyner(lang, args.model, args.batch_size), sentences, args.batch_size)
            except Exception as exc:  # no shipped model, a broken directory: say so, keep going
                ours = Result(note=f"polyner: {exc}")
            name = packages.get(lang)
            if name is None:
                theirs = Result(note=f"no spaCy pipeline configured for {lang}")
            else:
                nlp = load_spacy_pipeline(name)
                if nlp is None:
                    theirs = Result(note=f"{name} is not installed (pip install {name.replace('_', '-')})")
                else:
                    theirs = run(nlp, sentences, args.batch_size)
            rows.append((f"{gold.lang} {gold.source} {gold.split}", len(sentences), words, name or "-", ours, theirs))

    if not rows:
        print("no gold sets found: nothing to compare", file=sys.stderr)
        return 1
    print(f"polyner model: {args.model or 'shipped default'}; spaCy {spacy.__version__}; torch threads "
          f"{torch.get_num_threads()}; batch {args.batch_size}; at most {args.max_sentences} sentences a set")
    print("F1, P, R: word-level, seqeval strict IOB2 over PER/ORG/LOC (percent); speed: words/s\n")
    header = ("| set | sents | words | polyner P/R/F1 | polyner words/s | spaCy pipeline | spaCy P/R/F1 "
              "| spaCy words/s | F1 ratio | speed ratio |")
    print(header)
    print("|---|---:|---:|---|---:|---|---|---:|---:|---:|")
    notes = []
    for label, n, words, name, ours, theirs in rows:
        prf = lambda r: "n/a" if r.f1 is None else f"{r.precision:.1f}/{r.recall:.1f}/{r.f1:.1f}"  # noqa: E731
        print(f"| {label} | {n} | {words} | {prf(ours)} | {fmt(ours.words_per_s, 0)} | {name} | {prf(theirs)} "
              f"| {fmt(theirs.words_per_s, 0)} | {ratio(ours.f1, theirs.f1)} | "
              f"{ratio(ours.words_per_s, theirs.words_per_s)} |")
        notes += [r.note for r in (ours, theirs) if r.note]
    for note in dict.fromkeys(notes):
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
