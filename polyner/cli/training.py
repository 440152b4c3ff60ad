"""Training verbs: ``polyner teacher build``, ``train-teacher`` and ``distill``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from polyner.cli.common import languages_option, needs, setup_logging, verbose_option
from polyner.errors import UserError

app = typer.Typer()
teacher_app = typer.Typer(no_args_is_help=True, help="Build the multilingual teacher encoder.")
app.add_typer(teacher_app, name="teacher")


@teacher_app.command("build")
def teacher_build(name: str = typer.Option("multilingual-e5-small", help="multilingual-e5-small (offline, from "
                                           "PyPI assets), or a hub name / directory such as xlm-roberta-base."),
                  out: Optional[Path] = typer.Option(None, help="Output directory (default: $POLYNER_HOME/teachers/NAME)."),
                  force: bool = typer.Option(False, help="Rebuild even if it exists."),
                  verbose: bool = verbose_option(True)) -> None:
    """Build the teacher encoder in Hugging Face layout and print its directory."""
    needs("teacher build", "train")
    from polyner.models.teacher import build_teacher

    setup_logging(verbose)
    typer.echo(str(build_teacher(name, out, force=force)))


@app.command("train-teacher")
def train_teacher_cmd(
        gold: Path = typer.Option(..., help="Gold root: SOURCE/LANG/{train,dev,test}.iob2"),
        out: Path = typer.Option(..., help="Output directory (HF layout; resumes if a checkpoint is there)."),
        teacher: Optional[str] = typer.Option(None, help="Encoder directory, name (polyner models) or hub id "
                                              "(default: the built offline teacher)."),
        languages: Optional[str] = languages_option(),
        exclude_source: List[str] = typer.Option([], help="Gold or silver sources to leave out (e.g. for licences)."),
        silver: Optional[Path] = typer.Option(None, help="Silver root (same layout): trains, never selects."),
        silver_weight: float = typer.Option(0.5, help="Sampling pull of a silver file against a gold one."),
        max_steps: int = typer.Option(2000), batch_size: int = typer.Option(16), max_length: int = typer.Option(64),
        lr: float = typer.Option(1e-4), eval_every: int = typer.Option(400), save_every: int = typer.Option(100),
        dev_per_lang: int = typer.Option(100),
        bucket: int = typer.Option(1, help="Draw this many batches together and cut them by length (less padding)."),
        bf16: bool = typer.Option(False, "--bf16/--fp32", help="bfloat16 autocast (fast on AMX / AVX-512 BF16 CPUs)."),
        seed: int = typer.Option(13), threads: int = typer.Option(2),
        unspaced_runs: Optional[str] = typer.Option(
            None, help="How runs of Han, kana, Thai... become pieces: 'text' (as written) or 'words' (each word with "
                       "its own ▁). Default: as the starting model reads them. Its students read them the same way."),
        lowercase_share: float = typer.Option(0.0, help="Lower-cased copies of this share of each training file's "
                                              "sentences (0-1): names in text without capitals."),
        verbose: bool = verbose_option(True)) -> None:
    """Fine-tune the teacher for NER on gold (and silver) train splits; the checkpoint is chosen on gold dev."""
    needs("train-teacher", "train")
    from polyner.languages import parse_languages
    from polyner.models.teacher import build_teacher
    from polyner.training.teacher import TeacherTrainingConfig, train_teacher

    setup_logging(verbose)
    config = TeacherTrainingConfig(
        teacher=teacher or str(build_teacher()), gold=str(gold), out=str(out),
        langs=parse_languages(languages) if languages else None, exclude_sources=list(exclude_source),
        silver=str(silver) if silver else None, silver_weight=silver_weight,
        max_steps=max_steps, batch_size=batch_size, max_length=max_length, lr=lr, eval_every=eval_every,
        save_every=save_every, dev_per_lang=dev_per_lang, bucket=bucket, bf16=bf16, seed=seed, threads=threads,
        unspaced_runs=unspaced_runs, lowercase_share=lowercase_share)
    typer.echo(str(train_teacher(config)))


@app.command()
def distill(
        teacher: Optional[str] = typer.Option(None, help="Fine-tuned teacher directory or name (polyner train-teacher)."),
        out: Optional[Path] = typer.Option(None, help="Output directory of the student (resumes if present)."),
        languages: Optional[str] = languages_option("Comma-separated languages, e.g. de,fr,sw (default: all 41)."),
        unlabeled: List[str] = typer.Option([], help="Unlabeled text: LANG.txt files, folders of them, or LANG=PATH."),
        gold: Optional[Path] = typer.Option(None, help="Gold root SOURCE/LANG/SPLIT.iob2 (train text, dev, labels)."),
        silver: Optional[Path] = typer.Option(None, help="Silver root, same layout (text and labels; never dev)."),
        silver_labels: Optional[str] = typer.Option(None, help="Which silver files label the gold stages: all, or "
                                                    "no-gold (only languages without gold training data)."),
        lowercase_share: Optional[float] = typer.Option(None, help="Gold stages: lower-cased copies of this share "
                                                        "of each label file's sentences (0-1; default 0)."),
        preset: Optional[str] = typer.Option(None, help="Student size: xs, s or m."),
        config: Optional[Path] = typer.Option(None, help="A YAML or JSON DistillConfig; options given here win."),
        exclude_source: List[str] = typer.Option([], help="Gold sources to leave out (e.g. NonCommercial ones)."),
        representation_steps: Optional[int] = typer.Option(None, help="Stage-1 steps."),
        logit_steps: Optional[int] = typer.Option(None, help="Steps of each logit sub-stage (2, 3.x)."),
        gold_steps: Optional[int] = typer.Option(None, help="Steps of each gold sub-stage (4.x)."),
        stage1: bool = typer.Option(True, "--stage1/--no-stage1", help="Representation transfer (ablation: off)."),
        factorize: bool = typer.Option(True, "--factorize/--random-embeddings", help="PCA embeddings (ablation: random)."),
        augment: bool = typer.Option(True, "--augment/--no-augment", help="Augmented transfer text (ablation: off)."),
        gold_languages: Optional[bool] = typer.Option(None, "--gold-languages/--only-languages",
                                                      help="Also every language with gold training data."),
        reuse_cache: Optional[Path] = typer.Option(None, help="work/teacher_cache of an earlier run with the same "
                                                    "teacher: copy the outputs of the sentences it holds (matched on "
                                                    "the teacher's pieces); the teacher runs on the others only."),
        seed: Optional[int] = typer.Option(None), threads: Optional[int] = typer.Option(None),
        bf16: Optional[bool] = typer.Option(None, "--bf16/--fp32", help="bfloat16 autocast (fast on AMX / AVX-512 "
                                            "BF16 CPUs; default: the recipe's, else fp32)."),
        bucket: Optional[int] = typer.Option(None, help="Draw this many batches together and cut them by length "
                                             "(less padding; default: the recipe's, else 1)."),
        evaluate_test: bool = typer.Option(True, "--evaluate/--no-evaluate", help="Closing table on gold test "
                                           "(also written to OUT/results.md)."),
        verbose: bool = verbose_option(True)) -> None:
    """Distil a compact student from the fine-tuned teacher for any set of languages."""
    needs("distill", "train")
    from dataclasses import replace

    from polyner.distill.config import DistillConfig, StageBudget
    from polyner.distill.trainer import distill as run_distill, with_gold_languages
    from polyner.languages import parse_languages

    setup_logging(verbose)
    overrides: dict = {"teacher": teacher, "out": str(out) if out else None, "preset": preset,
                       "gold": str(gold) if gold else None, "silver": str(silver) if silver else None,
                       "silver_labels": silver_labels, "lowercase_share": lowercase_share,
                       "seed": seed, "threads": threads, "bf16": bf16, "bucket": bucket,
                       "languages": parse_languages(languages) if languages else None,
                       "unlabeled": list(unlabeled) or None, "exclude_sources": list(exclude_source) or None,
                       "reuse_teacher_cache": str(reuse_cache) if reuse_cache else None,
                       "include_gold_languages": gold_languages}
    if not stage1:
        overrides["use_representation_stage"] = False
    if not factorize:
        overrides["factorize_embeddings"] = False
    if not augment:
        overrides["use_augmented"] = False
    if config is not None:
        settings = DistillConfig.from_file(config, **overrides)
    else:
        if not teacher or not out:
            raise UserError("--teacher and --out are required (or give them in --config)")
        settings = DistillConfig(**{k: v for k, v in overrides.items() if v is not None})
    for name, steps in (("representation", representation_steps), ("logits", logit_steps),
                        ("gold_labels", gold_steps)):
        if steps is not None:
            budget: StageBudget = getattr(settings, name)
            shorter = replace(budget, steps=steps, eval_every=min(budget.eval_every, steps))
            settings = replace(settings, **{name: shorter})
    folder = run_distill(settings)  # MissingLanguageError is a ValueError: a user error
    typer.echo(f"student saved to {folder}")
    if evaluate_test and settings.gold and os.environ.get("RANK", "0") == "0":  # under torchrun: rank 0 only
        from polyner.evaluation_run import EvaluationRequest, run_evaluation

        typer.echo(run_evaluation(EvaluationRequest(
            models=[str(folder)], data=settings.gold, splits=["test"], langs=with_gold_languages(settings).languages,
            results=str(folder / "results.md"), section="closing-evaluation")))
