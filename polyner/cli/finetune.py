"""``polyner finetune glue|squad``: fine-tune a student (or any encoder) on GLUE or SQuAD 2.0."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from polyner.cli.common import needs, setup_logging, verbose_option

app = typer.Typer()
finetune_app = typer.Typer(no_args_is_help=True,
                           help="Fine-tune a student (or any encoder) on GLUE or SQuAD 2.0, choosing on dev.")
app.add_typer(finetune_app, name="finetune")


def _run(kind: str, settings: dict, results: Optional[Path], verbose: bool) -> None:
    needs(f"finetune {kind}", "train")
    from polyner.home import cache_dir
    from polyner.tasks.finetune import FinetuneConfig, display_name, finetune_glue, finetune_squad

    setup_logging(verbose)
    config = FinetuneConfig(**settings)
    if kind == "glue":
        from polyner.tasks.glue import get_task

        config.task = get_task(config.task).name
    if config.out is None:
        config.out = str(cache_dir("finetune") / f"{display_name(config)}-{config.task}")
    record = finetune_glue(config) if kind == "glue" else finetune_squad(config)
    if results is not None:
        from polyner.tasks.report import update_results

        update_results(results, record)
    typer.echo(json.dumps({"out": config.out, "task": record["task"], "name": record["name"],
                           "best_step": record["best_step"], "best": record["best"], "minutes": record["minutes"]}))


def _common(model, out, data, hub, name, max_length, batch_size, lr, epochs, steps, max_train_samples,
            max_eval_samples, eval_every, freeze_embeddings, keep_checkpoint, seed, threads) -> dict:
    return {"model": model, "out": str(out) if out else None, "data": str(data) if data else None, "use_hub": hub,
            "name": name, "max_length": max_length, "batch_size": batch_size, "lr": lr, "epochs": epochs,
            "steps": steps, "max_train_samples": max_train_samples, "max_eval_samples": max_eval_samples,
            "eval_every": eval_every, "freeze_embeddings": freeze_embeddings, "keep_checkpoint": keep_checkpoint,
            "seed": seed, "threads": threads}


MODEL = typer.Option(None, "--model", "-m", help="Model directory or hub name (default: the shipped student).")
OUT = typer.Option(None, help="Output directory (default: $POLYNER_HOME/finetune/NAME-TASK); resumes a checkpoint "
                  "there.")
DATA = typer.Option(None, help="Local data directory (default: the hub, else ../shared/data).")
HUB = typer.Option(True, "--hub/--no-hub", help="Try the Hugging Face hub first (skipped fast when offline).")
NAME = typer.Option(None, help="Model name in the results table (default: from the model path).")
STEPS = typer.Option(None, help="Optimizer steps (overrides --epochs).")
TRAIN_SAMPLES = typer.Option(None, help="Train on a random sample of this many examples.")
EVAL_SAMPLES = typer.Option(None, help="Evaluate on a random sample of this many dev examples.")
EVAL_EVERY = typer.Option(None, help="Evaluate on dev every N steps (default: once per epoch).")
FREEZE = typer.Option(True, "--freeze-embeddings/--train-embeddings", help="Keep the word-embedding table fixed.")
KEEP = typer.Option(False, "--keep-checkpoint", help="Keep the resumable checkpoint after the run.")
RESULTS = typer.Option(None, "--write", "--results", help="Also write this run into the GLUE/SQuAD section of this "
                       "markdown file (e.g. docs/results.md; --results is the older spelling).")


@finetune_app.command("glue")
def glue(task: str = typer.Option(..., help="sst2, mrpc, rte, cola, stsb, qnli, qqp or mnli."),
         model: Optional[str] = MODEL, out: Optional[Path] = OUT, data: Optional[Path] = DATA, hub: bool = HUB,
         name: Optional[str] = NAME, max_length: int = typer.Option(128, help="Pieces per sentence (pair)."),
         batch_size: int = typer.Option(32), lr: float = typer.Option(1e-4), epochs: float = typer.Option(3.0),
         steps: Optional[int] = STEPS, max_train_samples: Optional[int] = TRAIN_SAMPLES,
         max_eval_samples: Optional[int] = EVAL_SAMPLES, eval_every: Optional[int] = EVAL_EVERY,
         freeze_embeddings: bool = FREEZE, keep_checkpoint: bool = KEEP, seed: int = typer.Option(42),
         threads: int = typer.Option(2), results: Optional[Path] = RESULTS,
         pooling: str = typer.Option("mean", help="Sentence vector of a new head on a polyner student: mean or first."),
         verbose: bool = verbose_option(True)) -> None:
    """Fine-tune a sequence classifier (regressor for STS-B) on a GLUE task; the best on dev is saved."""
    settings = _common(model, out, data, hub, name, max_length, batch_size, lr, epochs, steps, max_train_samples,
                       max_eval_samples, eval_every, freeze_embeddings, keep_checkpoint, seed, threads)
    _run("glue", {"task": task, "pooling": pooling, **settings}, results, verbose)


@finetune_app.command("squad")
def squad(model: Optional[str] = MODEL, out: Optional[Path] = OUT, data: Optional[Path] = DATA, hub: bool = HUB,
          name: Optional[str] = NAME, max_length: int = typer.Option(384, help="Pieces per window."),
          doc_stride: int = typer.Option(128, help="Pieces shared by neighbouring windows of a context."),
          max_query_length: int = typer.Option(64, help="Longer questions are cut to this many pieces."),
          max_answer_length: int = typer.Option(30, help="Longest answer, in pieces."),
          batch_size: int = typer.Option(16), lr: float = typer.Option(1e-4), epochs: float = typer.Option(2.0),
          steps: Optional[int] = STEPS, max_train_samples: Optional[int] = TRAIN_SAMPLES,
          max_eval_samples: Optional[int] = EVAL_SAMPLES, eval_every: Optional[int] = EVAL_EVERY,
          freeze_embeddings: bool = FREEZE, keep_checkpoint: bool = KEEP, seed: int = typer.Option(42),
          threads: int = typer.Option(2), results: Optional[Path] = RESULTS,
          verbose: bool = verbose_option(True)) -> None:
    """Fine-tune an extractive QA head on SQuAD 2.0; dev EM/F1 with the official metric and a tuned threshold."""
    settings = _common(model, out, data, hub, name, max_length, batch_size, lr, epochs, steps, max_train_samples,
                       max_eval_samples, eval_every, freeze_embeddings, keep_checkpoint, seed, threads)
    _run("squad", {"task": "squad", "doc_stride": doc_stride, "max_query_length": max_query_length,
                   "max_answer_length": max_answer_length, **settings}, results, verbose)
