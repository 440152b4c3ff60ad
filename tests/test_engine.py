"""The one training loop's seams: exact resume, run identity, early stopping, keep-best, checkpoints of older code."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from polyner.training.engine import (CheckpointPlan, Evaluation, ForeignCheckpointError, LoopSettings, Progress,
                                     Step, resume, train_loop)
from polyner.training.loop import linear_schedule

FINGERPRINT = {"data": "toy", "seed": 0}


class _Interrupted(Exception):
    pass


class Toy:
    """A tiny classifier (with dropout, so resuming must restore the RNG) on seeded synthetic batches."""

    def __init__(self, steps: int = 8, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-2)
        self.scheduler = linear_schedule(self.optimizer, steps, 2)
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}
        self.best_calls: list[int] = []

    @staticmethod
    def batch(step: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(step)
        x = torch.randn(5, 6, generator=generator)
        return {"x": x, "y": (x[:, 0] > 0).long() + (x[:, 1] > 0).long()}

    @staticmethod
    def loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return nn.functional.cross_entropy(model(batch["x"]), batch["y"])

    def step(self, fail_at: int | None = None) -> Step:
        def batch(step: int) -> dict[str, torch.Tensor]:
            if step == fail_at:
                raise _Interrupted
            return self.batch(step)

        return Step(batch, self.loss, lambda b: len(b["y"]))

    def scripted(self, scores: dict[int, float]):
        """An evaluation callback returning ``scores[step]`` and remembering the weights it saw."""
        def evaluate(progress: Progress) -> Evaluation:
            assert not self.model.training  # evaluated in eval mode
            self.snapshots[progress.step] = {k: v.clone() for k, v in self.model.state_dict().items()}
            score = scores[progress.step]
            return Evaluation(score, {"step": progress.step, "loss": progress.loss, "score": score})
        return evaluate

    def keep_best(self, evaluation: Evaluation) -> None:
        self.best_calls.append(evaluation.entry["step"])


def _run(toy: Toy, settings: LoopSettings, folder: Path | None, scores: dict[int, float], fail_at: int | None = None,
         fingerprint: dict | None = None) -> dict:
    plan = CheckpointPlan(folder, fingerprint or FINGERPRINT) if folder is not None else None
    return train_loop(settings, toy.model, toy.optimizer, toy.scheduler, toy.step(fail_at), toy.scripted(scores),
                      on_best=toy.keep_best, checkpoint=plan)


SCORES = {2: 1.0, 4: 3.0, 6: 2.0, 8: 2.5}


def test_resume_after_interruption_gives_the_uninterrupted_result(tmp_path):
    settings = LoopSettings(max_steps=8, eval_every=2, save_every=2)
    straight = Toy()
    whole = _run(straight, settings, tmp_path / "straight", SCORES)

    interrupted = Toy()
    with pytest.raises(_Interrupted):
        _run(interrupted, settings, tmp_path / "resumed", SCORES, fail_at=5)  # dies in step 6, after the step-4 save
    assert json.loads((tmp_path / "resumed" / "state.json").read_text())["step"] == 4
    again = Toy(seed=1)  # a fresh process: other initial weights, optimizer and schedule
    resumed = _run(again, settings, tmp_path / "resumed", SCORES)

    assert resumed["step"] == whole["step"] == 8
    for key, value in straight.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[key], value), key
    assert [h["step"] for h in resumed["history"]] == [2, 4, 6, 8]
    assert [h["score"] for h in resumed["history"]] == [h["score"] for h in whole["history"]]
    assert (resumed["best_step"], resumed["best_score"]) == (whole["best_step"], whole["best_score"]) == (4, 3.0)
    assert again.best_calls == []  # the best (step 4) came before the interruption; nothing better after it
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob("*.old"))


def test_keep_best_is_called_with_the_best_weights(tmp_path):
    toy = Toy()
    saved: dict[int, dict[str, torch.Tensor]] = {}

    def keep_best(evaluation: Evaluation) -> None:
        saved[evaluation.entry["step"]] = {k: v.clone() for k, v in toy.model.state_dict().items()}

    state = train_loop(LoopSettings(max_steps=8, eval_every=2), toy.model, toy.optimizer, toy.scheduler, toy.step(),
                       toy.scripted(SCORES), on_best=keep_best)
    assert sorted(saved) == [2, 4]  # each new best, and only those
    assert state["best_step"] == 4 and state["best_score"] == 3.0
    for key, value in saved[4].items():
        assert torch.equal(value, toy.snapshots[4][key])
    assert not torch.equal(saved[4]["3.weight"], toy.model.state_dict()["3.weight"])  # training went on after it


def test_early_stopping_and_a_stopped_run_trains_no_more(tmp_path):
    seen: list[int] = []
    toy = Toy(steps=20)
    step = toy.step()
    counting = Step(lambda i: seen.append(i) or step.batch(i), step.loss, step.terms)
    scores = {2: 1.0, 4: 3.0, 6: 2.0, 8: 2.9, 10: 5.0, 12: 1.0, 14: 1.0, 16: 1.0}
    settings = LoopSettings(max_steps=20, eval_every=2, patience=2)
    plan = CheckpointPlan(tmp_path / "checkpoint", FINGERPRINT)
    state = train_loop(settings, toy.model, toy.optimizer, toy.scheduler, counting, toy.scripted(scores),
                       checkpoint=plan)
    assert seen == list(range(8))  # stopped after two evaluations without improvement (steps 6 and 8)
    assert [h["step"] for h in state["history"]] == [2, 4, 6, 8]
    assert (state["step"], state["best_step"], state["bad_evaluations"]) == (8, 4, 2)

    seen.clear()
    again = Toy(steps=20)
    state = train_loop(settings, again.model, again.optimizer, again.scheduler, counting, again.scripted(scores),
                       checkpoint=plan)
    assert seen == [] and state["step"] == 8  # resuming a stopped run does not train past its stop
    with_more_patience = LoopSettings(max_steps=20, eval_every=2, patience=3)
    state = train_loop(with_more_patience, again.model, again.optimizer, again.scheduler, counting,
                       again.scripted(scores), checkpoint=plan)
    assert seen == list(range(8, 16))  # more patience: on from its checkpoint, to the next three bad evaluations
    assert (state["step"], state["best_step"], state["bad_evaluations"]) == (16, 10, 3)


def test_a_checkpoint_of_another_run_is_refused_naming_the_difference(tmp_path):
    folder = tmp_path / "checkpoint"
    _run(Toy(), LoopSettings(max_steps=4, eval_every=2), folder, SCORES)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    other = Toy()
    with pytest.raises(ForeignCheckpointError, match="another run") as error:
        _run(other, LoopSettings(max_steps=4, eval_every=2), folder, SCORES, fingerprint={"data": "toy", "seed": 1})
    assert "seed: 0 in the checkpoint, 1 now" in str(error.value) and "data" not in str(error.value)
    assert isinstance(error.value, ValueError)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing lost
    with pytest.raises(ForeignCheckpointError):  # in whatever scope: it is not a leftover of this run
        resume(CheckpointPlan(folder, {"data": "toy", "seed": 1}, scope={"stage": 2}), other.model, other.optimizer,
               other.scheduler)


def test_a_setting_only_one_identity_records_does_not_make_another_run(tmp_path):
    """A checkpoint written before a setting joined the identity (or after one left it) still resumes."""
    folder = tmp_path / "checkpoint"
    with pytest.raises(_Interrupted):
        _run(Toy(), LoopSettings(max_steps=4, eval_every=2, save_every=2), folder, SCORES, fail_at=2,
             fingerprint={"seed": 0})
    resumed = Toy()
    _run(resumed, LoopSettings(max_steps=4, eval_every=2, save_every=2), folder, SCORES,
         fingerprint={"seed": 0, "gold": "/data/gold"})
    assert sorted(resumed.snapshots) == [4]  # on from step 2, not from the start


def test_a_run_resumed_from_another_directory_is_the_same_run(tmp_path, monkeypatch):
    """The identity holds local paths absolute (names and hub ids as given): the same run from another working
    directory resumes, and the same relative path meaning another folder is another run."""
    from polyner.training.engine import run_identity

    for name in ("a/data", "b/data"):
        (tmp_path / name).mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a")
    here = run_identity({"data": "data", "teacher": "owner/hub-model", "seed": 0}, paths=("data", "teacher"))
    assert here == {"data": str(tmp_path / "a" / "data"), "teacher": "owner/hub-model", "seed": 0}
    monkeypatch.chdir(tmp_path)
    assert run_identity({"data": "a/data", "teacher": "owner/hub-model", "seed": 0}, paths=("data", "teacher")) == here
    assert run_identity({"data": "b/data", "teacher": "owner/hub-model", "seed": 0}, paths=("data", "teacher")) != here
    assert run_identity({"data": ["a/data", "b/data", "owner/x"]}, paths=("data",)) == {  # lists path by path
        "data": [str(tmp_path / "a" / "data"), str(tmp_path / "b" / "data"), "owner/x"]}
    folder = tmp_path / "checkpoint"
    _run(Toy(), LoopSettings(max_steps=2, eval_every=2), folder, SCORES, fingerprint=here)
    with pytest.raises(ForeignCheckpointError, match="b/data"):
        _run(Toy(), LoopSettings(max_steps=4, eval_every=2), folder, SCORES,
             fingerprint=run_identity({"data": "b/data", "teacher": "owner/hub-model", "seed": 0}, paths=("data",)))


def test_a_checkpoint_of_another_scope_is_a_leftover(tmp_path):
    """A distillation stage does not resume the previous stage's checkpoint: it starts afresh."""
    folder = tmp_path / "checkpoint"
    first = Toy()
    train_loop(LoopSettings(max_steps=4, eval_every=2), first.model, first.optimizer, first.scheduler, first.step(),
               first.scripted(SCORES), checkpoint=CheckpointPlan(folder, FINGERPRINT, scope={"stage": 0}))
    second = Toy()
    assert resume(CheckpointPlan(folder, FINGERPRINT, scope={"stage": 1}), second.model, second.optimizer,
                  second.scheduler) is None
    state = train_loop(LoopSettings(max_steps=4, eval_every=2), second.model, second.optimizer, second.scheduler,
                       second.step(), second.scripted(SCORES),
                       checkpoint=CheckpointPlan(folder, FINGERPRINT, scope={"stage": 1}))
    assert [h["step"] for h in state["history"]] == [2, 4] and state["stage"] == 1
    assert json.loads((folder / "state.json").read_text())["stage"] == 1


@pytest.mark.parametrize("legacy", ["teacher", "distill", "finetune"])
def test_checkpoints_written_before_the_merged_loop_resume(legacy, tmp_path):
    """The state.json key names of the three loops this one replaced (weights/optimizer/rng files are unchanged)."""
    settings = LoopSettings(max_steps=8, eval_every=2, save_every=2)
    straight = Toy()
    whole = _run(straight, settings, tmp_path / "straight", SCORES)
    toy = Toy()
    with pytest.raises(_Interrupted):
        _run(toy, settings, tmp_path / "old", SCORES, fail_at=5)
    path = tmp_path / "old" / "state.json"
    state = json.loads(path.read_text())
    common = {"step": state["step"], "history": state["history"]}
    if legacy == "teacher":  # training/teacher.py: best_f1, best_step, elapsed_seconds, no identity
        old = {**common, "best_f1": state["best_score"], "elapsed_seconds": 1.5, "best_step": state["best_step"]}
    elif legacy == "distill":  # distill/trainer.py: stage, step, stage_best, patience (no history)
        old = {"stage": 0, "step": state["step"], "stage_best": state["best_score"], "patience": 0}
    else:  # tasks/finetune.py: best (metrics), best_step, history, seconds, fingerprint
        old = {**common, "best": {"score": 3.0}, "best_step": 4, "seconds": 1.5, "fingerprint": FINGERPRINT}
        assert [h["score"] for h in state["history"] if h["step"] == 4] == [3.0]  # the best score is recovered from it
    path.write_text(json.dumps(old))
    again = Toy(seed=1)
    scope = {"stage": 0} if legacy == "distill" else {}
    state = train_loop(settings, again.model, again.optimizer, again.scheduler, again.step(), again.scripted(SCORES),
                       checkpoint=CheckpointPlan(tmp_path / "old", FINGERPRINT, scope=scope, score_key="score"))
    for key, value in straight.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[key], value), key
    assert state["best_score"] == whole["best_score"] == 3.0 and state["fingerprint"] == FINGERPRINT
    assert [h["step"] for h in state["history"]] == ([6, 8] if legacy == "distill" else [2, 4, 6, 8])
    assert again.best_calls == []  # scores after the resume (2.0, 2.5) do not beat the best before it (3.0)
    saved = json.loads(path.read_text())
    assert saved["step"] == 8 and "best_f1" not in saved and "stage_best" not in saved
    assert load_file(str(tmp_path / "old" / "weights.safetensors")).keys() == straight.model.state_dict().keys()


def test_settings_are_checked():
    with pytest.raises(ValueError, match="positive"):
        LoopSettings(max_steps=4, eval_every=0)
    with pytest.raises(ValueError, match="patience"):
        LoopSettings(max_steps=4, eval_every=2, patience=0)
    with pytest.raises(AttributeError):
        LoopSettings(max_steps=4, eval_every=2).max_steps = 5  # frozen
