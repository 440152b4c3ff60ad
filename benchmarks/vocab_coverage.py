"""How a trimmed student vocabulary cuts words, against the teacher's, per language.

For every gold (and silver) test file, on the same sentences: pieces per word, the share of pieces
that are ``<unk>`` (all words, and words inside entities), the share of sentences that no longer
fit a window of ``--window`` pieces, and the share of entity edges that fall inside a word as the
tagger cuts runs of scripts without spaces (Han, kana, Thai) at the tokenizer's pieces: no label can
mark those. A trimmed vocabulary that cuts a language's words into more
pieces than the teacher's reads it worse and fits fewer words in a window. Words are read as each model reads
them: runs without spaces re-cut at the tokenizer's pieces, as text or word by word (``ner_unspaced_runs``; tables
in docs before 2026-12-06 13:00 tokenized every given word on its own).

    python benchmarks/vocab_coverage.py --tokenizers teacher=runs/teacher-ner student=polyner/default \
        [--unspaced-runs student=text] [--gold ../shared/data/gold] [--silver ../shared/data/silver] \
        [--max-sentences 200] [--out FILE.md]
"""
from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
from pathlib import Path

from polyner.data.iob2 import Sentence, discover_gold, read_gold

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class Coverage:
    """Segmentation figures of one tokenizer on one set of sentences."""

    pieces_per_word: float
    unk_percent: float
    entity_unk_percent: float
    over_window_percent: float
    edges_inside_percent: float


def edges_inside_words(sentence: Sentence, recut) -> tuple[int, int]:
    """(entity edges inside a word of ``recut`` (the sentence as the tagger re-cuts it), all entity edges)."""
    from polyner.labels import tags_to_spans

    edges = [e for span in tags_to_spans(sentence.tags) for e in (span.start, span.end) if 0 < e < len(sentence.words)]
    inside = sum(not (recut.source[recut.holder[e]] == e and recut.starts[recut.holder[e]]) for e in edges)
    return inside, len(edges)


def coverage(tokenizer, sentences: list[Sentence], window: int, unspaced_runs: str = "words") -> Coverage:
    """Pieces per given word, <unk> share (all / entity words), share of sentences over ``window`` pieces and share
    of entity edges inside a word, with the words read as a model reading runs without spaces as ``unspaced_runs``
    reads them (runs re-cut at the tokenizer's pieces, then :func:`~polyner.tagging.pieces.word_pieces`)."""
    from polyner.tagging.pieces import word_pieces
    from polyner.tagging.words import recut_words, tokenizer_run_splitter

    split_run = tokenizer_run_splitter(tokenizer)
    recut = [recut_words(s.words, split_run) for s in sentences]
    edges = [edges_inside_words(s, cut) for s, cut in zip(sentences, recut)]
    unk = tokenizer.unk_token_id
    pieces_of = word_pieces(tokenizer, [r.words for r in recut], unspaced_runs)
    words = pieces = unks = entity_pieces = entity_unks = over = 0
    for sentence, cut, per_word in zip(sentences, recut, pieces_of):
        words += len(sentence.words)
        count = sum(map(len, per_word))
        pieces += count
        over += count + 2 > window
        for ids, tag in zip(per_word, cut.tags_of(sentence.tags)):
            found = sum(piece == unk for piece in ids)
            unks += found
            if tag != "O":
                entity_pieces += len(ids)
                entity_unks += found
    return Coverage(pieces / max(words, 1), 100 * unks / max(pieces, 1), 100 * entity_unks / max(entity_pieces, 1),
                    100 * over / max(len(sentences), 1),
                    100 * sum(i for i, _ in edges) / max(sum(n for _, n in edges), 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizers", nargs="+", required=True, help="NAME=DIR pairs; the first is the reference.")
    parser.add_argument("--gold", default=str(SHARED / "gold"))
    parser.add_argument("--silver", default=str(SHARED / "silver"), help="'' to leave silver out.")
    parser.add_argument("--split", default="test")
    parser.add_argument("--langs", default=None)
    parser.add_argument("--max-sentences", type=int, default=200)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--unspaced-runs", nargs="*", default=[],
                        help="NAME=MODE (words or text): how that tokenizer's model reads runs of Han, kana, Thai "
                             "(default: its config.json's ner_unspaced_runs, else words).")
    parser.add_argument("--out", default=None, help="Also write the table here (markdown).")
    args = parser.parse_args(argv)

    from polyner.models.classifier import config_unspaced_runs
    from polyner.models.io import load_tokenizer
    from polyner.models.plain import read_config
    from polyner.tagging.pieces import check_unspaced_runs

    tokenizers, modes = {}, {}
    for pair in args.tokenizers:
        name, _, folder = pair.partition("=")
        tokenizers[name] = load_tokenizer(folder or name)
        model_dir = Path(folder or name)
        config = read_config(model_dir) if (model_dir / "config.json").exists() else None  # None: a bare tokenizer
        modes[name] = config_unspaced_runs(config, model_dir)
    for pair in args.unspaced_runs:
        name, _, mode = pair.partition("=")
        if name not in tokenizers:
            parser.error(f"--unspaced-runs {pair}: no tokenizer named {name!r}")
        modes[name] = check_unspaced_runs(mode)
    langs = args.langs.split(",") if args.langs else None
    files = discover_gold(args.gold, langs, [args.split])
    if args.silver and Path(args.silver).is_dir():
        files += discover_gold(args.silver, langs, [args.split], kind="silver")
    names = list(tokenizers)
    header = ["file", "sentences"] + [f"pieces/word {n}" for n in names] + [f"unk% {n}" for n in names] + \
        [f"entity unk% {n}" for n in names] + [f"over {args.window} % {n}" for n in names] + \
        [f"edges inside a word % {n}" for n in names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    ratios: dict[str, list[float]] = {n: [] for n in names[1:]}
    for file in files:
        sentences = list(read_gold([file], args.max_sentences))
        if not sentences:
            continue
        figures = {n: coverage(t, sentences, args.window, modes[n]) for n, t in tokenizers.items()}
        for n in names[1:]:
            ratios[n].append(figures[n].pieces_per_word / figures[names[0]].pieces_per_word)
        row = [f"{file.kind} {file.source}/{file.lang}", str(len(sentences))]
        row += [f"{figures[n].pieces_per_word:.2f}" for n in names]
        row += [f"{figures[n].unk_percent:.2f}" for n in names]
        row += [f"{figures[n].entity_unk_percent:.2f}" for n in names]
        row += [f"{figures[n].over_window_percent:.1f}" for n in names]
        row += [f"{figures[n].edges_inside_percent:.2f}" for n in names]
        lines.append("| " + " | ".join(row) + " |")
    summary = [f"runs without spaces read as: {', '.join(f'{n} {m}' for n, m in modes.items())}"]
    summary += [f"{n}: median pieces/word ratio to {names[0]} {statistics.median(r):.3f}, max {max(r):.3f}"
               for n, r in ratios.items() if r]
    text = "\n".join(lines + [""] + summary) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
