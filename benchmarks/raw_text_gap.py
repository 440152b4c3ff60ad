"""What reading raw text costs against the corpus's own words, per gold file: where the two differ, the tagger cuts
raw text into other words than the corpus does (and users, who give raw text, see the lower figure).

Each sentence is tagged twice: as the corpus's words (``tag_words``, what ``polyner evaluate`` scores) and as raw
text, the words joined by single spaces (by nothing in Chinese, Japanese and Thai), with entities matched on
character spans (strict: same start, end and label). On raw text the tagger leaves a Latin case ending out of a name
(Ankara'da gives Ankara; ``polyner.tagging.words.name_end``), which some corpora count in: the raw column scores
against gold entities ending where ``name_end`` ends them. Dev by default: this chooses segmentation rules.

    python benchmarks/raw_text_gap.py polyner/default --max-sentences 200 [--languages tr,fi] [--out FILE.md]
"""
from __future__ import annotations

import argparse
from pathlib import Path

UNSPACED = ("zh", "ja", "th")


def char_spans(words: list[str], spans: set[tuple[int, int, str]], separator: str) -> set[tuple[int, int, str]]:
    """Word spans ``(first, end, label)`` as character spans of ``separator.join(words)``."""
    starts, position = [], 0
    for word in words:
        starts.append(position)
        position += len(word) + len(separator)
    return {(starts[a], starts[b - 1] + len(words[b - 1]), label) for a, b, label in spans}


def without_case_endings(text: str, spans: set[tuple[int, int, str]]) -> set[tuple[int, int, str]]:
    """Gold character spans as the tagger ends names on raw text: without a Latin case ending (Ankara'da: Ankara)."""
    from polyner.tagging.words import name_end

    ends = {}
    for start, end, label in spans:
        last = text.rfind(" ", start, end) + 1 or start
        ends[(start, end, label)] = last + name_end(text[last:end])
    return {(start, ends[(start, end, label)], label) for start, end, label in spans}


def f1(gold: list[set], found: list[set]) -> float:
    correct = sum(len(g & f) for g, f in zip(gold, found))
    total = sum(map(len, gold)) + sum(map(len, found))
    return 200.0 * correct / total if total else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="Model directory or name.")
    parser.add_argument("--gold", default="../shared/data/gold", help="Gold root SOURCE/LANG/SPLIT.iob2.")
    parser.add_argument("--languages", help="Comma-separated language codes (default: every gold language).")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--max-sentences", type=int, default=200, help="At most this many sentences per file.")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, help="Also write the table to this markdown file.")
    args = parser.parse_args()

    import polyner
    from polyner.agreement import tag_keys
    from polyner.data.iob2 import discover_gold, read_gold

    tagger = polyner.load(args.model, threads=args.threads)
    languages = [code.strip() for code in args.languages.split(",")] if args.languages else None
    lines = ["| file | sentences | F1 on the corpus's words | F1 on raw text | raw - words |", "|---|---:|---:|---:|---:|"]
    gaps = []
    for file in discover_gold(args.gold, languages, [args.split]):
        sentences = [s for s in read_gold([file], args.max_sentences) if s.words]
        if not sentences:
            continue
        separator = "" if file.lang in UNSPACED else " "
        gold = [char_spans(s.words, tag_keys(s.tags), separator) for s in sentences]
        worded = [char_spans(s.words, tag_keys(tags), separator)
                  for s, tags in zip(sentences, tagger.tag_words([s.words for s in sentences]))]
        texts = [separator.join(s.words) for s in sentences]
        raw = [{(e["start"], e["end"], e["label"]) for e in entities} for entities in tagger(texts)]
        on_words = f1(gold, worded)
        on_raw = f1([without_case_endings(text, spans) for text, spans in zip(texts, gold)], raw)
        gaps.append((on_words, on_raw))
        lines.append(f"| {file.source}/{file.lang} | {len(sentences)} | {on_words:.2f} | {on_raw:.2f} | "
                     f"{on_raw - on_words:+.2f} |")
        print(lines[-1], flush=True)
    if not gaps:
        parser.error(f"no {args.split} sentences under {args.gold}")
    words_mean, raw_mean = (sum(g[k] for g in gaps) / len(gaps) for k in (0, 1))
    lines.append(f"| **mean of {len(gaps)} files** | | {words_mean:.2f} | {raw_mean:.2f} | {raw_mean - words_mean:+.2f} |")
    print(lines[-1])
    if args.out:
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
