"""Sentences from no source of our data, with the entities a reader expects: which come out whole, per model.

The gold test files measure a model on text like its training text; these sentences are written fresh (news-style,
the kinds of failure issue 20 reported: Arabic and Persian without labels, Han and kana entities cut inside words,
names of several words), so a model tuned to our files gains nothing here. Never select a model on them: they
are a check that what dev chose also holds on text users write.

    python benchmarks/unseen_examples.py polyner/default runs/teacher-v4 [--names default,teacher] [--out FILE.md]

An expected entity counts as found only with the same text and label (the text between its offsets); a found
entity that matches none of the expected ones counts against precision.
"""
from __future__ import annotations

import argparse
from pathlib import Path

#: (language, text, expected entities as (text, label)).
EXAMPLES: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("ar", "التقى الرئيس عبد الفتاح السيسي بوزير الخارجية في القاهرة.",
     (("عبد الفتاح السيسي", "PER"), ("القاهرة", "LOC"))),
    ("ar", "أعلنت أرامكو أرباحها في الرياض أمس.", (("أرامكو", "ORG"), ("الرياض", "LOC"))),
    ("fa", "حسن روحانی در تهران با نمایندگان سازمان ملل دیدار کرد.",
     (("حسن روحانی", "PER"), ("تهران", "LOC"), ("سازمان ملل", "ORG"))),
    ("zh", "索尼公司和丰田汽车公司在东京宣布合作。", (("索尼公司", "ORG"), ("丰田汽车公司", "ORG"), ("东京", "LOC"))),
    ("zh", "他曾在北京大学学习", (("北京大学", "ORG"),)),
    ("zh", "华为技术有限公司总部位于深圳。", (("华为技术有限公司", "ORG"), ("深圳", "LOC"))),
    ("zh", "习近平在莫斯科会见了普京。", (("习近平", "PER"), ("莫斯科", "LOC"), ("普京", "PER"))),
    ("ja", "トヨタ自動車の豊田章男社長は名古屋で記者会見を開いた。",
     (("トヨタ自動車", "ORG"), ("豊田章男", "PER"), ("名古屋", "LOC"))),
    ("ja", "岸田文雄首相はワシントンでバイデン大統領と会談した。",
     (("岸田文雄", "PER"), ("ワシントン", "LOC"), ("バイデン", "PER"))),
    ("he", "ראש הממשלה בנימין נתניהו נפגש עם עמנואל מקרון.", (("בנימין נתניהו", "PER"), ("עמנואל מקרון", "PER"))),
    ("tr", "Recep Tayyip Erdoğan Ankara'da Avrupa Birliği temsilcileriyle görüştü.",
     (("Recep Tayyip Erdoğan", "PER"), ("Ankara", "LOC"), ("Avrupa Birliği", "ORG"))),
    ("ru", "Сергей Лавров прибыл в Женеву на переговоры с представителями ООН.",
     (("Сергей Лавров", "PER"), ("Женеву", "LOC"), ("ООН", "ORG"))),
    ("cs", "Petr Fiala jednal v Bruselu se zástupci Evropské komise.",
     (("Petr Fiala", "PER"), ("Bruselu", "LOC"), ("Evropské komise", "ORG"))),
    ("de", "Ursula von der Leyen besuchte am Dienstag die Siemens AG in München.",
     (("Ursula von der Leyen", "PER"), ("Siemens AG", "ORG"), ("München", "LOC"))),
    ("en", "Tim Cook said Apple will open a new office in Nairobi.",
     (("Tim Cook", "PER"), ("Apple", "ORG"), ("Nairobi", "LOC"))),
)


def score(found: list[set[tuple[str, str]]]) -> tuple[int, int, int]:
    """(expected entities found, expected entities, entities found) over :data:`EXAMPLES`."""
    hits = sum(len(set(expected) & got) for (_, _, expected), got in zip(EXAMPLES, found))
    return hits, sum(len(expected) for _, _, expected in EXAMPLES), sum(len(got) for got in found)


def tag_examples(model: str) -> list[set[tuple[str, str]]]:
    """The (text, label) entities ``model`` (a polyner.load target) finds in each example."""
    import polyner

    tagger = polyner.load(model)
    return [{(e["text"], e["label"]) for e in entities} for entities in tagger([text for _, text, _ in EXAMPLES])]


def report(names: list[str], results: list[list[set[tuple[str, str]]]]) -> str:
    """A markdown table: per example what each model got right and what else it found, then the totals."""
    lines = ["| lang | expected | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for i, (lang, _, expected) in enumerate(EXAMPLES):
        cells = []
        for found in results:
            got = found[i]
            right = [text for text, label in expected if (text, label) in got]
            extra = [f"{text} ({label})" for text, label in sorted(got - set(expected))]
            cells.append(f"{len(right)}/{len(expected)}" + (f"; also {', '.join(extra)}" if extra else ""))
        wanted = ", ".join(f"{text} ({label})" for text, label in expected)
        lines.append(f"| {lang} | {wanted} | " + " | ".join(cells) + " |")
    totals = []
    for found in results:
        hits, expected, predicted = score(found)
        totals.append(f"recall {hits}/{expected}, precision {hits}/{predicted}")
    lines.append("| all | | " + " | ".join(totals) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="model directories or names (anything polyner.load takes)")
    parser.add_argument("--names", help="comma-separated column names (default: the model arguments)")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args()
    names = args.names.split(",") if args.names else list(args.models)
    if len(names) != len(args.models):
        parser.error(f"{len(names)} names for {len(args.models)} models")
    table = report(names, [tag_examples(model) for model in args.models])
    print(table, end="")
    if args.out:
        args.out.write_text(table, encoding="utf-8")


if __name__ == "__main__":
    main()
