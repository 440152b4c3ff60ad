"""SQuAD 2.0: reading (hub or the official JSON), windows over long contexts with a doc stride, training
labels, running a QA model, and mapping the best span back to characters of the context.

A question is cut to ``max_query_length`` pieces, so no question is longer than the window; a context
is cut into windows of ``max_length`` pieces that overlap by ``doc_stride`` pieces. A span is scored
``start_logit + end_logit``; the no-answer score of an example is the smallest ``start + end`` logit of
the first (CLS) token over its windows; ``na_prob = sigmoid(null - best span)`` is the probability of
no answer that the official metric's threshold search works on.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from polyner.tagging.tagger import softmax

logger = logging.getLogger(__name__)
DEFAULT_NULL_THRESHOLD = 0.5  # na_prob > 0.5 <=> the no-answer score beats the best span


@dataclass
class SquadExample:
    """A question over a context; ``answers`` empty means unanswerable (SQuAD 2.0 ``is_impossible``)."""

    id: str
    question: str
    context: str
    answers: list[str] = field(default_factory=list)
    answer_starts: list[int] = field(default_factory=list)
    title: str = ""

    @property
    def is_impossible(self) -> bool:
        return not self.answers


@dataclass
class WindowConfig:
    """How questions and contexts are cut into model inputs, and how spans are read back."""

    max_length: int = 384  # pieces per window, specials included
    doc_stride: int = 128  # pieces shared by two neighbouring windows of one context
    max_query_length: int = 64  # longer questions are cut to this many pieces
    max_answer_length: int = 30  # pieces
    n_best: int = 20  # start and end candidates per window

    def check(self, tokenizer) -> None:
        """Raise ValueError if a window cannot hold the question, some context and the stride."""
        specials = tokenizer.num_special_tokens_to_add(pair=True)
        room = self.max_length - self.max_query_length - specials
        if room <= 0:
            raise ValueError(f"max_length {self.max_length} leaves no room for context after a question of "
                             f"{self.max_query_length} pieces and {specials} special tokens")
        if not 0 <= self.doc_stride < room:
            raise ValueError(f"doc_stride must be in [0, {room}) for max_length {self.max_length} and "
                             f"max_query_length {self.max_query_length}, not {self.doc_stride}")
        if self.max_answer_length < 1 or self.n_best < 1 or self.max_query_length < 1:
            raise ValueError("max_query_length, max_answer_length and n_best must be positive")


@dataclass
class QAFeatures:
    """Model windows: ids, the example each comes from, context character offsets (None elsewhere), labels."""

    input_ids: list[list[int]] = field(default_factory=list)
    example_index: list[int] = field(default_factory=list)
    offsets: list[list[tuple[int, int] | None]] = field(default_factory=list)
    cls_index: list[int] = field(default_factory=list)
    start_positions: list[int] = field(default_factory=list)
    end_positions: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class QAPrediction:
    """The best span of one example: text, character offsets into the context, span probability, na_prob."""

    text: str
    start: int
    end: int
    score: float
    na_prob: float


def read_squad_json(path: str | Path) -> list[SquadExample]:
    """Read a SQuAD v1.1/v2.0 JSON file (``data -> paragraphs -> qas``) into examples."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"SQuAD file not found: {path}")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    examples = []
    for article in payload.get("data", []):
        for paragraph in article.get("paragraphs", []):
            context = paragraph["context"]
            for qa in paragraph.get("qas", []):
                answers = [] if qa.get("is_impossible") else qa.get("answers", [])
                examples.append(SquadExample(str(qa["id"]), qa["question"], context, [a["text"] for a in answers],
                                             [int(a["answer_start"]) for a in answers], article.get("title", "")))
    if not examples:
        raise ValueError(f"{path}: no questions (expected SQuAD JSON: data -> paragraphs -> qas)")
    return examples


def _hub_split(split: str, hub_name: str) -> list[SquadExample]:
    import datasets

    rows = datasets.load_dataset(hub_name, split=split)
    return [SquadExample(str(r["id"]), r["question"], r["context"], list(r["answers"]["text"]),
                         [int(s) for s in r["answers"]["answer_start"]], r.get("title", "")) for r in rows]


def load_squad(split: str, data_dir: str | Path | None = None, use_hub: bool = True,
               hub_name: str = "rajpurkar/squad_v2") -> tuple[list[SquadExample], str]:
    """The ``train`` or ``dev`` questions of SQuAD 2.0 and where they came from (hub, else local JSON).

    ``data_dir`` holds ``train-v2.0.json`` and ``dev-v2.0.json`` (the official file names).
    """
    from polyner.tasks.sources import load_with_fallback

    if split not in ("train", "dev"):
        raise ValueError(f"split must be train or dev, not {split!r}")
    file_name = f"{split}-v2.0.json"
    examples, origin = load_with_fallback(lambda: _hub_split("train" if split == "train" else "validation", hub_name),
                                          lambda root: read_squad_json(root / file_name), data_dir, "squad", use_hub)
    return examples, (f"{hub_name} {split}" if origin == "hub" else f"{origin}/{file_name}")


def no_answer_baseline(dev: Sequence[SquadExample]) -> dict[str, float]:
    """Dev exact match and F1 of answering "no answer" to every question: the share of unanswerable ones."""
    if not dev:
        raise ValueError("a baseline needs dev questions")
    share = 100.0 * sum(ex.is_impossible for ex in dev) / len(dev)
    return {"exact": share, "f1": share, "best_exact": share, "best_f1": share}


def truncate_question(tokenizer, question: str, max_pieces: int) -> str:
    """``question`` without leading whitespace, cut after its first ``max_pieces`` pieces."""
    question = question.lstrip()
    while True:
        encoded = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
        if len(encoded["input_ids"]) <= max_pieces:
            return question
        cut = encoded["offset_mapping"][max_pieces - 1][1] if max_pieces > 0 else 0
        question = question[:min(cut, len(question) - 1)]  # strictly shorter, so this ends


def answer_span(example: SquadExample) -> tuple[int, int] | None:
    """Character span ``[start, end)`` of the first answer, or None when unanswerable."""
    if example.is_impossible:
        return None
    start = example.answer_starts[0]
    return start, start + len(example.answers[0])


def build_features(tokenizer, questions: Sequence[str], contexts: Sequence[str],
                   spans: Sequence[tuple[int, int] | None] | None, config: WindowConfig) -> QAFeatures:
    """Windows for each (question, context); with ``spans`` also the start/end token labels.

    A window whose context does not contain the whole answer, and every window of an unanswerable
    question, is labelled with the CLS position (no answer). Empty contexts give one window without
    context pieces, so only "no answer" can be predicted.
    """
    config.check(tokenizer)
    features = QAFeatures()
    if not questions:
        return features
    questions = [q.lstrip() for q in questions]
    lengths = [len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]]
    questions = [truncate_question(tokenizer, q, config.max_query_length) if n > config.max_query_length else q
                 for q, n in zip(questions, lengths)]
    encoded = tokenizer(questions, [c if c.strip() else "" for c in contexts], truncation="only_second",
                        max_length=config.max_length, stride=config.doc_stride, return_overflowing_tokens=True,
                        return_offsets_mapping=True, padding=False)
    cls_id = tokenizer.cls_token_id
    for row, ids in enumerate(encoded["input_ids"]):
        example = encoded["overflow_to_sample_mapping"][row]
        sequence_ids = encoded.sequence_ids(row)
        offsets = [tuple(o) if s == 1 else None for o, s in zip(encoded["offset_mapping"][row], sequence_ids)]
        cls = ids.index(cls_id) if cls_id in ids else 0
        features.input_ids.append(list(ids))
        features.example_index.append(example)
        features.offsets.append(offsets)
        features.cls_index.append(cls)
        start = end = cls
        span = spans[example] if spans is not None else None
        context_positions = [i for i, o in enumerate(offsets) if o is not None]
        if span is not None and context_positions:
            first, last = context_positions[0], context_positions[-1]
            if offsets[first][0] <= span[0] and offsets[last][1] >= span[1]:
                start = max(i for i in context_positions if offsets[i][0] <= span[0])
                end = min(i for i in context_positions if offsets[i][1] >= span[1])
        features.start_positions.append(start)
        features.end_positions.append(end)
    return features


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists into ``input_ids`` and ``attention_mask`` tensors."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return ids, mask


@torch.inference_mode()
def qa_logits(model, features: QAFeatures, pad_id: int, batch_size: int = 32,
              progress: bool = False) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Start and end logits of every window (length-sorted batches, returned in feature order)."""
    order = sorted(range(len(features)), key=lambda i: len(features.input_ids[i]))
    starts: list[np.ndarray | None] = [None] * len(features)
    ends: list[np.ndarray | None] = [None] * len(features)
    batches = range(0, len(order), batch_size)
    for begin in tqdm(batches, desc="qa windows", disable=not progress, leave=False):
        chunk = order[begin:begin + batch_size]
        ids, mask = pad_batch([features.input_ids[i] for i in chunk], pad_id)
        out = model(input_ids=ids, attention_mask=mask)
        for row, i in enumerate(chunk):
            n = len(features.input_ids[i])
            starts[i] = out.start_logits[row, :n].float().numpy()
            ends[i] = out.end_logits[row, :n].float().numpy()
    return starts, ends  # type: ignore[return-value]


def best_spans(contexts: Sequence[str], features: QAFeatures, start_logits: Sequence[np.ndarray],
               end_logits: Sequence[np.ndarray], config: WindowConfig) -> list[QAPrediction]:
    """The best non-null span of each context with its character offsets, and the no-answer probability.

    ``score`` is the span's probability within its window (softmax of start and end over the CLS and the
    context pieces). ``text`` is "" (na_prob 1) when no window has a valid span, e.g. an empty context.
    """
    by_example: dict[int, list[int]] = {}
    for feature, example in enumerate(features.example_index):
        by_example.setdefault(example, []).append(feature)
    predictions = []
    for example, context in enumerate(contexts):
        null_score = math.inf
        best: tuple[float, int, int, float] | None = None  # logit sum, char start, char end, probability
        for f in by_example.get(example, []):
            offsets, s, e = features.offsets[f], start_logits[f], end_logits[f]
            cls = features.cls_index[f]
            null_score = min(null_score, float(s[cls] + e[cls]))
            allowed = [cls] + [i for i, o in enumerate(offsets) if o is not None]
            if len(allowed) == 1:
                continue
            p_start = dict(zip(allowed, softmax(s[allowed])))
            p_end = dict(zip(allowed, softmax(e[allowed])))
            top_starts = sorted(allowed[1:], key=lambda i: -s[i])[:config.n_best]
            top_ends = sorted(allowed[1:], key=lambda i: -e[i])[:config.n_best]
            for i in top_starts:
                for j in top_ends:
                    if j < i or j - i + 1 > config.max_answer_length:
                        continue
                    total = float(s[i] + e[j])
                    if best is None or total > best[0]:
                        best = (total, offsets[i][0], offsets[j][1], float(p_start[i] * p_end[j]))
        if best is None:
            predictions.append(QAPrediction("", 0, 0, 1.0, 1.0))
            continue
        total, start, end, probability = best
        raw = context[start:end]
        start += len(raw) - len(raw.lstrip())
        end -= len(raw) - len(raw.rstrip())
        na_prob = 1.0 / (1.0 + math.exp(-(null_score - total))) if null_score - total > -700 else 0.0
        predictions.append(QAPrediction(context[start:end], start, end, probability, na_prob))
    return predictions
