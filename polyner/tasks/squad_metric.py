"""The SQuAD 2.0 metric as the official ``evaluate-v2.0.py`` defines it.

Answers are normalized (lower case, ASCII punctuation removed, the articles a/an/the removed, whitespace
collapsed); EM and token F1 take the maximum over a question's gold answers; a question whose gold answers
all normalize to nothing is unanswerable and its only gold answer is "" (no answer). With no-answer
probabilities, a prediction counts as "no answer" when its probability is above the threshold, and
``best_exact`` / ``best_f1`` give the best score over all thresholds with the thresholds reaching them.
"""
from __future__ import annotations

import collections
import re
import string
from typing import Mapping, Sequence

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation, drop the articles a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def answer_tokens(text: str) -> list[str]:
    """The normalized answer split on whitespace ([] for no answer)."""
    return normalize_answer(text).split() if text else []


def exact_match(gold: str, prediction: str) -> int:
    """1 if the normalized strings are equal, else 0."""
    return int(normalize_answer(gold) == normalize_answer(prediction))


def token_f1(gold: str, prediction: str) -> float:
    """Token-overlap F1; when either side is empty (no answer) it is 1 if both are empty, else 0."""
    gold_tokens, predicted_tokens = answer_tokens(gold), answer_tokens(prediction)
    if not gold_tokens or not predicted_tokens:
        return float(gold_tokens == predicted_tokens)
    overlap = sum((collections.Counter(gold_tokens) & collections.Counter(predicted_tokens)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(predicted_tokens), overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def gold_answers(answers: Sequence[str]) -> list[str]:
    """The gold answers that normalize to something; [""] for an unanswerable question."""
    kept = [a for a in answers if normalize_answer(a)]
    return kept or [""]


def _summary(exact: Mapping[str, float], f1: Mapping[str, float], ids: Sequence[str]) -> dict[str, float]:
    total = len(ids)
    return {"exact": 100.0 * sum(exact[i] for i in ids) / total if total else 0.0,
            "f1": 100.0 * sum(f1[i] for i in ids) / total if total else 0.0, "total": total}


def best_threshold(predictions: Mapping[str, str], scores: Mapping[str, float], na_probs: Mapping[str, float],
                   has_answer: Mapping[str, bool]) -> tuple[float, float]:
    """The best score (percent) over no-answer thresholds and the threshold reaching it.

    Start from "no answer everywhere"; answer questions in order of rising no-answer probability: an
    answerable one adds its score, an unanswerable one with a non-empty prediction costs 1.
    """
    current = best = sum(1 for ok in has_answer.values() if not ok)
    threshold = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        if has_answer[qid]:
            current += scores[qid]
        elif predictions[qid]:
            current -= 1
        if current > best:
            best, threshold = current, na_probs[qid]
    return 100.0 * best / len(scores), threshold


def squad_v2_evaluate(gold: Mapping[str, Sequence[str]], predictions: Mapping[str, str],
                      na_probs: Mapping[str, float] | None = None, threshold: float = 1.0) -> dict[str, float]:
    """Score ``predictions`` (id -> answer text, "" for no answer) against ``gold`` (id -> answer texts).

    Returns exact, f1 and total over the scored questions, the same for HasAns_* / NoAns_* when present,
    ``missing`` (questions without a prediction, left out as the official script does), and with
    ``na_probs`` also best_exact, best_exact_thresh, best_f1 and best_f1_thresh.
    """
    has_answer = {qid: bool(gold_answers(answers)[0]) for qid, answers in gold.items()}
    exact_raw: dict[str, float] = {}
    f1_raw: dict[str, float] = {}
    for qid, answers in gold.items():
        if qid not in predictions:
            continue
        golds = gold_answers(answers)
        exact_raw[qid] = max(exact_match(g, predictions[qid]) for g in golds)
        f1_raw[qid] = max(token_f1(g, predictions[qid]) for g in golds)
    if not exact_raw:
        raise ValueError("no prediction matches a gold question id")
    exact, f1 = dict(exact_raw), dict(f1_raw)
    if na_probs is not None:
        lacking = [qid for qid in exact if qid not in na_probs]
        if lacking:
            raise ValueError(f"{len(lacking)} predicted questions have no no-answer probability, e.g. {lacking[0]!r}")
        for qid in exact:
            if na_probs[qid] > threshold:
                exact[qid] = f1[qid] = float(not has_answer[qid])
    scored = list(exact)
    result = _summary(exact, f1, scored)
    for prefix, wanted in (("HasAns", True), ("NoAns", False)):
        ids = [qid for qid in scored if has_answer[qid] == wanted]
        if ids:
            result.update({f"{prefix}_{k}": v for k, v in _summary(exact, f1, ids).items()})
    result["missing"] = len(gold) - len(scored)
    if na_probs is not None:
        result["best_exact"], result["best_exact_thresh"] = best_threshold(predictions, exact_raw, na_probs, has_answer)
        result["best_f1"], result["best_f1_thresh"] = best_threshold(predictions, f1_raw, na_probs, has_answer)
    return result
