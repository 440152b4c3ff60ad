"""The one training loop: teacher fine-tuning, every distillation stage and GLUE/SQuAD fine-tuning run through it.

The caller supplies what differs (the batch of a step, the loss, an evaluation callback, what to do with a new
best); the loop owns what is the same: backward, gradient clipping, optimizer and schedule steps, the running
loss, progress logging with an ETA, evaluation every N steps, keep-best, early stopping, atomic checkpoints,
resume, the run-identity check, and data-parallel training (:mod:`polyner.training.distributed`).

The loop state saved in ``checkpoint/state.json``: ``step``, ``best_score``, ``best_step``, ``history`` (one
entry per evaluation), ``elapsed_seconds``, ``bad_evaluations`` (evaluations since the last improvement) and
``fingerprint`` (the run's identity), plus the caller's ``scope`` keys (e.g. the distillation stage).
Checkpoints written before this loop (``best_f1`` / ``stage_best`` / ``patience`` / ``seconds``) resume too.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn
from tqdm.auto import tqdm

from polyner.errors import UserError
from polyner.training.checkpoint import complete_checkpoint, load_checkpoint, save_checkpoint
from polyner.training.distributed import BatchLoss, DistributedContext

logger = logging.getLogger(__name__)

LEGACY_KEYS = {"best_f1": "best_score", "stage_best": "best_score", "patience": "bad_evaluations",
               "seconds": "elapsed_seconds"}  # names the three loops used before they were merged


class ForeignCheckpointError(UserError, ValueError):
    """The checkpoint folder holds another run's checkpoint (another model, data, seed...)."""


@dataclass(frozen=True)
class LoopSettings:
    """The budget and rhythm of one training loop."""

    max_steps: int
    eval_every: int
    save_every: int | None = None  # None: checkpoint at every evaluation
    log_every: int = 50  # a progress line with the pace and ETA every this many steps
    patience: int | None = None  # stop after this many evaluations without improvement; None: never
    clip_norm: float = 1.0
    bf16: bool = False  # bfloat16 autocast for the forward pass
    description: str = "train"  # the progress bar's label
    log_prefix: str = ""  # put before "step N: loss L, ..." in the evaluation log lines
    logger: str = __name__  # the logger of the progress and evaluation lines (the caller's, for logs read as before)

    def __post_init__(self) -> None:
        if self.eval_every < 1 or (self.save_every is not None and self.save_every < 1) or self.log_every < 1:
            raise ValueError(f"eval_every, save_every and log_every must be positive: {self}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be positive or None, not {self.patience}")


@dataclass(frozen=True)
class Progress:
    """Where the loop is when it evaluates."""

    step: int
    loss: float  # the running (smoothed) training loss
    minutes: float  # training time so far, resumed runs included


@dataclass
class Evaluation:
    """What an evaluation callback returns: the score to maximise, the history entry, a log summary."""

    score: float
    entry: dict[str, Any]  # appended to the history as is
    summary: str = ""  # logged after "step N: loss L, "
    payload: Any = None  # anything the keep-best callback needs (not saved)


@dataclass(frozen=True)
class Step:
    """What one training step needs from the caller: this rank's batch of a step, and its loss."""

    batch: Callable[[int], dict[str, torch.Tensor]]  # step -> this rank's slice of the global batch
    loss: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]  # (model, batch) -> mean loss
    terms: Callable[[dict[str, torch.Tensor]], Any]  # the number of loss terms the mean is over (data-parallel)


@dataclass(frozen=True)
class CheckpointPlan:
    """Where the loop checkpoints and which checkpoint it may resume."""

    folder: Path
    fingerprint: Mapping[str, Any] | None = None  # the run's identity: a checkpoint of another is refused
    scope: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"stage": 3}: another scope's is a leftover
    score_key: str | None = None  # the history entries' score: recovers the best score of an older checkpoint
    # the value a setting had before it joined the fingerprint: a checkpoint written without it is compared on it
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def identity(self) -> dict | None:
        """The fingerprint as state.json holds it (tuples as lists...), or None."""
        return None if self.fingerprint is None else _as_saved(self.fingerprint)


def _as_saved(settings: Mapping[str, Any]) -> dict:
    """``settings`` as state.json holds them (tuples as lists, keys as strings)."""
    return json.loads(json.dumps(dict(settings)))


def run_identity(settings: Mapping[str, Any], paths: tuple[str, ...] = ()) -> dict:
    """A run's identity for :attr:`CheckpointPlan.fingerprint`: ``settings`` with the local paths among ``paths`` made
    absolute, so that a run resumed from another directory is still the same run (names and hub ids stay as given)."""
    def absolute(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [absolute(v) for v in value]
        if value and Path(value).expanduser().exists():
            return str(Path(value).expanduser().resolve())
        return value

    identity = dict(settings)
    for key in paths:
        identity[key] = absolute(identity.get(key))
    return identity


def fresh_state(plan: CheckpointPlan | None = None) -> dict:
    """The state of a loop that has not trained yet."""
    state = {"step": 0, "best_score": None, "best_step": None, "history": [], "elapsed_seconds": 0.0,
             "bad_evaluations": 0}
    if plan is not None:
        state.update(plan.scope)
        if plan.fingerprint is not None:
            state["fingerprint"] = plan.identity()
    return state


def _upgrade(state: dict, score_key: str | None = None) -> dict:
    """A loaded loop state with the current key names (a checkpoint from before the loops were merged)."""
    for old, new in LEGACY_KEYS.items():
        if old in state and new not in state:
            state[new] = state.pop(old)
    state = {**fresh_state(), **state}
    if state["best_score"] is None and state["best_step"] is not None and score_key:
        best = [h[score_key] for h in state["history"] if h.get("step") == state["best_step"] and score_key in h]
        state["best_score"] = best[-1] if best else None
    return state


def _differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The settings both identities record and that differ (a key only one side has was added or dropped by
    another polyner version, and does not make another run)."""
    keys = sorted(set(saved) & set(current))
    return [f"{k}: {saved.get(k)!r} in the checkpoint, {current.get(k)!r} now" for k in keys
            if saved.get(k) != current.get(k)]


def read_state(plan: CheckpointPlan) -> dict | None:
    """The loop state saved in ``plan.folder`` if it is this run's, in this scope; None when there is none.

    Raises :class:`ForeignCheckpointError` naming the differences when the checkpoint's fingerprint is another
    run's (call it before writing anything, to refuse early). A checkpoint of this run in another scope (the last
    stage's) is a leftover and is ignored; one written without a fingerprint (before run identities were
    recorded) is taken as this run's.
    """
    folder = complete_checkpoint(plan.folder)
    if folder is None:
        return None
    state = json.loads((folder / "state.json").read_text())
    saved = state.get("fingerprint")
    if saved is not None:
        saved = {**_as_saved(plan.defaults), **saved}
    current = plan.identity()
    differences = _differences(saved, current) if current is not None and saved is not None else []
    if differences:
        raise ForeignCheckpointError(f"{plan.folder} belongs to another run ({'; '.join(differences)}); "
                                     "use a new --out or delete it")
    if any(state.get(k) != v for k, v in plan.scope.items()):
        return None
    if current is not None and saved is None:
        logger.warning("%s records no run identity (written by an older polyner): resuming it unchecked", folder)
    return state


def resume(plan: CheckpointPlan, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler) -> dict | None:
    """Restore this run's checkpoint (weights, optimizer, schedule, RNG) and return its loop state, or None.

    The learning rates are then put on the *current* schedule at the saved step, so a run resumed with another
    ``max_steps`` follows its new schedule from where it stopped.
    """
    if read_state(plan) is None:
        return None
    state = load_checkpoint(plan.folder, model, optimizer, scheduler)
    if state is None:
        return None
    if scheduler is not None:
        for group, base, rule in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
            group["lr"] = base * rule(scheduler.last_epoch)
    state = _upgrade(state, plan.score_key)
    if plan.fingerprint is not None:
        state["fingerprint"] = plan.identity()
    return state


def log_progress(done: int, total: int, first: int, started: float, loss: float, log: logging.Logger = logger) -> None:
    """One log line with the pace and the time left, for runs watched through their log file."""
    pace = (time.time() - started) / max(1, done - first)
    left = pace * (total - done)
    log.info("step %d/%d (%.1f%%): loss %.4f, %.2f s/step, ETA %dh%02dm", done, total, 100 * done / total,
                loss, pace, left // 3600, left % 3600 // 60)


def train_loop(settings: LoopSettings, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, step: Step,
               evaluate: Callable[[Progress], Evaluation], *, on_best: Callable[[Evaluation], None] | None = None,
               checkpoint: CheckpointPlan | None = None, parallel: DistributedContext | None = None,
               on_save: Callable[[dict], None] | None = None) -> dict:
    """Train ``model`` to ``settings.max_steps`` (or an early stop) and return the loop state.

    Resumes ``checkpoint`` when it holds this run's checkpoint (see :func:`read_state`), else starts afresh.
    Every ``eval_every`` steps and at the last, rank 0 calls ``evaluate`` (model in eval mode) and every rank
    takes its score; a better score than any before calls ``on_best`` on rank 0 (write the best weights there).
    Checkpoints go to ``checkpoint.folder`` every ``save_every`` steps and at the last (rank 0, atomic), each
    followed by ``on_save(state)`` on rank 0.
    """
    parallel = parallel or DistributedContext()
    log = logging.getLogger(settings.logger)
    state = ((checkpoint is not None and resume(checkpoint, model, optimizer, scheduler))
             or fresh_state(checkpoint))
    if settings.patience is not None and state["bad_evaluations"] >= settings.patience:
        log.info("%s stopped early at step %d: nothing left to train", settings.description, state["step"])
        return state
    trainer = parallel.wrap(BatchLoss(model, step.loss))
    model.train()
    first = state["step"]
    progress = tqdm(range(first, settings.max_steps), desc=settings.description, initial=first,
                    total=settings.max_steps,
                    disable=None if parallel.is_main else True)  # None: off when not a terminal (the log has the ETA)
    started, elapsed_before = time.time(), state["elapsed_seconds"]
    save_every = settings.save_every or settings.eval_every
    running = 0.0
    for index in progress:
        batch = parallel.to_device(step.batch(index))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=settings.bf16):
            loss = parallel.scale_loss(trainer(batch), step.terms(batch))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        value = parallel.mean(loss.item())  # the global batch's loss
        running = 0.9 * running + 0.1 * value if index > first else value
        progress.set_postfix(loss=f"{running:.4f}")
        done = index + 1
        if done % settings.log_every == 0 and parallel.is_main:
            log_progress(done, settings.max_steps, first, started, running, log)
        last = done == settings.max_steps
        if done % settings.eval_every == 0 or last:
            _evaluate(state, done, running, (elapsed_before + time.time() - started) / 60, model, evaluate, on_best,
                      parallel, settings.log_prefix, log)
        saving = checkpoint is not None and (done % save_every == 0 or last)
        if saving or checkpoint is None:  # with checkpoints, the state's step is the last saved one
            state["step"] = done
            state["elapsed_seconds"] = elapsed_before + time.time() - started
        if saving:
            if parallel.is_main:
                save_checkpoint(checkpoint.folder, model, optimizer, scheduler, state)
                if on_save is not None:
                    on_save(state)
            parallel.barrier()
        if settings.patience is not None and state["bad_evaluations"] >= settings.patience:
            log.info("%s: early stop at step %d (no dev improvement %d times)",
                     settings.log_prefix or settings.description, done, settings.patience)
            break
    progress.close()
    return state


def _evaluate(state: dict, done: int, loss: float, minutes: float, model: nn.Module,
              evaluate: Callable[[Progress], Evaluation], on_best, parallel: DistributedContext,
              log_prefix: str, log: logging.Logger) -> None:
    """One evaluation on rank 0, shared with every rank; history, keep-best and patience updated in ``state``."""
    local = shared = None
    if parallel.is_main:
        model.eval()
        try:
            local = evaluate(Progress(done, loss, minutes))
        finally:
            model.train()
        shared = Evaluation(local.score, local.entry, local.summary)  # the payload stays on rank 0
    shared = parallel.broadcast(shared)  # every rank takes the same decisions
    state["history"].append(shared.entry)
    log.info("%sstep %d: loss %.4f%s", f"{log_prefix} " if log_prefix else "", done, loss,
             f", {shared.summary}" if shared.summary else "")
    if state["best_score"] is None or shared.score > state["best_score"]:
        state["best_score"], state["best_step"], state["bad_evaluations"] = shared.score, done, 0
        if on_best is not None and parallel.is_main:
            on_best(local)
    else:
        state["bad_evaluations"] += 1
