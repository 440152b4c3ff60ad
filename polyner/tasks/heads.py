"""Sequence-classification / regression and extractive-QA heads for the polyner student, and one loader
that puts the right head on any encoder directory (a polyner student or a Hugging Face model).

The student classes register with ``AutoModelForSequenceClassification`` and
``AutoModelForQuestionAnswering`` for model_type ``polyner_student``, so a fine-tuned directory loads
with the matching Auto class once ``polyner.tasks.heads`` is imported. Their encoder sits under the
same ``student.`` prefix as in the NER model (the encoder of :mod:`polyner.models.student_layers`), so a distilled NER student (or the shipped default)
initialises the encoder and only the new head starts from random weights.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification
from transformers.modeling_outputs import QuestionAnsweringModelOutput, SequenceClassifierOutput

from polyner.models.student import PolynerStudentConfig, PolynerStudentPreTrainedModel
from polyner.models.student_layers import StudentEncoder

logger = logging.getLogger(__name__)
HEAD_KINDS = ("classify", "qa")


POOLINGS = ("first", "mean")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, how: str) -> torch.Tensor:
    """One vector per sequence: the first token's state, or the mean over the real (unpadded) tokens."""
    if how == "first":
        return hidden[:, 0]
    if how != "mean":
        raise ValueError(f"unknown pooling {how!r}: expected one of {POOLINGS}")
    if attention_mask is None:
        return hidden.mean(dim=1)
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class PolynerStudentForSequenceClassification(PolynerStudentPreTrainedModel):
    """The student with a sentence(-pair) head: pooled states, dense + tanh, dropout, linear.

    ``config.classifier_pooling`` is "first" (the first token, BERT-style; the default of configs without
    the field) or "mean" (mean over real tokens, as the e5 encoders the students come from were trained;
    what ``polyner finetune`` gives a new head).

    ``num_labels == 1`` (or ``problem_type == "regression"``) is regression with a mean-squared-error loss
    (STS-B); integer labels are single-label classification with cross-entropy; float label vectors with
    ``problem_type == "multi_label_classification"`` use a binary cross-entropy.
    """

    def __init__(self, config: PolynerStudentConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.student = StudentEncoder(config.geometry)
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.score = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.student.embeddings.word

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_hidden_states: bool = False,
                return_dict: bool = True, **_) -> SequenceClassifierOutput:
        encoded = self.student(input_ids, attention_mask)
        states = encoded.hidden_states if output_hidden_states else None
        sentence = pool(encoded.last_hidden_state, attention_mask, getattr(self.config, "classifier_pooling", "first"))
        pooled = torch.tanh(self.pooler(self.dropout(sentence)))
        logits = self.score(self.dropout(pooled))
        loss = None if labels is None else self._loss(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=states)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        kind = self.config.problem_type
        if kind is None:
            if self.num_labels == 1:
                kind = "regression"
            elif labels.dtype in (torch.long, torch.int):
                kind = "single_label_classification"
            else:
                kind = "multi_label_classification"
        if kind == "regression":
            return nn.functional.mse_loss(logits.squeeze(-1), labels.float().view(-1))
        if kind == "single_label_classification":
            return nn.functional.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return nn.functional.binary_cross_entropy_with_logits(logits, labels.float())


class PolynerStudentForQuestionAnswering(PolynerStudentPreTrainedModel):
    """The student with a span head: a start and an end logit per token (SQuAD-style extractive QA)."""

    def __init__(self, config: PolynerStudentConfig) -> None:
        super().__init__(config)
        self.student = StudentEncoder(config.geometry)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.student.embeddings.word

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                start_positions: torch.Tensor | None = None, end_positions: torch.Tensor | None = None,
                output_hidden_states: bool = False, return_dict: bool = True, **_) -> QuestionAnsweringModelOutput:
        encoded = self.student(input_ids, attention_mask)
        states = encoded.hidden_states if output_hidden_states else None
        start_logits, end_logits = self.qa_outputs(encoded.last_hidden_state).unbind(dim=-1)
        loss = None
        if start_positions is not None and end_positions is not None:
            width = start_logits.shape[1]  # positions outside the window are ignored, as in BERT
            starts = start_positions.view(-1).clamp(0, width)
            ends = end_positions.view(-1).clamp(0, width)
            loss = (nn.functional.cross_entropy(start_logits, starts, ignore_index=width)
                    + nn.functional.cross_entropy(end_logits, ends, ignore_index=width)) / 2
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits.contiguous(),
                                            end_logits=end_logits.contiguous(), hidden_states=states)


AutoModelForSequenceClassification.register(PolynerStudentConfig, PolynerStudentForSequenceClassification,
                                            exist_ok=True)
AutoModelForQuestionAnswering.register(PolynerStudentConfig, PolynerStudentForQuestionAnswering, exist_ok=True)


def label_kwargs(labels: tuple[str, ...] | list[str]) -> dict:
    """Config options for a classification head over ``labels``; an empty tuple means regression."""
    if not labels:
        return {"num_labels": 1, "id2label": {0: "score"}, "label2id": {"score": 0}, "problem_type": "regression"}
    return {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
            "label2id": {label: i for i, label in enumerate(labels)}, "problem_type": "single_label_classification"}


def load_encoder_with_head(path: str | Path, kind: str, labels: tuple[str, ...] | list[str] = (),
                           dtype: torch.dtype = torch.float32, pooling: str = "mean"):
    """Any encoder directory (or hub name) with a fresh or kept ``kind`` head: "classify" or "qa".

    A NER student or teacher keeps its encoder weights; the head is created for ``labels`` (classify)
    or as a start/end span head (qa). Heads of another size (e.g. the 7 NER labels) are re-initialised.
    A new classification head on a polyner student pools with ``pooling``; a student that already has a
    sequence-classification head keeps the pooling it was trained with.
    """
    from transformers import AutoConfig

    from polyner.models.io import quiet_transformers

    if kind not in HEAD_KINDS:
        raise ValueError(f"unknown head {kind!r}: expected one of {HEAD_KINDS}")
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}: expected one of {POOLINGS}")
    quiet_transformers()
    if kind == "classify":
        config = AutoConfig.from_pretrained(str(path), **label_kwargs(labels))
        trained = any("SequenceClassification" in name for name in (getattr(config, "architectures", None) or []))
        if config.model_type == PolynerStudentConfig.model_type and not trained:
            config.classifier_pooling = pooling
        return AutoModelForSequenceClassification.from_pretrained(
            str(path), config=config, dtype=dtype, use_safetensors=True, ignore_mismatched_sizes=True)
    return AutoModelForQuestionAnswering.from_pretrained(
        str(path), dtype=dtype, use_safetensors=True, ignore_mismatched_sizes=True,
        num_labels=2, id2label={0: "start", 1: "end"}, label2id={"start": 0, "end": 1},
        problem_type=None)
