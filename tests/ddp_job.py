"""Run by ``torchrun`` from tests/test_distributed.py: the training jobs listed in a JSON file, in order.

Each job is ``{"kind": "teacher" | "distill" | "finetune", "config": {...}}`` (a TeacherTrainingConfig, a
DistillConfig or a GLUE FinetuneConfig).
Students are built without dropout, so that runs with different numbers of processes can be compared
weight for weight (dropout masks are random per process).
"""
from __future__ import annotations

import json
import sys
from typing import Callable

import torch


def without_dropout(student_config: Callable) -> Callable:
    """Wrap ``polyner.distill.student_init.student_config`` to build students with dropout 0."""

    def build(*args, **kwargs):
        config = student_config(*args, **kwargs)
        config.hidden_dropout_prob = 0.0
        config.attention_probs_dropout_prob = 0.0
        return config

    return build


def main(path: str) -> None:
    import polyner.distill.trainer as trainer
    from polyner.distill.config import DistillConfig
    from polyner.tasks.finetune import FinetuneConfig, finetune_glue
    from polyner.training.teacher import TeacherTrainingConfig, train_teacher

    torch.set_num_threads(1)
    trainer.student_config = without_dropout(trainer.student_config)
    for job in json.loads(open(path, encoding="utf-8").read()):
        if job["kind"] == "teacher":
            train_teacher(TeacherTrainingConfig(**job["config"]))
        elif job["kind"] == "finetune":
            finetune_glue(FinetuneConfig(**job["config"]))
        else:
            trainer.distill(DistillConfig(**job["config"]))


if __name__ == "__main__":
    main(sys.argv[1])
