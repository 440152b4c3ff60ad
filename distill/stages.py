"""Progressive knowledge transfer as data: the stage plan, which parameters each stage trains, and the losses.

Stage 1 matches every student hidden state (embeddings and each layer) to the teacher's topmost
hidden states through learned per-layer projections (MSE). Stage 2 matches the teacher's logits
with the encoder frozen; stage 3 goes on with logits while unfreezing one layer per sub-stage,
top first (all groups, or the top ``logits_unfreeze`` of them); stage 4 trains on gold labels with
cross-entropy, unfreezing again (all groups, or the top ``gold_unfreeze``), optionally anchored to the
teacher's logits on transfer text (``gold_logit_weight``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from polyner.distill.config import DistillConfig, StageBudget
from polyner.labels import IGNORE_INDEX
from polyner.models.student_layers import group_parameters


@dataclass(frozen=True)
class Stage:
    """One resumable training step of the schedule."""

    name: str
    loss: str  # "representation" | "logits" | "gold"
    trainable: tuple[str, ...]  # parameter groups: "embeddings", "layer{i}", "classifier", "projections"
    budget: StageBudget


def parameter_groups(num_layers: int) -> list[str]:
    """Encoder groups from the top down: the order in which they are unfrozen."""
    return [f"layer{i}" for i in reversed(range(num_layers))] + ["embeddings"]


def _unfrozen(limit: int | None, groups: list[str]) -> int:
    """How many groups a run of unfreezing sub-stages reaches (None: all of them)."""
    return len(groups) if limit is None else min(limit, len(groups))


def plan_stages(config: DistillConfig) -> list[Stage]:
    """The full schedule for a config (stage 1 is left out for the no-stage-1 ablation)."""
    groups = parameter_groups(config.student.layers)
    stages: list[Stage] = []
    if config.use_representation_stage:
        stages.append(Stage("1-representation", "representation", tuple(groups) + ("projections",),
                            config.representation))
    stages.append(Stage("2-logits", "logits", ("classifier",), config.logits))
    for j in range(1, _unfrozen(config.logits_unfreeze, groups) + 1):
        stages.append(Stage(f"3-logits-unfreeze-{j}", "logits", ("classifier",) + tuple(groups[:j]), config.logits))
    stages.append(Stage("4-gold", "gold", ("classifier",), config.gold_labels))
    for j in range(1, _unfrozen(config.gold_unfreeze, groups) + 1):
        stages.append(Stage(f"4-gold-unfreeze-{j}", "gold", ("classifier",) + tuple(groups[:j]), config.gold_labels))
    return stages


class DistillationModel(nn.Module):
    """The student plus the stage-1 projections from student width to teacher width, one per hidden state."""

    def __init__(self, student: nn.Module, teacher_width: int) -> None:
        super().__init__()
        self.student = student
        geometry = student.config.geometry
        self.projections = nn.ModuleList(nn.Linear(geometry.hidden, teacher_width) for _ in range(geometry.layers + 1))

    def groups(self) -> dict[str, str]:
        """The group of every parameter, by name: the student's groups as its module tree gives them
        (:func:`~polyner.models.student_layers.group_parameters`), and "projections"."""
        owner = {id(p): group for group, params in group_parameters(self.student).items() for p in params}
        owner.update((id(p), "projections") for p in self.projections.parameters())
        unowned = [name for name, param in self.named_parameters() if id(param) not in owner]
        if unowned:
            raise ValueError(f"parameters {unowned} belong to no group")
        return {name: owner[id(param)] for name, param in self.named_parameters()}

    def set_trainable(self, groups: tuple[str, ...]) -> list[nn.Parameter]:
        """Freeze everything but ``groups``; return the trainable parameters."""
        group_of = self.groups()
        unknown = sorted(set(groups) - set(group_of.values()))
        if unknown:  # a misspelt group would otherwise freeze the whole student silently
            raise ValueError(f"unknown parameter groups {unknown}: the model has {sorted(set(group_of.values()))}")
        trainable = []
        for name, param in self.named_parameters():
            param.requires_grad_(group_of[name] in groups)
            if param.requires_grad:
                trainable.append(param)
        return trainable


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the positions where ``mask`` is 1."""
    weights = mask.to(prediction.dtype).unsqueeze(-1)
    return ((prediction - target) ** 2 * weights).sum() / (weights.sum() * prediction.shape[-1]).clamp(min=1.0)


def representation_loss(model: DistillationModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Stage 1: mean over hidden states of MSE(projection_i(student_i), teacher top state i)."""
    out = model.student.student(batch["input_ids"], batch["attention_mask"])
    teacher = batch["teacher_hidden"]  # [B, L, states, width], bottom to top
    losses = [masked_mse(projection(state), teacher[:, :, i], batch["attention_mask"])
              for i, (projection, state) in enumerate(zip(model.projections, out.hidden_states))]
    return torch.stack(losses).mean()


def logit_loss(model: DistillationModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Stages 2-3: MSE between student and teacher token logits."""
    logits = model.student(batch["input_ids"], batch["attention_mask"]).logits
    return masked_mse(logits, batch["teacher_logits"], batch["attention_mask"])


def gold_loss(model: DistillationModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Stage 4: cross-entropy on gold labels (first subword of each word)."""
    return model.student(batch["input_ids"], batch["attention_mask"], labels=batch["labels"]).loss


LOSSES = {"representation": representation_loss, "logits": logit_loss, "gold": gold_loss}
ANCHOR = "anchor_"  # the keys of an anchored gold batch that hold its transfer batch
Loss = Callable[[DistillationModel, dict[str, torch.Tensor]], torch.Tensor]
Scale = Callable[[torch.Tensor, Any], torch.Tensor]  # (a slice's mean loss, its number of terms) -> data-parallel share


def _unscaled(loss: torch.Tensor, terms: Any) -> torch.Tensor:
    return loss


def _labelled_tokens(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The terms of the gold cross-entropy: the batch's labelled tokens."""
    return (batch["labels"] != IGNORE_INDEX).sum()


def anchored_gold_loss(weight: float, scale: Scale = _unscaled) -> Loss:
    """Stage 4 with an anchor: cross-entropy on the gold batch plus ``weight`` times the logit loss on the transfer
    batch whose keys carry the :data:`ANCHOR` prefix. Each part is a mean over its own terms (labelled tokens,
    transfer positions), so ``scale`` (``DistributedContext.scale_loss``) weighs each by its own count across
    data-parallel ranks; the training loop's scale then gets one term (see :func:`loss_terms`)."""
    def loss(model: DistillationModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        anchor = {key[len(ANCHOR):]: value for key, value in batch.items() if key.startswith(ANCHOR)}
        return (scale(gold_loss(model, batch), _labelled_tokens(batch))
                + weight * scale(logit_loss(model, anchor), anchor["attention_mask"].sum()))
    return loss


def anchored(stage: Stage, config: DistillConfig) -> bool:
    """Whether ``stage`` trains on the anchored gold loss (a gold stage, ``config.gold_logit_weight`` set)."""
    return stage.loss == "gold" and config.gold_logit_weight > 0


def stage_loss(stage: Stage, config: DistillConfig, scale: Scale = _unscaled) -> Loss:
    """The loss a stage trains on: its kind's, anchored for gold stages when ``config.gold_logit_weight`` is set."""
    return anchored_gold_loss(config.gold_logit_weight, scale) if anchored(stage, config) else LOSSES[stage.loss]


def loss_terms(stage: Stage, config: DistillConfig, batch: dict[str, torch.Tensor]) -> torch.Tensor | int:
    """The number of terms the stage's loss is a mean over (labelled tokens, unmasked positions), for the training
    loop's data-parallel scale; 1 for the anchored loss, which scales its parts itself."""
    if anchored(stage, config):
        return 1
    return _labelled_tokens(batch) if stage.loss == "gold" else batch["attention_mask"].sum()
