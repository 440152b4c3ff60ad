"""GLUE: the task table, readers (hub through ``datasets``, or the original GLUE TSV files) and the metrics
each task is scored with (accuracy; F1 for MRPC/QQP; Matthews correlation for CoLA; Pearson/Spearman for
STS-B). Label ids follow the hub's ``glue`` dataset, so a model trained on either source reads the same."""
from __future__ import annotations

import csv
import logging
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task: hub columns, local TSV layout, labels (empty: regression) and metrics."""

    name: str  # hub config name, e.g. sst2
    title: str  # as printed in tables, e.g. SST-2
    folder: str  # local folder in the GLUE distribution, e.g. SST-2
    text_a: str  # hub column of the first text
    text_b: str | None  # hub column of the second text (None: single sentence)
    labels: tuple[str, ...]  # label names by id; () is regression
    metrics: tuple[str, ...]  # first one selects the checkpoint on dev
    local_columns: tuple[str | int, str | int | None, str | int]  # TSV header names (or indices: no header)
    dev_split: str = "validation"
    local_dev: str = "dev.tsv"

    @property
    def is_regression(self) -> bool:
        return not self.labels

    @property
    def main_metric(self) -> str:
        return self.metrics[0]


TASKS: dict[str, GlueTask] = {task.name: task for task in (
    GlueTask("cola", "CoLA", "CoLA", "sentence", None, ("unacceptable", "acceptable"), ("mcc", "accuracy"),
             (3, None, 1)),
    GlueTask("sst2", "SST-2", "SST-2", "sentence", None, ("negative", "positive"), ("accuracy",),
             ("sentence", None, "label")),
    GlueTask("mrpc", "MRPC", "MRPC", "sentence1", "sentence2", ("not_equivalent", "equivalent"), ("f1", "accuracy"),
             ("#1 String", "#2 String", "Quality")),
    GlueTask("qqp", "QQP", "QQP", "question1", "question2", ("not_duplicate", "duplicate"), ("f1", "accuracy"),
             ("question1", "question2", "is_duplicate")),
    GlueTask("stsb", "STS-B", "STS-B", "sentence1", "sentence2", (), ("pearson", "spearman"),
             ("sentence1", "sentence2", "score")),
    GlueTask("mnli", "MNLI", "MNLI", "premise", "hypothesis", ("entailment", "neutral", "contradiction"),
             ("accuracy",), ("sentence1", "sentence2", "gold_label"), dev_split="validation_matched",
             local_dev="dev_matched.tsv"),
    GlueTask("qnli", "QNLI", "QNLI", "question", "sentence", ("entailment", "not_entailment"), ("accuracy",),
             ("question", "sentence", "label")),
    GlueTask("rte", "RTE", "RTE", "sentence1", "sentence2", ("entailment", "not_entailment"), ("accuracy",),
             ("sentence1", "sentence2", "label")),
)}


@dataclass
class GlueExample:
    """One sentence or sentence pair with its label id (or score, for regression)."""

    text_a: str
    text_b: str | None
    label: int | float


def get_task(name: str) -> GlueTask:
    """The task called ``name`` (case and dashes ignored: SST-2, sst2 and Sst-2 are the same)."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in TASKS:
        raise ValueError(f"unknown GLUE task {name!r}: expected one of {', '.join(TASKS)}")
    return TASKS[key]


def _label(task: GlueTask, raw: str, where: str) -> int | float:
    raw = raw.strip()
    if task.is_regression:
        return float(raw)
    if raw in task.labels:
        return task.labels.index(raw)
    value = int(raw)
    if not 0 <= value < len(task.labels):
        raise ValueError(f"{where}: label {raw!r} outside 0..{len(task.labels) - 1}")
    return value


def read_glue_tsv(task: GlueTask, path: str | Path) -> list[GlueExample]:
    """Read one GLUE TSV file (no quoting; CoLA has no header). Rows with missing fields are skipped and counted."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{task.title}: no {path.name} in {path.parent}")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    a, b, y = task.local_columns
    if isinstance(a, str):
        if not rows:
            raise ValueError(f"{path}: empty file")
        header = [h.strip() for h in rows[0]]
        try:
            a, b, y = (header.index(c) if c is not None else None for c in (a, b, y))
        except ValueError as exc:
            raise ValueError(f"{path}: header {header} lacks a column of {task.local_columns}") from exc
        rows = rows[1:]
    examples, skipped = [], 0
    for number, row in enumerate(rows, start=2 if isinstance(task.local_columns[0], str) else 1):
        needed = max(i for i in (a, b, y) if i is not None)
        if len(row) <= needed or not row[y].strip():
            skipped += 1
            continue
        examples.append(GlueExample(row[a], row[b] if b is not None else None,
                                    _label(task, row[y], f"{path}:{number}")))
    if skipped:
        logger.warning("%s: skipped %d malformed rows", path, skipped)
    return examples


def _hub_split(task: GlueTask, split: str, hub_name: str) -> list[GlueExample]:
    import datasets

    rows = datasets.load_dataset(hub_name, task.name, split=split)
    return [GlueExample(r[task.text_a], r[task.text_b] if task.text_b else None,
                        float(r["label"]) if task.is_regression else int(r["label"])) for r in rows]


def load_glue(task: GlueTask, split: str, data_dir: str | Path | None = None, use_hub: bool = True,
              hub_name: str = "nyu-mll/glue") -> tuple[list[GlueExample], str]:
    """The ``train`` or ``dev`` examples of ``task`` and where they came from (hub first, else local TSV).

    ``data_dir`` is a GLUE root with one folder per task (SST-2/train.tsv ...) or the task folder itself.
    """
    from polyner.tasks.sources import load_with_fallback

    if split not in ("train", "dev"):
        raise ValueError(f"split must be train or dev, not {split!r}")
    hub_split = "train" if split == "train" else task.dev_split
    file_name = "train.tsv" if split == "train" else task.local_dev

    def local(root: Path) -> list[GlueExample]:
        for folder in (root / task.folder, root):
            if (folder / file_name).exists():
                return read_glue_tsv(task, folder / file_name)
        raise FileNotFoundError(f"{task.title} {split}: no {task.folder}/{file_name} under {root} "
                                f"(a GLUE root with one folder per task, or the task folder itself)")

    examples, origin = load_with_fallback(lambda: _hub_split(task, hub_split, hub_name), local, data_dir, "glue",
                                          use_hub)
    if not examples:
        raise ValueError(f"{task.title} {split}: no examples in {origin}")
    where = f"{hub_name}/{task.name} {hub_split}" if origin == "hub" else f"{origin}/{task.folder}/{file_name}"
    return examples, where


def subsample(items: list, limit: int | None, seed: int) -> list:
    """At most ``limit`` items drawn at random with ``seed``, kept in their original order."""
    if limit is None or limit >= len(items):
        return items
    if limit <= 0:
        raise ValueError(f"a sample limit must be positive, not {limit}")
    chosen = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in chosen]


def _correlation(kind: str, predictions: np.ndarray, references: np.ndarray) -> float:
    from scipy import stats

    if np.ptp(predictions) == 0 or np.ptp(references) == 0:
        return 0.0  # undefined for a constant series; scored as no correlation
    value = (stats.pearsonr if kind == "pearson" else stats.spearmanr)(predictions, references)[0]
    return float(value) if math.isfinite(value) else 0.0


def glue_metrics(task: GlueTask, predictions: Sequence[float], references: Sequence[float]) -> dict[str, float]:
    """The task's metrics in percent: ids (classification) or scores (STS-B) against the references.

    F1 is the binary F1 of the positive class (id 1: equivalent / duplicate), as GLUE reports it.
    """
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not len(references):
        raise ValueError("no examples to score")
    p, r = np.asarray(predictions), np.asarray(references)
    scores: dict[str, float] = {}
    for metric in task.metrics:
        if metric == "accuracy":
            scores[metric] = 100 * float(accuracy_score(r.astype(int), p.astype(int)))
        elif metric == "f1":
            scores[metric] = 100 * float(f1_score(r.astype(int), p.astype(int), pos_label=1, zero_division=0))
        elif metric == "mcc":
            scores[metric] = 100 * float(matthews_corrcoef(r.astype(int), p.astype(int)))
        elif metric in ("pearson", "spearman"):
            scores[metric] = 100 * _correlation(metric, p.astype(float), r.astype(float))
        else:
            raise ValueError(f"unknown metric {metric!r}")
    return scores


def constant_baseline(task: GlueTask, train: Sequence[GlueExample], dev: Sequence[GlueExample]) -> dict[str, float]:
    """Dev metrics of always predicting the most frequent train label (the train mean for regression).

    The floor a fine-tuned model has to clear: MRPC's positive class alone gives F1 81, CoLA's majority
    class MCC 0, and a constant score has no correlation with STS-B's.
    """
    if not train or not dev:
        raise ValueError("a baseline needs train and dev examples")
    if task.is_regression:
        constant: float = float(np.mean([ex.label for ex in train]))
    else:
        labels = [int(ex.label) for ex in train]
        constant = max(sorted(set(labels)), key=labels.count)
    return glue_metrics(task, [constant] * len(dev), [ex.label for ex in dev])
