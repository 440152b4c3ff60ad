"""Fine-tune the multilingual teacher for NER on gold (and optionally silver) data, sources mixed per batch.

The checkpoint is chosen on gold dev (macro word-level F1 over languages), never on test or silver. The
loop checkpoints every ``save_every`` steps, logs progress with an ETA every ``log_every`` steps, and
resumes from the last checkpoint after an interruption.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from polyner.data.iob2 import read_gold
from polyner.data.training_sets import encode_training_files, group_weights, selection_files, training_files
from polyner.evaluate import evaluate_by_language, macro
from polyner.labels import IGNORE_INDEX
from polyner.models.io import ner_config_kwargs, quiet_transformers
from polyner.training.checkpoint import load_checkpoint, save_checkpoint
from polyner.training.distributed import BatchLoss, init_distributed
from polyner.training.loop import collate, linear_schedule, seed_everything
from polyner.training.sampling import MixedLanguageSampler

logger = logging.getLogger(__name__)


@dataclass
class TeacherTrainingConfig:
    """Settings of ``polyner train-teacher``."""

    teacher: str  # built encoder directory (polyner teacher build) or a hub name
    gold: str  # gold root: source/lang/split.iob2
    out: str
    silver: str | None = None  # silver root, same layout (trains only, never selects)
    silver_weight: float = 0.5  # sampling pull of a silver file relative to a gold file of the same size
    langs: list[str] | None = None
    exclude_sources: list[str] = field(default_factory=list)
    max_length: int = 64
    batch_size: int = 16
    max_steps: int = 2000
    lr: float = 1e-4
    head_lr: float = 1e-3
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    freeze_word_embeddings: bool = True
    eval_every: int = 400
    save_every: int = 100
    dev_per_lang: int = 100
    sampling_alpha: float = 0.5
    bucket: int = 1  # draw this many batches together and cut them by length (less padding)
    bf16: bool = False  # bfloat16 autocast for the forward pass (fast on CPUs with AMX / AVX-512 BF16)
    log_every: int = 50
    seed: int = 13
    threads: int = 2


def _model(config: TeacherTrainingConfig):
    from transformers import AutoModelForTokenClassification

    quiet_transformers()
    model = AutoModelForTokenClassification.from_pretrained(config.teacher, dtype=torch.float32,
                                                            **ner_config_kwargs())
    if config.freeze_word_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    return model


def _optimizer(model: torch.nn.Module, config: TeacherTrainingConfig):
    head, body = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (head if name.startswith("classifier") else body).append(param)
    optimizer = torch.optim.AdamW([{"params": body, "lr": config.lr}, {"params": head, "lr": config.head_lr}],
                                  weight_decay=config.weight_decay)
    return optimizer, linear_schedule(optimizer, config.max_steps, int(config.warmup_ratio * config.max_steps))


def _log_progress(done: int, total: int, first: int, started: float, loss: float) -> None:
    """One log line with the pace and the time left, for runs watched through their log file."""
    pace = (time.time() - started) / max(1, done - first)
    left = pace * (total - done)
    logger.info("step %d/%d (%.1f%%): loss %.4f, %.2f s/step, ETA %dh%02dm", done, total, 100 * done / total,
                loss, pace, left // 3600, left % 3600 // 60)


def resume(folder: Path, model: torch.nn.Module, optimizer, scheduler) -> dict | None:
    """Load the last checkpoint, then put the learning rates on the *current* schedule, so a run resumed
    with another ``max_steps`` follows the new schedule from the step it stopped at."""
    state = load_checkpoint(folder, model, optimizer, scheduler)
    if state is not None:
        for group, base, rule in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
            group["lr"] = base * rule(scheduler.last_epoch)
    return state


def train_teacher(config: TeacherTrainingConfig) -> Path:
    """Fine-tune, select on dev, and save the best teacher in HF layout to ``config.out``.

    Started by ``torchrun``, the processes share each global batch of ``config.batch_size`` sentences
    (see :mod:`polyner.training.distributed`); rank 0 evaluates and writes the files.
    """
    from polyner.tagging.tagger import Tagger
    from polyner.models.io import load_tokenizer

    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    parallel = init_distributed()
    out = Path(config.out)
    if parallel.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "training_config.json").write_text(json.dumps(asdict(config), indent=2))
    tokenizer = load_tokenizer(config.teacher)
    train_files = training_files(config.gold, config.silver, config.langs, config.exclude_sources)
    if not train_files:
        raise ValueError(f"no gold train files under {config.gold} for languages {config.langs}")
    with parallel.main_first():  # rank 0 tokenizes into the cache, the others load it
        train, groups = encode_training_files(tokenizer, train_files, config.max_length)
    dev_files = selection_files(config.gold, config.langs, config.exclude_sources, train_files)
    dev = list(read_gold(dev_files, config.dev_per_lang))
    for file in train_files:
        if file.split != "train":
            logger.info("training on %s %s/%s dev (it has no train split)", file.kind, file.source,
                        file.lang)
    logger.info("training on %d sentences from %d files (%d silver); selecting on %d dev sentences of %d languages",
                len(train), len(train_files), sum(f.kind == "silver" for f in train_files), len(dev),
                len({s.lang for s in dev}))

    model = _model(config).to(parallel.device)
    optimizer, scheduler = _optimizer(model, config)
    state = resume(out / "checkpoint", model, optimizer, scheduler) or {"step": 0, "best_f1": -1.0, "history": []}
    trainer = parallel.wrap(BatchLoss(model, lambda m, batch: m(**batch).loss))
    sampler = MixedLanguageSampler(groups, config.sampling_alpha, config.seed,
                                   weights=group_weights(train_files, config.silver_weight),
                                   lengths=np.diff(train.offsets), bucket=config.bucket)
    pad = tokenizer.pad_token_id
    model.train()
    progress = tqdm(range(state["step"], config.max_steps), desc="train-teacher", initial=state["step"],
                    total=config.max_steps, disable=None if parallel.is_main else True)  # None: off when not a terminal (logs carry the ETA)
    running = 0.0
    started, first_step, elapsed_before = time.time(), state["step"], state.get("elapsed_seconds", 0.0)
    for step in progress:
        batch = parallel.to_device(collate(train, parallel.shard(sampler.batch(step, config.batch_size)), pad))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            loss = parallel.scale_loss(trainer(batch), (batch["labels"] != IGNORE_INDEX).sum())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        value = parallel.mean(loss.item())  # the global batch's loss
        running = 0.9 * running + 0.1 * value if step > first_step else value
        progress.set_postfix(loss=f"{running:.3f}")
        done = step + 1
        if done % config.log_every == 0 and parallel.is_main:
            _log_progress(done, config.max_steps, first_step, started, running)
        if done % config.eval_every == 0 or done == config.max_steps:
            model.eval()
            scores = (evaluate_by_language(Tagger(parallel.for_inference(model), tokenizer).tag_words, dev)
                      if parallel.is_main else None)
            model.train()
            f1 = parallel.broadcast(macro(scores).f1 if parallel.is_main else None)
            state["history"].append({"step": done, "loss": running, "dev_f1": f1,
                                     "minutes": (elapsed_before + time.time() - started) / 60,
                                     "dev_f1_by_language": ({lang: round(s.f1, 2) for lang, s in scores.items()}
                                                            if scores else {})})
            logger.info("step %d: loss %.4f, dev macro F1 %.2f", done, running, f1)
            if f1 > state["best_f1"]:
                state["best_f1"] = f1
                state["best_step"] = done
                if parallel.is_main:
                    model.save_pretrained(out, safe_serialization=True)
                    tokenizer.save_pretrained(out)
                    logger.info("new best on dev (%.2f): saved to %s", f1, out)
        if done % config.save_every == 0 or done == config.max_steps:
            state["step"] = done
            state["elapsed_seconds"] = elapsed_before + time.time() - started
            if parallel.is_main:
                save_checkpoint(out / "checkpoint", model, optimizer, scheduler, state)
            parallel.barrier()
    if parallel.is_main:
        (out / "training_state.json").write_text(json.dumps(state, indent=2))
    return out
