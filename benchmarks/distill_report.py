"""Student vs teacher, measured side by side in one run on the same texts.

Prints: word-level F1 (seqeval strict IOB2, macro over the gold test sets' languages) of the shipped
default student and of the fine-tuned teacher; CPU throughput (sentences/s, batch 32, 2 threads) of
the student, the teacher and an xlm-roberta-base-sized encoder (random weights, for scale); and
parameter counts. Each figure comes with its ratio and the target it is checked against.

    python benchmarks/distill_report.py --teacher runs/teacher-ner [--student DIR] [--gold ../shared/data/gold] \
        [--out docs/distill-report.md]

``--out`` also writes the report as markdown (command, machine, tables); its speed and size part sits
between ``<!-- polyner:speed -->`` markers, which ``polyner pack --speed`` copies into a model card.
"""
from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch

import polyner
from polyner.data.iob2 import discover_gold, read_gold
from polyner.evaluate import evaluate_by_language, macro
from polyner.languages import TARGET_LANGUAGES
from polyner.models.io import load_tokenizer

SPEED_START, SPEED_END = "<!-- polyner:speed -->", "<!-- /polyner:speed -->"
DEFAULT_GOLD = Path(__file__).resolve().parents[2] / "shared" / "data" / "gold"


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def xlmr_base_sized():
    """An encoder with xlm-roberta-base's geometry (random weights; only its speed matters)."""
    from transformers import XLMRobertaConfig, XLMRobertaForTokenClassification

    config = XLMRobertaConfig(vocab_size=250002, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                              intermediate_size=3072, max_position_embeddings=514, num_labels=7)
    return XLMRobertaForTokenClassification(config).eval()


def throughput(models: dict[str, tuple[torch.nn.Module, list[dict]]], repeats: int = 5) -> dict[str, float]:
    """Sentences per second of each model over its pre-tokenized batches: the median of ``repeats`` passes,
    the models taking turns pass by pass so that a change in the machine's load touches them alike."""
    rates: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model, batches in models.values():
            model(**batches[0])  # warm-up
        for _ in range(repeats):
            for name, (model, batches) in models.items():
                start = time.perf_counter()
                n = 0
                for batch in batches:
                    model(**batch)
                    n += batch["input_ids"].shape[0]
                rates[name].append(n / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}


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
    parser.add_argument("--out", default=None, help="also write the report to this markdown file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    lines: list[str] = []

    def emit(text: str = "") -> None:
        print(text)
        lines.extend(str(text).split("\n"))

    student = polyner.load(args.student, backend="torch")  # torch forward passes (the ONNX default: weights read back)
    teacher = polyner.load(args.teacher)
    test = list(read_gold(discover_gold(args.gold, splits=["test"]), args.max_sentences))
    if not test:
        print(f"no gold test data under {args.gold}", file=sys.stderr)
        return 2

    emit(f"machine: {platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}")
    emit(f"test sentences: {len(test)} (at most {args.max_sentences} per file, {len({s.lang for s in test})} languages)\n")
    f1 = {}
    for name, tagger in (("student", student), ("teacher", teacher)):
        start = time.perf_counter()
        scores = evaluate_by_language(tagger.tag_words, test)
        f1[name] = (macro(scores).f1, scores, time.perf_counter() - start)
    langs = sorted(f1["student"][1])
    emit("| lang | teacher F1 | student F1 | student/teacher |")
    emit("|---|---|---|---|")
    for lang in langs:
        t, s = f1["teacher"][1][lang].f1, f1["student"][1][lang].f1
        emit(f"| {lang} | {t:.2f} | {s:.2f} | {s / t if t else float('nan'):.3f} |")
    ratio_f1 = f1["student"][0] / f1["teacher"][0]
    emit(f"| **macro** | {f1['teacher'][0]:.2f} | {f1['student'][0]:.2f} | {ratio_f1:.3f} |")
    targets = {lang: None for lang in langs if lang in TARGET_LANGUAGES}
    target_f1 = {name: macro({lang: f1[name][1][lang] for lang in targets}).f1 for name in ("student", "teacher")}
    ratio_target = target_f1["student"] / target_f1["teacher"]
    emit(f"| **macro, {len(targets)} target languages** | {target_f1['teacher']:.2f} | {target_f1['student']:.2f} "
          f"| {ratio_target:.3f} |\n")

    sample = random.Random(0).sample(test, min(args.speed_sentences, len(test)))  # every language, not the first file
    sentences = [s.words for s in sample]
    # padded tensors need transformers' tokenizer (a tagger may hold the unpadding Rust one); same pieces
    student_batches = make_batches(load_tokenizer(student.source), sentences)
    teacher_batches = make_batches(load_tokenizer(teacher.source), sentences)
    base = xlmr_base_sized()
    rates = throughput({"student": (student.model, student_batches), "teacher": (teacher.model, teacher_batches),
                        "xlm-roberta-base-sized": (base, teacher_batches)})
    params = {"student": parameters(student.model), "teacher": parameters(teacher.model),
              "xlm-roberta-base-sized": parameters(base)}
    emit(SPEED_START)
    emit(f"Model forward passes only (tokenization excluded), on the same {len(sentences)} gold test sentences (a seeded sample of all files) "
         f"pre-tokenized in batches of 32 (at most 64 pieces), {args.threads} CPU threads, torch "
         f"{torch.__version__}; the models take turns, median of 5 passes. The xlm-roberta-base-sized encoder "
         "has random weights (its speed only).\n")
    emit("| model | parameters | sentences/s (batch 32) |")
    emit("|---|---|---|")
    for name in rates:
        emit(f"| {name} | {params[name]:,} | {rates[name]:.1f} |")
    checks = [
        ("student F1 / teacher F1 (macro, gold test, all languages)", ratio_f1, ">=", 0.95),
        ("student F1 / teacher F1 (macro, gold test, target languages)", ratio_target, ">=", 0.95),
        ("student / teacher throughput", rates["student"] / rates["teacher"], ">=", 3.0),
        ("student / xlm-roberta-base-sized throughput", rates["student"] / rates["xlm-roberta-base-sized"], ">=", 10.0),
        ("student / teacher parameters", params["student"] / params["teacher"], "<=", 0.2),
    ]
    emit("\n| ratio | measured | target | met |")
    emit("|---|---|---|---|")
    for name, value, op, target in checks:
        met = value >= target if op == ">=" else value <= target
        emit(f"| {name} | {value:.3f} | {op} {target} | {'yes' if met else 'NO'} |")
    emit(SPEED_END)
    if args.out:
        write_report(Path(args.out), lines, sys.argv[1:], args.threads)
    return 0


def write_report(path: Path, lines: list[str], argv: list[str], threads: int) -> None:
    """The printed report as a markdown page: the command, the date and machine, then the tables."""
    from polyner.bench.machine import describe_machine

    command = " ".join(["python benchmarks/distill_report.py", *argv])
    head = ["# Distillation report (default student vs teacher)", "",
            f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
            "Machine:", "", *[f"- {k}: {v}" for k, v in describe_machine(threads).items()], ""]
    text = "\n".join(line for line in lines if not line.startswith("machine: "))
    path.write_text("\n".join(head) + "\n" + text.strip() + "\n", encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
