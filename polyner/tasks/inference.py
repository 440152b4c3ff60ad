"""Ask a question of a text, or classify a sentence, with a fine-tuned model in a few lines.

``polyner.load(DIR, task="classify")`` returns a :class:`SequenceClassifier` and ``task="qa"`` a
:class:`QuestionAnswerer`; both check their input and never crash on an empty context or a question
longer than the window (the answer is then "no answer": ``answer == ""``).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from polyner.models.io import ModelDirectoryError, load_tokenizer, quiet_transformers
from polyner.tasks.classify import encode_pairs, predict_logits
from polyner.tasks.squad import DEFAULT_NULL_THRESHOLD, WindowConfig, best_spans, build_features, qa_logits

logger = logging.getLogger(__name__)
_HEADS = {"classify": ("ForSequenceClassification", "polyner finetune glue"),
          "qa": ("ForQuestionAnswering", "polyner finetune squad")}


def _check_text(value: Any, what: str) -> str:
    if isinstance(value, (bytes, bytearray)):
        raise TypeError(f"{what} must be str, not bytes: decode it first, e.g. data.decode('utf-8')")
    if not isinstance(value, str):
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    return value


class SequenceClassifier:
    """Label (and probability) of sentences or sentence pairs; the predicted value for a regression head.

    ``classifier("a sentence")`` -> ``{"label": ..., "score": ...}``; ``classifier(("first", "second"))``
    scores a pair; a list in gives a list out. A regression model (STS-B) gives ``{"label": "score",
    "score": value}``.
    """

    def __init__(self, model, tokenizer, max_length: int = 128, batch_size: int = 32) -> None:
        if max_length < 4 or batch_size < 1:
            raise ValueError("max_length must be at least 4 and batch_size positive")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_length, self.batch_size = max_length, batch_size
        self.regression = model.config.num_labels == 1 or model.config.problem_type == "regression"
        self.labels = {int(k): v for k, v in model.config.id2label.items()}

    def _items(self, inputs: Any) -> tuple[list[tuple[str, str | None]], bool]:
        if isinstance(inputs, (str, bytes, bytearray)) or (isinstance(inputs, tuple) and len(inputs) == 2
                                                           and all(isinstance(x, str) for x in inputs)):
            inputs, single = [inputs], True
        elif isinstance(inputs, Iterable) and not isinstance(inputs, dict):
            inputs, single = list(inputs), False
        else:
            raise TypeError(f"expected a str, a (str, str) pair or a list of them, not {type(inputs).__name__}")
        items = []
        for i, item in enumerate(inputs):
            if isinstance(item, (tuple, list)):
                if len(item) != 2:
                    raise ValueError(f"inputs[{i}] must be a (text, text) pair, not {len(item)} items")
                items.append((_check_text(item[0], f"inputs[{i}][0]"), _check_text(item[1], f"inputs[{i}][1]")))
            else:
                items.append((_check_text(item, f"inputs[{i}]"), None))
        return items, single

    def __call__(self, inputs: Any) -> dict | list[dict]:
        """Classify one input (str or pair) or a list of them."""
        items, single = self._items(inputs)
        if not items:
            return []
        results: list[dict | None] = [None] * len(items)
        for pairs in (False, True):  # sentences and pairs are encoded separately
            chosen = [i for i, (_, b) in enumerate(items) if (b is not None) == pairs]
            if not chosen:
                continue
            rows = encode_pairs(self.tokenizer, [items[i][0] for i in chosen],
                                [items[i][1] for i in chosen] if pairs else None, self.max_length)
            logits = predict_logits(self.model, rows, self.tokenizer.pad_token_id, self.batch_size)
            for i, row in zip(chosen, logits):
                results[i] = self._result(row)
        return results[0] if single else results  # type: ignore[return-value]

    def _result(self, logits) -> dict:
        if self.regression:
            return {"label": self.labels.get(0, "score"), "score": float(logits[0])}
        probabilities = torch.softmax(torch.from_numpy(logits), dim=-1)
        best = int(probabilities.argmax())
        return {"label": self.labels.get(best, str(best)), "score": float(probabilities[best])}


class QuestionAnswerer:
    """Extractive question answering over a context of any length (windows with a doc stride).

    ``qa(question, context)`` -> ``{"answer", "start", "end", "score"}`` with ``context[start:end] ==
    answer``; "no answer" is ``answer == ""`` (start = end = 0) with ``score`` the no-answer probability.
    It is chosen when that probability is above ``null_threshold`` (by default the one tuned on dev
    when the model was fine-tuned), or when the context is empty.
    """

    def __init__(self, model, tokenizer, windows: WindowConfig | None = None, null_threshold: float | None = None,
                 batch_size: int = 32) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        config = model.config
        self.windows = windows or WindowConfig(**window_defaults(config))
        self.windows.check(tokenizer)
        self.null_threshold = (null_threshold if null_threshold is not None
                               else float(getattr(config, "qa_null_threshold", DEFAULT_NULL_THRESHOLD)))
        self.batch_size = batch_size

    def __call__(self, question: str | Sequence[str], context: str | Sequence[str]) -> dict | list[dict]:
        """Answer one question about one context, or lists of questions and contexts of equal length."""
        single = isinstance(question, str) and isinstance(context, str)
        if not single:
            for value, what in ((question, "question"), (context, "context")):
                if not isinstance(value, (list, tuple)):
                    _check_text(value, what)  # raises for bytes, numbers, None ...
            if not (isinstance(question, (list, tuple)) and isinstance(context, (list, tuple))):
                raise TypeError("question and context must both be str, or both lists of str")
        questions = [question] if single else list(question)  # type: ignore[arg-type]
        contexts = [context] if single else list(context)  # type: ignore[arg-type]
        if len(questions) != len(contexts):
            raise ValueError(f"{len(questions)} questions for {len(contexts)} contexts")
        for i, (q, c) in enumerate(zip(questions, contexts)):
            _check_text(q, "question" if single else f"question[{i}]")
            _check_text(c, "context" if single else f"context[{i}]")
        answers: list[dict] = [{"answer": "", "start": 0, "end": 0, "score": 1.0} for _ in questions]
        todo = [i for i, (q, c) in enumerate(zip(questions, contexts)) if q.strip() and c.strip()]
        if todo:
            features = build_features(self.tokenizer, [questions[i] for i in todo], [contexts[i] for i in todo],
                                      None, self.windows)
            starts, ends = qa_logits(self.model, features, self.tokenizer.pad_token_id, self.batch_size)
            spans = best_spans([contexts[i] for i in todo], features, starts, ends, self.windows)
            for i, span in zip(todo, spans):
                if span.text and span.na_prob <= self.null_threshold:
                    answers[i] = {"answer": span.text, "start": span.start, "end": span.end, "score": span.score}
                else:
                    answers[i]["score"] = span.na_prob
        return answers[0] if single else answers


def window_defaults(config) -> dict:
    """The window settings a QA model was fine-tuned with (saved in its config), else SQuAD's usual ones."""
    return {"max_length": getattr(config, "qa_max_length", 384), "doc_stride": getattr(config, "qa_doc_stride", 128),
            "max_query_length": getattr(config, "qa_max_query_length", 64)}


def _load(target: str | Path, kind: str):
    from transformers import AutoConfig, AutoModelForQuestionAnswering, AutoModelForSequenceClassification

    import polyner.tasks.heads  # noqa: F401  (registers the student heads with the Auto classes)

    suffix, command = _HEADS[kind]
    quiet_transformers()
    try:
        config = AutoConfig.from_pretrained(str(target))
    except Exception as exc:
        raise ModelDirectoryError(f"cannot load the config of {target}: {exc}") from exc
    architectures = getattr(config, "architectures", None) or []
    if not any(a.endswith(suffix) for a in architectures):
        raise ModelDirectoryError(f"{target} has no {suffix[3:]} head (architectures: {architectures or 'none'}); "
                                  f"fine-tune it first, e.g. `{command} --model {target}`")
    auto = AutoModelForSequenceClassification if kind == "classify" else AutoModelForQuestionAnswering
    try:
        model = auto.from_pretrained(str(target), config=config, use_safetensors=True)
    except Exception as exc:
        raise ModelDirectoryError(f"cannot load the model in {target}: {exc}") from exc
    return model.float().eval(), load_tokenizer(target)


def load_task_pipeline(target: str | Path, task: str, **options):
    """A :class:`SequenceClassifier` (task "classify") or :class:`QuestionAnswerer` (task "qa") for the model directory
    ``target`` (``polyner.load`` locates and checks it).

    Options: ``max_length``, ``batch_size``; for qa also ``doc_stride``, ``max_query_length``,
    ``max_answer_length`` and ``null_threshold``.
    """
    if task not in _HEADS:
        raise ValueError(f"unknown task {task!r}: expected 'classify' or 'qa'")
    model, tokenizer = _load(target, task)
    if task == "classify":
        return SequenceClassifier(model, tokenizer, **options)
    window_keys = ("max_length", "doc_stride", "max_query_length", "max_answer_length")
    unknown = set(options) - set(window_keys) - {"null_threshold", "batch_size"}
    if unknown:
        raise TypeError(f"unknown qa options: {', '.join(sorted(unknown))}")
    chosen = {k: options[k] for k in window_keys if k in options}
    windows = WindowConfig(**{**window_defaults(model.config), **chosen})
    return QuestionAnswerer(model, tokenizer, windows, options.get("null_threshold"), options.get("batch_size", 32))
