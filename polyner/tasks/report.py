"""The GLUE / SQuAD 2.0 table of docs/results.md: our fine-tuning runs next to the published XtremeDistil figures.

Each run upserts its row (model x task) into a JSON record kept inside the section itself, and the
section is re-rendered from it, so runs made at different times end up in one table.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from polyner.evaluate import write_section

SECTION = "finetune-glue-squad"
PAPER_SOURCE = ("Mukherjee, Hassan Awadallah and Gao, *XtremeDistilTransformers: Task Transfer for Task-agnostic "
                "Distillation* (arXiv:2106.04563, 2021), figures as published in the model card of "
                "[microsoft/xtremedistil-l12-h384-uncased]"
                "(https://huggingface.co/microsoft/xtremedistil-l12-h384-uncased) "
                "(\"results on GLUE dev set and SQuAD-v2\"; the card does not name the metric of each column)")
# name -> (parameters, {task: published figure}); CoLA and STS-B are not in the published table.
PAPER: dict[str, tuple[str, dict[str, float]]] = {
    "XtremeDistil-l6-h256 (paper)": ("13M", {"mnli": 83.9, "qnli": 89.5, "qqp": 90.6, "rte": 80.1, "sst2": 91.2,
                                             "mrpc": 90.0, "squad": 74.1}),
    "XtremeDistil-l6-h384 (paper)": ("22M", {"mnli": 85.4, "qnli": 90.3, "qqp": 91.0, "rte": 80.9, "sst2": 92.3,
                                             "mrpc": 90.0, "squad": 76.6}),
    "XtremeDistil-l12-h384 (paper)": ("33M", {"mnli": 87.2, "qnli": 91.9, "qqp": 91.3, "rte": 85.6, "sst2": 93.1,
                                              "mrpc": 90.4, "squad": 80.2}),
}
# task -> (column title, metrics shown, in order)
COLUMNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sst2": ("SST-2 acc", ("accuracy",)),
    "mrpc": ("MRPC F1/acc", ("f1", "accuracy")),
    "rte": ("RTE acc", ("accuracy",)),
    "cola": ("CoLA MCC", ("mcc",)),
    "stsb": ("STS-B Pearson/Spearman", ("pearson", "spearman")),
    "qnli": ("QNLI acc", ("accuracy",)),
    "qqp": ("QQP F1/acc", ("f1", "accuracy")),
    "mnli": ("MNLI-m acc", ("accuracy",)),
    "squad": ("SQuAD2 EM/F1", ("best_exact", "best_f1")),
}
_RECORD = re.compile(r"<!-- finetune-runs: (.*?) -->", re.S)


def run_row(record: dict) -> dict:
    """The part of a run's metrics record that the results table keeps."""
    best = record["best"] or {}
    return {"name": record["name"], "task": record["task"], "parameters": record["parameters"],
            "metrics": {k: round(v, 2) for k, v in best.items() if isinstance(v, (int, float))},
            "train_size": record.get("train_questions", record["train_size"]),
            "train_available": record["train_available"], "dev_size": record["dev_size"],
            "dev_available": record["dev_available"], "origin": record["dev_origin"], "epochs": record["epochs"],
            "steps": record["steps"], "max_length": record["max_length"], "lr": record["config"]["lr"],
            "minutes": record["minutes"], "date": record["date"],
            "baseline": {k: round(v, 2) for k, v in (record.get("baseline") or {}).items()}}


def read_runs(path: str | Path) -> list[dict]:
    """The runs recorded in the section of ``path`` (none if the file or section is absent)."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    begin, end = f"<!-- polyner:{SECTION} -->", f"<!-- /polyner:{SECTION} -->"
    if begin not in text or end not in text:
        return []
    match = _RECORD.search(text[text.index(begin):text.index(end)])
    return json.loads(match.group(1).replace("--\\u003e", "-->")) if match else []


def _cell(task: str, metrics: dict) -> str:
    shown = [metrics.get(m) for m in COLUMNS[task][1]]
    return "/".join(f"{v:.1f}" for v in shown if v is not None) or "–"


def _origin(run: dict) -> str:
    origin = run["origin"]
    if not origin.startswith("/"):
        return origin  # a hub dataset
    path = Path(origin)
    return f"local {path.parent.name}/{path.name}"


def render(runs: list[dict]) -> str:
    """The markdown of the section: the comparison table, the run details, and the JSON record."""
    tasks = list(COLUMNS)
    header = "| model | parameters | " + " | ".join(COLUMNS[t][0] for t in tasks) + " |"
    lines = [header, "|" + "---|" * (len(tasks) + 2)]
    names = list(dict.fromkeys(r["name"] for r in runs))
    for name in names:
        by_task = {r["task"]: r for r in runs if r["name"] == name}
        params = max(r["parameters"] for r in by_task.values()) / 1e6
        cells = [_cell(t, by_task[t]["metrics"]) if t in by_task else "–" for t in tasks]
        lines.append(f"| {name} | {params:.1f}M | " + " | ".join(cells) + " |")
    for name, (params, figures) in PAPER.items():
        cells = [f"{figures[t]:.1f}" if t in figures else "n/p" for t in tasks]
        lines.append(f"| {name} | {params} | " + " | ".join(cells) + " |")
    details = ["| model | task | data | train examples | dev examples | epochs | steps | max length | lr | minutes | "
               "date | result | constant baseline |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (r["name"], tasks.index(r["task"]) if r["task"] in tasks else 99)):
        details.append(f"| {r['name']} | {COLUMNS.get(r['task'], (r['task'],))[0].split()[0]} | {_origin(r)} | "
                       f"{r['train_size']} of {r['train_available']} | {r['dev_size']} of {r['dev_available']} | "
                       f"{r['epochs']} | {r['steps']} | {r['max_length']} | {r['lr']:g} | {r['minutes']} | "
                       f"{r['date']} | {_cell(r['task'], r['metrics'])} | "
                       f"{_cell(r['task'], r.get('baseline', {}))} |")
    if not runs:
        details = ["No run recorded yet: `polyner finetune glue|squad ... --results docs/results.md` adds one."]
    record = json.dumps(runs, ensure_ascii=False, sort_keys=True).replace("-->", "--\\u003e")
    return "\n".join([
        "### GLUE and SQuAD 2.0: fine-tuning the distilled student",
        "",
        "Each model is fine-tuned directly on the task with `polyner finetune glue|squad` (the distilled "
        "student itself, not the teacher; the teacher is fine-tuned the same way for reference). Figures are on "
        "the dev sets (GLUE dev; SQuAD 2.0 dev with the no-answer threshold tuned on dev, as the official "
        "script's best_exact/best_f1), with the checkpoint chosen on the same dev data. Our runs use subsets "
        "and few epochs (2 CPU cores; see the run table), so they are not comparable one to one with the "
        "published figures, which use full training sets. MRPC/QQP: F1/accuracy (positive class); "
        "STS-B: Pearson/Spearman x 100; SQuAD2: exact match/F1; the published rows give one number per task. "
        "n/p: not published; –: not run. The constant baseline of each run (run table) scores its dev set "
        "with one answer for every example: the most frequent train label (the train mean for STS-B; "
        "'no answer' for SQuAD 2.0).",
        "",
        *lines,
        "",
        f"Published rows: {PAPER_SOURCE}.",
        "",
        "Runs:",
        "",
        *details,
        "",
        f"<!-- finetune-runs: {record} -->",
    ])


def update_results(path: str | Path, record: dict) -> Path:
    """Add (or replace) this run's row in the section of ``path`` and rewrite the section."""
    row = run_row(record)
    runs = [r for r in read_runs(path) if (r["name"], r["task"]) != (row["name"], row["task"])] + [row]
    return write_section(path, SECTION, render(runs))
