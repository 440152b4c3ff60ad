"""Fine-tune an encoder (a polyner student or any Hugging Face model) on a GLUE task or SQuAD 2.0.

AdamW with the project's linear warm-up/decay schedule; batches drawn from a seeded permutation per
epoch, so a run interrupted and started again with the same ``out`` resumes exactly from its last
checkpoint. The model is scored on dev every ``eval_every`` steps and at the end; the best on dev is
saved in HF layout (safetensors, tokenizer) with ``metrics.json``. For SQuAD the no-answer threshold
that maximises dev F1 is stored in the saved config (``qa_null_threshold``) for inference.
"""
from __future__ import annotations

import json
import logging
import math
import platform
import shutil
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import numpy as np
import torch

from polyner.tasks.task_data import DevResult, TaskData
from polyner.training.distributed import init_distributed
from polyner.training.engine import CheckpointPlan, LoopSettings, Progress, Step, train_loop
from polyner.training.engine import Evaluation
from polyner.training.loop import linear_schedule, seed_everything

logger = logging.getLogger(__name__)
FINGERPRINT_FIELDS = ("task", "model", "data", "max_train_samples", "batch_size", "max_length", "doc_stride",
                      "max_query_length", "seed")


@dataclass
class FinetuneConfig:
    """Settings of ``polyner finetune glue|squad``."""

    task: str  # a GLUE task (sst2, mrpc, ...) or "squad"
    out: str
    model: str | None = None  # model directory or hub name; None: the shipped default student
    data: str | None = None  # local data directory; None: the hub, else ../shared/data
    use_hub: bool = True
    name: str | None = None  # the model's name in tables (default: from the path)
    max_length: int = 128
    doc_stride: int = 128
    max_query_length: int = 64
    max_answer_length: int = 30
    batch_size: int = 32
    eval_batch_size: int = 64
    lr: float = 1e-4
    head_lr: float | None = None  # None: same as lr
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    epochs: float = 3.0
    steps: int | None = None  # overrides epochs
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    eval_every: int | None = None  # None: once per epoch
    save_every: int = 200
    freeze_embeddings: bool = True  # the word-embedding table only
    pooling: str = "mean"  # GLUE head on a polyner student: "mean" over tokens or the "first" token
    keep_checkpoint: bool = False
    seed: int = 42
    threads: int = 2



def model_source(config: FinetuneConfig) -> str:
    """The model directory to start from (for an ONNX-only model such as the default: its torch weights, read back)."""
    from polyner.loading import locate_model
    from polyner.models.backend import torch_directory

    return str(torch_directory(locate_model(config.model)))


def display_name(config: FinetuneConfig) -> str:
    """The name used for the model in tables."""
    from polyner.loading import model_name

    return config.name or model_name(config.model)


def _optimizer(model: torch.nn.Module, config: FinetuneConfig, total_steps: int):
    if config.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    prefix = model.base_model_prefix + "."
    body, head = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (body if name.startswith(prefix) else head).append(param)
    groups = [{"params": body, "lr": config.lr}, {"params": head, "lr": config.head_lr or config.lr}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=config.weight_decay)
    return optimizer, linear_schedule(optimizer, total_steps, int(config.warmup_ratio * total_steps))


def batches_per_epoch(train_size: int, batch_size: int, processes: int = 1) -> int:
    """Batches in one pass over ``train_size`` rows: the last one partial, except that under ``torchrun`` a last batch
    with fewer rows than processes is left out (it cannot be shared; its rows come back in other epochs' order)."""
    if train_size < max(1, processes):
        raise ValueError(f"{train_size} training rows cannot be shared by {processes} process(es)")
    full, rest = divmod(train_size, batch_size)
    if 0 < rest < processes:
        logger.info("each epoch leaves out its last %d row(s): fewer than the %d processes", rest, processes)
        return full
    return full + (rest > 0)


def _fingerprint(config: FinetuneConfig) -> dict:
    return {k: getattr(config, k) for k in FINGERPRINT_FIELDS}


def _save_best(out: Path, model, tokenizer, evaluation: DevResult) -> None:
    for key, value in evaluation.config_updates.items():
        setattr(model.config, key, value)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    for file_name, payload in evaluation.files.items():
        (out / file_name).write_text(json.dumps(payload, ensure_ascii=False, indent=1), encoding="utf-8")


def run_training(config: FinetuneConfig, model, tokenizer, data: TaskData) -> dict:
    """Train, evaluate on dev, keep the best, through the one training loop; returns the metrics record (also
    metrics.json). Started by ``torchrun``, the processes share each batch and rank 0 evaluates and writes."""
    parallel = init_distributed()
    out = Path(config.out)
    if parallel.is_main:
        out.mkdir(parents=True, exist_ok=True)
    per_epoch = batches_per_epoch(data.train_size, config.batch_size, parallel.world_size)
    total = config.steps if config.steps is not None else max(1, math.ceil(config.epochs * per_epoch))
    if total < 1:
        raise ValueError(f"steps must be positive, not {total}")
    eval_every = max(1, min(config.eval_every or per_epoch, total))
    model.to(parallel.device)
    optimizer, scheduler = _optimizer(model, config, total)
    checkpoint = out / "checkpoint"
    main = data.main_metric
    orders: dict[int, np.ndarray] = {}

    def batch(step: int) -> dict[str, torch.Tensor]:  # a seeded permutation per epoch
        epoch, position = divmod(step, per_epoch)
        if epoch not in orders:
            orders.clear()
            orders[epoch] = np.random.default_rng(config.seed + epoch).permutation(data.train_size)
        rows = orders[epoch][position * config.batch_size:(position + 1) * config.batch_size].tolist()
        return data.collate(parallel.shard(rows))

    def evaluate(progress: Progress) -> Evaluation:
        evaluation = data.evaluate(parallel.for_inference(model))
        score = evaluation.metrics[main]
        entry = {"step": progress.step, "epoch": round(progress.step / per_epoch, 3), "loss": progress.loss,
                 **evaluation.metrics}
        return Evaluation(score, entry, f"dev {main} {score:.2f}", payload=evaluation)

    def keep_best(evaluation: Evaluation) -> None:
        _save_best(out, model, tokenizer, evaluation.payload)
        logger.info("new best on dev (%s %.2f): saved to %s", main, evaluation.score, out)

    settings = LoopSettings(max_steps=total, eval_every=eval_every, save_every=config.save_every,
                            description=f"finetune {config.task}", logger=__name__)
    step = Step(batch, lambda m, b: m(**b).loss, lambda b: len(b["input_ids"]))
    state = train_loop(settings, model, optimizer, scheduler, step, evaluate, on_best=keep_best, parallel=parallel,
                       checkpoint=CheckpointPlan(checkpoint, _fingerprint(config), score_key=main))
    best = next((h for h in state["history"] if h["step"] == state["best_step"]), None)
    record = {
        "task": config.task, "name": display_name(config), "model": model_source(config),
        "main_metric": main, "best": _metrics_of(best), "best_step": state["best_step"], "steps": total,
        "epochs": round(total / per_epoch, 3), "train_size": data.train_size, **data.description,
        "parameters": sum(p.numel() for p in model.parameters()),
        "minutes": round(state["elapsed_seconds"] / 60, 2), "date": date.today().isoformat(),
        "machine": platform.machine(), "history": state["history"], "config": asdict(config)}
    if parallel.is_main:
        (out / "metrics.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
        if not config.keep_checkpoint:
            shutil.rmtree(checkpoint, ignore_errors=True)
    parallel.barrier()
    return record


def _metrics_of(entry: dict | None) -> dict | None:
    """The dev metrics of a history entry (without its step, epoch and loss)."""
    return None if entry is None else {k: v for k, v in entry.items() if k not in ("step", "epoch", "loss")}


def _setup(config: FinetuneConfig):
    from polyner.models.io import load_tokenizer

    if config.batch_size < 1 or config.eval_batch_size < 1:
        raise ValueError("batch sizes must be positive")
    if config.steps is None and config.epochs <= 0:
        raise ValueError(f"epochs must be positive, not {config.epochs}")
    torch.set_num_threads(max(1, config.threads))
    seed_everything(config.seed)
    source = model_source(config)
    return source, load_tokenizer(source)


def finetune_glue(config: FinetuneConfig) -> dict:
    """Fine-tune on one GLUE task (train split, or a sample of it) with checkpoint choice on dev."""
    from polyner.tasks.glue import constant_baseline, get_task, load_glue, subsample
    from polyner.tasks.task_data import glue_task_data
    from polyner.tasks.heads import load_encoder_with_head

    task = get_task(config.task)
    config.task = task.name
    source, tokenizer = _setup(config)
    train, train_origin = load_glue(task, "train", config.data, config.use_hub)
    dev, dev_origin = load_glue(task, "dev", config.data, config.use_hub)
    full_train, full_dev = len(train), len(dev)
    train = subsample(train, config.max_train_samples, config.seed)
    dev = subsample(dev, config.max_eval_samples, config.seed)
    logger.info("%s: %d of %d train examples (%s), %d of %d dev (%s)", task.title, len(train), full_train,
                train_origin, len(dev), full_dev, dev_origin)
    model = load_encoder_with_head(source, "classify", task.labels, pooling=config.pooling)
    data = glue_task_data(task, tokenizer, train, dev, config)
    data.description.update({"train_origin": train_origin, "train_available": full_train,
                             "dev_origin": dev_origin, "dev_size": len(dev), "dev_available": full_dev,
                             "baseline": constant_baseline(task, train, dev)})
    return run_training(config, model, tokenizer, data)


def finetune_squad(config: FinetuneConfig) -> dict:
    """Fine-tune on SQuAD 2.0 (train, or a sample of its questions); choose on dev F1 with a tuned threshold."""
    from polyner.tasks.glue import subsample
    from polyner.tasks.heads import load_encoder_with_head
    from polyner.tasks.squad import load_squad, no_answer_baseline
    from polyner.tasks.task_data import squad_task_data

    config.task = "squad"
    source, tokenizer = _setup(config)
    train, train_origin = load_squad("train", config.data, config.use_hub)
    dev, dev_origin = load_squad("dev", config.data, config.use_hub)
    full_train, full_dev = len(train), len(dev)
    train = subsample(train, config.max_train_samples, config.seed)
    dev = subsample(dev, config.max_eval_samples, config.seed)
    logger.info("SQuAD 2.0: %d of %d train questions (%s), %d of %d dev (%s)", len(train), full_train,
                train_origin, len(dev), full_dev, dev_origin)
    model = load_encoder_with_head(source, "qa")
    data = squad_task_data(tokenizer, train, dev, config)
    data.description.update({"train_origin": train_origin, "train_questions": len(train),
                             "train_available": full_train, "dev_origin": dev_origin, "dev_size": len(dev),
                             "dev_available": full_dev, "baseline": no_answer_baseline(dev)})
    return run_training(config, model, tokenizer, data)
