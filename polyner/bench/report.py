"""The tables of ``polyner bench``: figures, ratios against the teacher, F1 per language, agreement, cost
curve, targets, and the machine; printed, and written into a markdown file with --write (docs/benchmarks.md)."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from polyner.agreement import Agreement, entity_agreement, tag_keys
from polyner.bench.runner import (SCALE, STUDENT_INT8, STUDENT_INT8_PER_BATCH, STUDENT_ONNX, STUDENT_TORCH, TEACHER,
                                  BenchRun)
from polyner.bench.worker import Measurement

DOCS_HEADER = "# Benchmarks\n\nWritten by `polyner bench --write` (sections are replaced when it runs again).\n"
SECTION = "inference"
LINEAR_TOLERANCE = 0.25  # time ratio within 25% of the length ratio counts as linear


@dataclass
class Check:
    """One target: what was measured against what was asked."""

    name: str
    value: float | None
    op: str  # ">=", "<=", "<", ">"
    target: float
    unit: str = ""

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return {">=": self.value >= self.target, "<=": self.value <= self.target,
                "<": self.value < self.target, ">": self.value > self.target}[self.op]


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def paired_ratios(run: BenchRun, a: Measurement | None, b: Measurement | None, batch: int = 32) -> list[float]:
    """``a``'s speed over ``b``'s, round by round, at batch 32 (or 1); empty unless the models took turns."""
    if a is None or b is None or not in_turns(run):
        return []
    kind = "batch32" if batch == 32 else "batch1"
    pa, pb = getattr(a, f"{kind}_passes"), getattr(b, f"{kind}_passes")
    if not pa or len(pa) != len(pb) or not all(pb):
        return []
    return [x / y for x, y in zip(pa, pb)]


def speed_ratio(run: BenchRun, a: Measurement | None, b: Measurement | None, batch: int = 32) -> float | None:
    """How many times faster ``a`` is than ``b`` at batch 32 (or 1).

    When the models took turns, pass i of every model ran in the same round, so the ratio is the median of
    the per-round ratios (a drift of the machine between rounds cancels out); otherwise the ratio of medians.
    """
    if a is None or b is None:
        return None
    rounds = paired_ratios(run, a, b, batch)
    if rounds:
        return statistics.median(rounds)
    return ratio(*(getattr(m, "batch32_sps" if batch == 32 else "batch1_sps") for m in (a, b)))


def fmt(value: float | None, digits: int = 1, suffix: str = "") -> str:
    """A number with ``digits`` decimals, or "n/a"."""
    return "n/a" if value is None else f"{value:,.{digits}f}{suffix}"


def by_name(results: Sequence[Measurement]) -> dict[str, Measurement]:
    """Measurements by contender name, failed ones left out."""
    return {r.name: r for r in results if not r.error}


def agreements(results: Sequence[Measurement]) -> dict[str, Agreement]:
    """Entity agreement of each ONNX student with the torch student on the F1 sentences."""
    found = by_name(results)
    reference = found.get(STUDENT_TORCH)
    out = {}
    for name in (STUDENT_ONNX, STUDENT_INT8, STUDENT_INT8_PER_BATCH):
        other = found.get(name)
        if reference is not None and other is not None and reference.tags and other.tags:
            out[name] = entity_agreement([tag_keys(t) for t in reference.tags], [tag_keys(t) for t in other.tags])
    return out


def fastest_student(results: Sequence[Measurement]) -> Measurement | None:
    """The student backend with the highest batch-32 throughput (of the kinds that ship: not per-batch int8)."""
    students = [r for r in by_name(results).values()
                if r.name.startswith("student") and r.name != STUDENT_INT8_PER_BATCH and r.batch32_sps]
    return max(students, key=lambda r: r.batch32_sps, default=None)


def is_linear(cost: dict[str, float]) -> tuple[float | None, bool | None]:
    """Time ratio of the two longest texts, and whether it is within tolerance of their length ratio."""
    sizes = sorted((int(k), v) for k, v in cost.items())
    if len(sizes) < 2 or sizes[-2][1] <= 0:
        return None, None
    (n1, t1), (n2, t2) = sizes[-2], sizes[-1]
    time_ratio, length_ratio = t2 / t1, n2 / n1
    return time_ratio, abs(time_ratio / length_ratio - 1) <= LINEAR_TOLERANCE


def checks(run: BenchRun) -> list[Check]:
    """The issue's targets, measured."""
    found = by_name(run.results)
    best = fastest_student(run.results)
    teacher, scale = found.get(TEACHER), found.get(SCALE)
    out = [
        Check(f"fastest student ({best.name if best else 'n/a'}) / teacher, sentences/s at batch 32",
              speed_ratio(run, best, teacher), ">=", 10.0, "x"),
        Check("fastest student / xlm-roberta-base-sized, sentences/s at batch 32",
              speed_ratio(run, best, scale), ">=", 40.0, "x"),
        Check("fastest student: load time", best and best.load_s, "<", 2.0, " s"),
        Check("fastest student: peak RSS while tagging", best and best.peak_rss_mb, "<", 500.0, " MB"),
    ]
    agree = agreements(run.results)
    if STUDENT_ONNX in agree:
        out.append(Check("ONNX fp32 entities agreeing with torch fp32", 100 * agree[STUDENT_ONNX].rate, ">=", 99.5, "%"))
    torch_f1, int8_f1 = (found.get(n) and found[n].f1_macro for n in (STUDENT_TORCH, STUDENT_INT8))
    drop = None if torch_f1 is None or int8_f1 is None else torch_f1 - int8_f1
    out.append(Check("int8 macro F1 drop: torch fp32 minus ONNX int8 (below target: int8 may be the shipped default)",
                     drop, "<", 0.5,
                     " points"))
    return out


def in_turns(run: BenchRun) -> bool:
    """Whether the models took turns pass by pass (isolated workers in turns mode)."""
    return bool(run.config.isolate and getattr(run.config, "turns", False))


def turns_note(run: BenchRun) -> str:
    """How the timed passes were ordered, for the report's first sentence."""
    if not in_turns(run):
        return ", one model after the other"
    return (" (the processes load one after the other, then take turns: one timed pass of each model, round after "
            "round, so that a drift in the machine's speed during the run shifts every model alike)")


def render(run: BenchRun, command: str = "polyner bench") -> str:
    """The whole report as markdown."""
    results = run.results
    found = by_name(results)
    teacher = found.get(TEACHER)
    lines = ["## Inference: teacher, xlm-roberta-base-sized encoder and student backends side by side", "",
             f"Command: `{command}`. Each model is measured in {'a fresh process of its own' if all(r.isolated for r in results) else 'this process (not isolated: load time and RSS are not its own)'}"
             f"{turns_note(run)}, "
             f"on the same texts, with {run.config.threads} thread(s) (torch intra-op threads or ONNX Runtime "
             "intra-op threads, and the Rust tokenizer's threads).", "", "Machine:", ""]
    lines += [f"- {key}: {value}" for key, value in run.machine.items()]
    t = run.texts
    lines += ["", f"Texts: gold test sets under `{t['gold']}` ({t['files']} files, {t['languages']} languages, at most "
              f"{t['max_per_file']} sentences per file: {t['f1_sentences']} sentences for F1 and agreement); speed on a "
              f"seeded sample of {t['speed_sentences']} of them ({t['speed_words']} words), read as pre-split words "
              f"through the same `Tagger` (tokenization, windows, decoding included).", "",
              "- sentences/s at batch 32: the speed sample in one call, batches of 32 (median of "
              f"{run.config.repeats} passes, after one untimed pass); at batch 1: one call per sentence "
              f"({'median of ' + str(run.config.repeats) + ' passes' if in_turns(run) else 'one pass'}); p50: "
              "median time of those calls. Cost curve: after one untimed text of up to 3,000 words.",
              "- load: `polyner.load()` in a fresh process after `import polyner` (and `import torch` for the models "
              "torch runs; an ONNX model's process never imports torch or transformers); peak RSS: the high-water mark of "
              "that process's resident memory (`VmHWM`, as `ru_maxrss` would carry the parent's over `exec`) after "
              "its speed and cost-curve runs, before the F1 scorer is imported; size: the weights file and every top-level file of the model "
              "directory. The xlm-roberta-base-sized encoder has random weights (speed only): it is built, "
              "not loaded, and not saved.", ""]
    lines += ["| model | backend | parameters (M) | weights MB | dir MB | load s | sent/s batch 1 | sent/s batch 32 "
              "| p50 ms | peak RSS MB | macro F1 |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    params = {r.name: r.parameters for r in results}
    for r in results:
        if r.error:
            lines.append(f"| {r.name} | {r.backend} | failed: {r.error} |" + " |" * 8)
            continue
        count = r.parameters if r.parameters is not None else params.get(STUDENT_TORCH)
        backend = r.backend + (f" {r.quantization}" if r.quantization else "")
        lines.append(f"| {r.name} | {backend} | {fmt(count and count / 1e6, 2)} | {fmt(r.model_bytes and r.model_bytes / 1e6)} "
                     f"| {fmt(r.dir_bytes and r.dir_bytes / 1e6)} | {fmt(r.load_s, 2)} | {fmt(r.batch1_sps)} "
                     f"| {fmt(r.batch32_sps)} | {fmt(r.p50_ms)} | {fmt(r.peak_rss_mb, 0)} | {fmt(r.f1_macro, 2)} |")
    lines += ["", "Against the teacher (speed: times faster; RSS, size, load: fraction of the teacher's):", "",
              "| model | batch 32 | batch 1 | p50 latency | peak RSS | weights | load |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if r.error or teacher is None:
            continue
        lines.append(f"| {r.name} | {fmt(speed_ratio(run, r, teacher), 2)} "
                     f"| {fmt(speed_ratio(run, r, teacher, batch=1), 2)} | {fmt(ratio(teacher.p50_ms, r.p50_ms), 2)} "
                     f"| {fmt(ratio(r.peak_rss_mb, teacher.peak_rss_mb), 3)} | {fmt(ratio(r.model_bytes, teacher.model_bytes), 3)} "
                     f"| {fmt(ratio(r.load_s, teacher.load_s), 3)} |")
    best = fastest_student(results)
    for other in (teacher, found.get(SCALE)):
        rounds = paired_ratios(run, best, other)
        if rounds:
            lines += ["", f"{best.name} / {other.name} at batch 32, round by round: "
                      f"{', '.join(f'{x:.2f}' for x in rounds)} (median {statistics.median(rounds):.2f}; the ratios "
                      "above are these medians when the models took turns)."]
    lines += ["", *quality_table(results), "", *cost_table(results), "", "Targets:", "",
              "| check | measured | target | met |", "|---|---:|---:|---|"]
    for check in checks(run):
        met = {True: "yes", False: "NO", None: "n/a"}[check.met]
        lines.append(f"| {check.name} | {fmt(check.value, 2, check.unit)} | {check.op} {check.target:g}{check.unit} | {met} |")
    return "\n".join(lines) + "\n"


def quality_table(results: Sequence[Measurement]) -> list[str]:
    """F1 per language of the trained models, the int8 change, and the entity agreement lines."""
    found = by_name(results)
    names = [n for n in (TEACHER, STUDENT_TORCH, STUDENT_ONNX, STUDENT_INT8, STUDENT_INT8_PER_BATCH)
             if n in found and found[n].f1_by_lang]
    if not names:
        return ["No F1: no trained model was measured."]
    has_delta = STUDENT_TORCH in names and STUDENT_INT8 in names
    head = ["lang", *names] + (["int8 - torch fp32"] if has_delta else [])
    lines = ["F1 per language (word-level seqeval, strict IOB2) on the gold test sentences:", "",
             "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    langs = sorted({lang for n in names for lang in found[n].f1_by_lang})
    for lang in langs:
        cells = [fmt(found[n].f1_by_lang.get(lang), 2) for n in names]
        if has_delta:
            a, b = found[STUDENT_INT8].f1_by_lang.get(lang), found[STUDENT_TORCH].f1_by_lang.get(lang)
            cells.append(fmt(None if a is None or b is None else a - b, 2))
        lines.append(f"| {lang} | " + " | ".join(cells) + " |")
    cells = [fmt(found[n].f1_macro, 2) for n in names]
    if has_delta:
        cells.append(fmt(found[STUDENT_INT8].f1_macro - found[STUDENT_TORCH].f1_macro, 2))
    lines.append("| **macro** | " + " | ".join(cells) + " |")
    for name, agreement in agreements(results).items():
        lines += ["", f"Entity agreement of {name} with {STUDENT_TORCH} (exact (start, end, label) over the distinct "
                  f"entities of both): {agreement.describe()}."]
    return lines


def cost_table(results: Sequence[Measurement]) -> list[str]:
    """Seconds for one text of N words (read in stride windows), and whether time grows linearly."""
    rows = [r for r in results if not r.error and r.cost_s]
    if not rows:
        return ["No cost curve was measured."]
    sizes = sorted({int(k) for r in rows for k in r.cost_s})
    head = ["model", *[f"{n:,} words s" for n in sizes], "ms per word (longest)", "time ratio of the two longest",
            "linear"]
    lines = ["Cost curve: one text of N words (`tagger(text)`, stride windows), seconds:", "",
             "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 2) + "---|"]
    for r in rows:
        times = [r.cost_s.get(str(n)) for n in sizes]
        growth, linear = is_linear(r.cost_s)
        per_word = 1000 * times[-1] / sizes[-1] if times[-1] is not None else None
        lengths = f" (length x{sizes[-1] / sizes[-2]:g})" if len(sizes) > 1 else ""
        lines.append(f"| {r.name} | " + " | ".join(fmt(t, 3) for t in times) +
                     f" | {fmt(per_word, 3)} | {fmt(growth, 2)}{lengths} "
                     f"| {'yes' if linear else 'NO' if linear is not None else 'n/a'} |")
    return lines


def write_docs(path: str | Path, body: str) -> Path:
    """Write the report as the ``inference`` section of the markdown file ``path``, keeping other sections."""
    from polyner.evaluate import write_section

    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(DOCS_HEADER, encoding="utf-8")
    return write_section(path, SECTION, body)
