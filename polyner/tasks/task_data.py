"""What the fine-tuning loop needs per task: encoded training rows, a collate function and a dev evaluator."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch

from polyner.tasks.classify import encode_pairs, predict_logits
from polyner.tasks.glue import GlueExample, GlueTask, glue_metrics
from polyner.tasks.squad import (DEFAULT_NULL_THRESHOLD, SquadExample, WindowConfig, answer_span, best_spans,
                                 build_features, pad_batch, qa_logits)
from polyner.tasks.squad_metric import squad_v2_evaluate

if TYPE_CHECKING:
    from polyner.tasks.finetune import FinetuneConfig


@dataclass
class DevResult:
    """Dev metrics of one evaluation, config entries to save with the model, and extra JSON files."""

    metrics: dict[str, float]
    config_updates: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskData:
    """What the loop needs from a task: train rows, a collate function, an evaluator and a description."""

    train_size: int
    collate: Callable[[list[int]], dict[str, torch.Tensor]]
    evaluate: Callable[[torch.nn.Module], DevResult]
    main_metric: str
    description: dict[str, Any]


def glue_task_data(task: GlueTask, tokenizer, train: list[GlueExample], dev: list[GlueExample],
                   config: FinetuneConfig) -> TaskData:
    """Encoded GLUE train rows with their labels, and an evaluator computing the task's metrics on dev."""
    pad = tokenizer.pad_token_id
    train_rows = encode_pairs(tokenizer, [e.text_a for e in train], [e.text_b for e in train], config.max_length)
    dev_rows = encode_pairs(tokenizer, [e.text_a for e in dev], [e.text_b for e in dev], config.max_length)
    dtype = torch.float if task.is_regression else torch.long
    labels = torch.tensor([e.label for e in train], dtype=dtype)

    def collate(indices: list[int]) -> dict[str, torch.Tensor]:
        ids, mask = pad_batch([train_rows[i] for i in indices], pad)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels[indices]}

    def evaluate(model) -> DevResult:
        logits = predict_logits(model, dev_rows, pad, config.eval_batch_size, progress=True)
        predictions = logits[:, 0] if task.is_regression else logits.argmax(axis=1)
        return DevResult(glue_metrics(task, predictions.tolist(), [e.label for e in dev]))

    return TaskData(len(train_rows), collate, evaluate, task.main_metric,
                    {"task_title": task.title, "max_length": config.max_length})


def window_config(config: FinetuneConfig) -> WindowConfig:
    """The SQuAD window settings of a fine-tuning run."""
    return WindowConfig(max_length=config.max_length, doc_stride=config.doc_stride,
                        max_query_length=config.max_query_length, max_answer_length=config.max_answer_length)


def squad_predictions(model, tokenizer, examples: list[SquadExample], windows: WindowConfig, batch_size: int,
                      progress: bool = False):
    """The best span and no-answer probability of every example."""
    features = build_features(tokenizer, [e.question for e in examples], [e.context for e in examples], None,
                              windows)
    starts, ends = qa_logits(model, features, tokenizer.pad_token_id, batch_size, progress)
    return best_spans([e.context for e in examples], features, starts, ends, windows)


def squad_task_data(tokenizer, train: list[SquadExample], dev: list[SquadExample],
                    config: FinetuneConfig) -> TaskData:
    """SQuAD train windows with span labels, and an evaluator with the official SQuAD 2.0 metric.

    ``exact``/``f1`` use the default no-answer rule (null score beats the best span); ``best_exact`` and
    ``best_f1`` use the threshold tuned on dev, which is saved with the model as ``qa_null_threshold``.
    """
    windows = window_config(config)
    features = build_features(tokenizer, [e.question for e in train], [e.context for e in train],
                              [answer_span(e) for e in train], windows)
    pad = tokenizer.pad_token_id
    starts = torch.tensor(features.start_positions, dtype=torch.long)
    ends = torch.tensor(features.end_positions, dtype=torch.long)
    gold = {e.id: e.answers for e in dev}

    def collate(indices: list[int]) -> dict[str, torch.Tensor]:
        ids, mask = pad_batch([features.input_ids[i] for i in indices], pad)
        return {"input_ids": ids, "attention_mask": mask, "start_positions": starts[indices],
                "end_positions": ends[indices]}

    def evaluate(model) -> DevResult:
        spans = squad_predictions(model, tokenizer, dev, windows, config.eval_batch_size, progress=True)
        predictions = {e.id: p.text for e, p in zip(dev, spans)}
        na_probs = {e.id: p.na_prob for e, p in zip(dev, spans)}
        metrics = squad_v2_evaluate(gold, predictions, na_probs, DEFAULT_NULL_THRESHOLD)
        threshold = float(metrics["best_f1_thresh"])
        final = {qid: "" if na_probs[qid] > threshold else text for qid, text in predictions.items()}
        saved = {"qa_null_threshold": threshold, "qa_max_length": windows.max_length,
                 "qa_doc_stride": windows.doc_stride, "qa_max_query_length": windows.max_query_length}
        return DevResult(metrics, saved,
                          {"dev_predictions.json": final, "dev_na_probs.json": na_probs})

    return TaskData(len(features), collate, evaluate, "best_f1",
                    {"task_title": "SQuAD 2.0", "max_length": config.max_length, "doc_stride": config.doc_stride,
                     "train_windows": len(features)})
