"""What kind of errors a model makes on gold files, beside another model: where F1 goes, not only how much.

Each gold entity is counted once, as the first that applies: ``correct`` (same words, same label), ``type`` (same
words, other label), ``boundary`` (an overlapping entity with other edges), ``missed`` (nothing overlaps); a found
entity that overlaps no gold entity is ``spurious``. With two or more models, the gold entities the first model gets
right and the second does not are listed with what the second found there (``--examples N``). For the boundary
errors, the words a model most often adds at an entity's edges (or leaves out) are counted: a frequent one is a
convention (a title, a particle, a trailing "football club") more than a failure to read.

    python benchmarks/error_types.py runs/teacher-v5 polyner/default --languages ar,he --split dev --examples 20

Dev by default: read the errors of the split that chooses models, not of test.
"""
from __future__ import annotations

import argparse
import collections
from pathlib import Path

KINDS = ("correct", "type", "boundary", "missed", "spurious")


def overlaps(a: tuple[int, int, str], b: tuple[int, int, str]) -> bool:
    """Whether two (first word, end word, label) entities share a word."""
    return a[0] < b[1] and b[0] < a[1]


def classify(gold: set[tuple[int, int, str]], found: set[tuple[int, int, str]]) -> collections.Counter:
    """Counts of :data:`KINDS` for one sentence, from (first word, end word, label) keys."""
    counts: collections.Counter = collections.Counter()
    for entity in gold:
        if entity in found:
            counts["correct"] += 1
        elif any(other[:2] == entity[:2] for other in found):
            counts["type"] += 1
        elif any(overlaps(entity, other) for other in found):
            counts["boundary"] += 1
        else:
            counts["missed"] += 1
    counts["spurious"] += sum(1 for other in found if not any(overlaps(other, entity) for entity in gold))
    return counts


def edge_words(words: list[str], gold: set[tuple[int, int, str]], found: set[tuple[int, int, str]]
               ) -> collections.Counter:
    """For each gold entity with a boundary error, the words the overlapping found entity adds before or after it
    ("+ before: w", "+ after: w") or leaves out ("- first: w", "- last: w"); one word per edge, the nearest."""
    counts: collections.Counter = collections.Counter()
    for entity in gold:
        start, end, _ = entity
        if any(other[:2] == (start, end) for other in found):
            continue
        for s, e, _ in (other for other in sorted(found) if overlaps(other, entity)):  # the first, on every run
            if s < start:
                counts[f"+ before: {words[start - 1]}"] += 1
            elif s > start:
                counts[f"- first: {words[start]}"] += 1
            if e > end:
                counts[f"+ after: {words[end]}"] += 1
            elif e < end:
                counts[f"- last: {words[end - 1]}"] += 1
            break
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="Model directories or names.")
    parser.add_argument("--names", help="Comma-separated column names (default: the directory names).")
    parser.add_argument("--gold", default="../shared/data/gold", help="Gold root SOURCE/LANG/SPLIT.iob2.")
    parser.add_argument("--languages", required=True, help="Comma-separated language codes.")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--examples", type=int, default=0, help="Entities the first model gets and the second not.")
    parser.add_argument("--edges", type=int, default=10, help="The most frequent edge words per model.")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import polyner
    from polyner.agreement import tag_keys
    from polyner.data.iob2 import discover_gold, read_gold

    names = args.names.split(",") if args.names else [Path(m).name for m in args.models]
    if len(names) != len(args.models):
        parser.error("--names needs one name per model")
    languages = [code.strip() for code in args.languages.split(",") if code.strip()]
    sentences = [s for s in read_gold(discover_gold(args.gold, languages, [args.split])) if s.words]
    if not sentences:
        parser.error(f"no {args.split} sentences for {languages} under {args.gold}")
    gold = [tag_keys(s.tags) for s in sentences]
    found = {name: [tag_keys(tags) for tags in polyner.load(model).tag_words([s.words for s in sentences],
                                                                          batch_size=args.batch_size)]
             for name, model in zip(names, args.models)}
    print(f"{len(sentences)} {args.split} sentences ({', '.join(languages)}), {sum(map(len, gold))} gold entities\n")
    print("| model | " + " | ".join(KINDS) + " |")
    print("|---|" + "---:|" * len(KINDS))
    for name in names:
        counts = collections.Counter()
        for g, f in zip(gold, found[name]):
            counts.update(classify(g, f))
        print(f"| {name} | " + " | ".join(str(counts[k]) for k in KINDS) + " |")
    for name in names:
        edges = collections.Counter()
        for sentence, g, f in zip(sentences, gold, found[name]):
            edges.update(edge_words(sentence.words, g, f))
        common = ", ".join(f"{word} ({n})" for word, n in edges.most_common(args.edges))
        print(f"\nBoundary errors of {name}, the words most often added or left out at an edge: {common or 'none'}")
    if args.examples and len(names) > 1:
        first, second = names[:2]
        print(f"\nGold entities {first} gets and {second} does not (what {second} found there):\n")
        shown = 0
        for sentence, g, a, b in zip(sentences, gold, found[first], found[second]):
            for start, end, label in sorted(g & a - b):
                near = [(" ".join(sentence.words[s:e]), lab) for s, e, lab in sorted(b)
                        if s < end + 2 and start - 2 < e]
                context = " ".join(sentence.words[max(0, start - 3):end + 3])
                print(f"- {' '.join(sentence.words[start:end])} ({label}) in \"{context}\": {near or 'nothing'}")
                shown += 1
                if shown >= args.examples:
                    return


if __name__ == "__main__":
    main()
