"""Fine-tune the multilingual teacher for NER on gold (and optionally silver) data, sources mixed per batch.

The checkpoint is chosen on gold dev (macro word-level F1 over languages), never on test or silver. The
loop checkpoints every ``save_every`` steps, logs progress with an ETA every ``log_every`` steps, and
resumes from the last checkpoint after an interruption.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from polyner.data.training_sets import (encode_training_files, group_weights, selection_files, selection_sentences,
                                        training_files)
from polyner.models.classifier import config_unspaced_runs
from polyner.tagging.pieces import check_unspaced_runs
from polyner.evaluate import evaluate_by_language, macro
from polyner.labels import IGNORE_INDEX
from polyner.models.io import ner_config_kwargs, quiet_transformers
from polyner.training.distributed import init_distributed
from polyner.training.engine import CheckpointPlan, Evaluation, LoopSettings, Progress, Step, read_state, train_loop
from polyner.training.engine import run_identity as engine_identity
from polyner.training.loop import collate, linear_schedule, seed_everything
from polyner.training.sampling import MixedLanguageSampler

logger = logging.getLogger(__name__)


@dataclass
class TeacherTrainingConfig:
    """Settings of ``polyner train-teacher``."""

    teacher: str  # built encoder directory (polyner teacher build), a name (polyner models) or a hub id
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
    # how runs of scripts without spaces become pieces (polyner.tagging.pieces): "text" or "words";
    # None: as the starting model reads them (its config.json's ner_unspaced_runs, else "words")
    unspaced_runs: str | None = None
    # lower-cased copies of this share of each training file's sentences (names in text without capitals)
    lowercase_share: float = 0.0
    log_every: int = 50
    seed: int = 13
    threads: int = 2

    def __post_init__(self) -> None:
        if not 0.0 <= self.lowercase_share <= 1.0:
            raise ValueError(f"lowercase_share must be between 0 and 1, not {self.lowercase_share!r}")


def _model(config: TeacherTrainingConfig, source: Path | None = None):
    """The teacher to fine-tune, from ``source`` (the located ``config.teacher``; None: that as given)."""
    from transformers import AutoModelForTokenClassification

    quiet_transformers()
    model = AutoModelForTokenClassification.from_pretrained(str(source or config.teacher), dtype=torch.float32,
                                                            use_safetensors=True, **ner_config_kwargs())
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


def resolve_unspaced_runs(config: TeacherTrainingConfig, source: Path) -> str:
    """How the teacher will read runs without spaces: as asked, else as the starting model does."""
    if config.unspaced_runs is not None:
        return check_unspaced_runs(config.unspaced_runs)
    from transformers import AutoConfig

    return config_unspaced_runs(AutoConfig.from_pretrained(str(source)), source)


RUN_IDENTITY = ("teacher", "gold", "silver", "langs", "exclude_sources", "max_length", "batch_size", "seed",
                "unspaced_runs", "lowercase_share")
#: the value of each setting that joined RUN_IDENTITY later, as checkpoints written before it had it
IDENTITY_DEFAULTS = {"lowercase_share": 0.0}


def run_identity(config: TeacherTrainingConfig) -> dict:
    """The settings a checkpoint must share to be resumed by ``config`` (max_steps and the rhythm may change);
    local paths absolute, so a run resumed from another directory is still the same run."""
    values = {k: getattr(config, k) for k in RUN_IDENTITY}
    if values["unspaced_runs"] is None:  # the same run whether the mode is named or taken from the model
        from polyner.loading import locate_model

        values["unspaced_runs"] = resolve_unspaced_runs(config, locate_model(config.teacher))
    return engine_identity(values, paths=("teacher", "gold", "silver"))


def train_teacher(config: TeacherTrainingConfig) -> Path:
    """Fine-tune, select on dev, and save the best teacher in HF layout to ``config.out``.

    Started by ``torchrun``, the processes share each global batch of ``config.batch_size`` sentences
    (see :mod:`polyner.training.distributed`); rank 0 evaluates and writes the files.
    """
    from polyner.loading import locate_model
    from polyner.models.io import load_tokenizer
    from polyner.tagging.tagger import Tagger

    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    parallel = init_distributed()
    out = Path(config.out)
    source = locate_model(config.teacher)  # a directory, a name (polyner teacher build's) or a hub id; checked now
    config = replace(config, unspaced_runs=resolve_unspaced_runs(config, source))  # a run is what it does
    checkpoint = CheckpointPlan(out / "checkpoint", run_identity(config), defaults=IDENTITY_DEFAULTS)
    read_state(checkpoint)  # another run's checkpoint is refused before anything is written
    if parallel.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "training_config.json").write_text(json.dumps(asdict(config), indent=2))
    tokenizer = load_tokenizer(source)
    train_files = training_files(config.gold, config.silver, config.langs, config.exclude_sources)
    if not train_files:
        raise ValueError(f"no gold train files under {config.gold} for languages {config.langs}")
    model = _model(config, source).to(parallel.device)
    model.config.ner_unspaced_runs = config.unspaced_runs
    with parallel.main_first():  # rank 0 tokenizes into the cache, the others load it
        train, groups = encode_training_files(tokenizer, train_files, config.max_length,
                                              unspaced_runs=model.config.ner_unspaced_runs,
                                              lowercase_share=config.lowercase_share, seed=config.seed)
    dev_files = selection_files(config.gold, config.langs, config.exclude_sources, train_files)
    dev = selection_sentences(dev_files, config.dev_per_lang)
    for file in train_files:
        if file.split != "train":
            logger.info("training on %s %s/%s dev (it has no train split)", file.kind, file.source,
                        file.lang)
    logger.info("training on %d sentences from %d files (%d silver); selecting on %d dev sentences of %d languages",
                len(train), len(train_files), sum(f.kind == "silver" for f in train_files), len(dev),
                len({s.lang for s in dev}))

    optimizer, scheduler = _optimizer(model, config)
    sampler = MixedLanguageSampler(groups, config.sampling_alpha, config.seed,
                                   weights=group_weights(train_files, config.silver_weight),
                                   lengths=np.diff(train.offsets), bucket=config.bucket)
    pad = tokenizer.pad_token_id
    step = Step(batch=lambda index: collate(train, parallel.shard(sampler.batch(index, config.batch_size)), pad),
                loss=lambda m, batch: m(**batch).loss, terms=lambda batch: (batch["labels"] != IGNORE_INDEX).sum())

    def evaluate(progress: Progress) -> Evaluation:
        scores = evaluate_by_language(Tagger(parallel.for_inference(model), tokenizer).tag_words, dev)
        f1 = macro(scores).f1
        return Evaluation(f1, {"step": progress.step, "loss": progress.loss, "dev_f1": f1, "minutes": progress.minutes,
                               "dev_f1_by_language": {lang: round(s.f1, 2) for lang, s in scores.items()}},
                          summary=f"dev macro F1 {f1:.2f}")

    def keep_best(evaluation: Evaluation) -> None:
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
        logger.info("new best on dev (%.2f): saved to %s", evaluation.score, out)

    settings = LoopSettings(max_steps=config.max_steps, eval_every=config.eval_every, save_every=config.save_every,
                            log_every=config.log_every, bf16=config.bf16, description="train-teacher",
                            logger=__name__)
    state = train_loop(settings, model, optimizer, scheduler, step, evaluate, on_best=keep_best, parallel=parallel,
                  checkpoint=checkpoint)
    if parallel.is_main:
        (out / "training_state.json").write_text(json.dumps(training_state(state), indent=2))
    return out


def training_state(state: dict) -> dict:
    """The loop state as ``training_state.json`` keeps it (the best score named ``best_f1``: it is dev macro F1)."""
    return {("best_f1" if k == "best_score" else k): v for k, v in state.items()}
