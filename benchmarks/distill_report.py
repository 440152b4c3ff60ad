"""Student vs teacher, measured side by side in one run on the same texts.

Prints: word-level F1 (seqeval strict IOB2, macro over the gold test sets' languages) of the shipped
default student and of the fine-tuned teacher; CPU throughput (sentences/s, batch 32, 2 threads) of
the student, the teacher and an xlm-roberta-base-sized encoder (random weights, for scale); and
parameter counts. Each figure comes with its ratio and the target it is checked against.

    python benchmarks/distill_report.py --teacher runs/teacher-ner [--student DIR] [--gold ../shared/data/gold]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import polyner
from polyner.data.iob2 import discover_gold, read_gold
from polyner.evaluate import evaluate_by_language, macro
from polyner.languages import TARGET_LANGUAGES

DEFAULT_GOLD = Path(__file__).resolve().parents[2] / "shared" / "data" / "gold"


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def xlmr_base_sized():
    """An encoder with xlm-roberta-base's geometry (random weights; only its speed matters)."""
    from transformers import XLMRobertaConfig, XLMRobertaForTokenClassification

    config = XLMRobertaConfig(vocab_size=250002, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                              intermediate_size=3072, max_position_embeddings=514, num_labels=7)
    return XLMRobertaForTokenClassification(config).eval()


def throughput(model, batches: list[dict], repeats: int = 3) -> float:
    """Sentences per second over the same pre-tokenized batches (median of ``repeats`` passes)."""
    rates = []
    with torch.inference_mode():
        model(**batches[0])  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            n = 0
            for batch in batches:
                model(**batch)
                n += batch["input_ids"].shape[0]
            rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def make_batches(tokenizer, sentences: list[list[str]], batch_size: int = 32, max_length: int = 64,
                 vocab_limit: int | None = None) -> list[dict]:
    batches = []
    for i in range(0, len(sentences), batch_size):
        enc = tokenizer(sentences[i:i + batch_size], is_split_into_words=True, truncation=True,
                        max_length=max_length, padding=True, return_tensors="pt")
        ids = enc["input_ids"] if vocab_limit is None else enc["input_ids"].clamp(max=vocab_limit - 1)
        batches.append({"input_ids": ids, "attention_mask": enc["attention_mask"]})
    return batches


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True, help="fine-tuned teacher directory")
    parser.add_argument("--student", default=None, help="student directory (default: the shipped default)")
    parser.add_argument("--gold", default=str(DEFAULT_GOLD))
    parser.add_argument("--max-sentences", type=int, default=200, help="per test file")
    parser.add_argument("--speed-sentences", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    student = polyner.load(args.student)
    teacher = polyner.load(args.teacher)
    test = list(read_gold(discover_gold(args.gold, splits=["test"]), args.max_sentences))
    if not test:
        print(f"no gold test data under {args.gold}", file=sys.stderr)
        return 2

    print(f"machine: {platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}")
    print(f"test sentences: {len(test)} (at most {args.max_sentences} per file, {len({s.lang for s in test})} languages)\n")
    f1 = {}
    for name, tagger in (("student", student), ("teacher", teacher)):
        start = time.perf_counter()
        scores = evaluate_by_language(tagger.tag_words, test)
        f1[name] = (macro(scores).f1, scores, time.perf_counter() - start)
    langs = sorted(f1["student"][1])
    print("| lang | teacher F1 | student F1 | student/teacher |")
    print("|---|---|---|---|")
    for lang in langs:
        t, s = f1["teacher"][1][lang].f1, f1["student"][1][lang].f1
        print(f"| {lang} | {t:.2f} | {s:.2f} | {s / t if t else float('nan'):.3f} |")
    ratio_f1 = f1["student"][0] / f1["teacher"][0]
    print(f"| **macro** | {f1['teacher'][0]:.2f} | {f1['student'][0]:.2f} | {ratio_f1:.3f} |")
    targets = {lang: None for lang in langs if lang in TARGET_LANGUAGES}
    target_f1 = {name: macro({lang: f1[name][1][lang] for lang in targets}).f1 for name in ("student", "teacher")}
    ratio_target = target_f1["student"] / target_f1["teacher"]
    print(f"| **macro, {len(targets)} target languages** | {target_f1['teacher']:.2f} | {target_f1['student']:.2f} "
          f"| {ratio_target:.3f} |\n")

    sentences = [s.words for s in test[: args.speed_sentences]]
    student_batches = make_batches(student.tokenizer, sentences)
    teacher_batches = make_batches(teacher.tokenizer, sentences)
    base = xlmr_base_sized()
    rates = {"student": throughput(student.model, student_batches),
             "teacher": throughput(teacher.model, teacher_batches),
             "xlm-roberta-base-sized": throughput(base, teacher_batches)}
    params = {"student": parameters(student.model), "teacher": parameters(teacher.model),
              "xlm-roberta-base-sized": parameters(base)}
    print("| model | parameters | sentences/s (batch 32) |")
    print("|---|---|---|")
    for name in rates:
        print(f"| {name} | {params[name]:,} | {rates[name]:.1f} |")
    checks = [
        ("student F1 / teacher F1 (macro, gold test, all languages)", ratio_f1, ">=", 0.95),
        ("student F1 / teacher F1 (macro, gold test, target languages)", ratio_target, ">=", 0.95),
        ("student / teacher throughput", rates["student"] / rates["teacher"], ">=", 3.0),
        ("student / xlm-roberta-base-sized throughput", rates["student"] / rates["xlm-roberta-base-sized"], ">=", 10.0),
        ("student / teacher parameters", params["student"] / params["teacher"], "<=", 0.2),
    ]
    print("\n| ratio | measured | target | met |")
    print("|---|---|---|---|")
    for name, value, op, target in checks:
        met = value >= target if op == ">=" else value <= target
        print(f"| {name} | {value:.3f} | {op} {target} | {'yes' if met else 'NO'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
