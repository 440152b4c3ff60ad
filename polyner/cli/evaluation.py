"""Measuring verbs: ``polyner evaluate`` (F1 per language), ``agreement`` (two models) and ``bench`` (speed).

They print their tables; a file is written only where ``--write PATH`` says.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from polyner.cli.common import (backend_option, batch_size_option, decoding_option, languages_option,
                                max_length_option, model_spec, needs, setup_logging, split_list, threads_option,
                                verbose_option)
from polyner.errors import UserError

app = typer.Typer()


@app.command()
def evaluate(models: List[str] = typer.Argument(..., help="Model directories (several: side by side)."),
             gold: str = typer.Option(..., "--gold", "--data", help="Gold root SOURCE/LANG/SPLIT.iob2, one .iob2 "
                                      "file, or 'wikiann' (--data is the older spelling)."),
             split: str = typer.Option("test", help="Comma-separated splits, e.g. dev,test."),
             languages: Optional[str] = languages_option(),
             names: Optional[str] = typer.Option(None, help="Comma-separated column names for the models."),
             max_sentences: Optional[int] = typer.Option(None, help="At most this many sentences per file."),
             wikiann_path: str = typer.Option("unimelb-nlp/wikiann", help="Hub name or local copy of WikiAnn."),
             write: Optional[Path] = typer.Option(None, "--write", "--results", help="Also write the tables into "
                                                  "this markdown file, as a section (e.g. docs/results.md)."),
             section: Optional[str] = typer.Option(None, help="Section name in the --write file."),
             backend: Optional[str] = backend_option(),
             threads: Optional[int] = threads_option(),
             max_length: Optional[int] = max_length_option(),
             decoding: str = decoding_option(),
             batch_size: int = batch_size_option(64),
             silver: Optional[Path] = typer.Option(None, help="Silver root: a separate table on its test files "
                                                   "(dev where a source has train but no test)."),
             coverage: bool = typer.Option(False, "--coverage", help="Add the 41-language table: training data "
                                           "kind (from --gold/--silver) and test F1s."),
             progress: bool = typer.Option(True, "--progress/--no-progress", help="A progress bar on a terminal."),
             reading: str = typer.Option("words", "--input", help="words: each sentence's own words (word-level "
                                         "seqeval); text: its words joined as raw text, cut by the tagger as "
                                         "users' text is (strict match on character spans)."),
             verbose: bool = verbose_option(False)) -> None:
    """Word-level seqeval (strict IOB2) per language and macro average, or the same sentences read as raw text
    (--input text); prints the tables (and writes them into --write PATH when given)."""
    needs("evaluate", "train")
    from polyner.evaluation_run import EvaluationRequest, run_evaluation

    setup_logging(verbose)
    request = EvaluationRequest(
        models=models, data=gold, splits=split_list(split) or [], langs=split_list(languages),
        names=split_list(names), max_sentences=max_sentences, wikiann_path=wikiann_path,
        results=str(write) if write else None, section=section, batch_size=batch_size, decoding=decoding,
        max_length=max_length, backend=backend, threads=threads, silver=str(silver) if silver else None,
        coverage=coverage, progress=progress, reading=reading)
    typer.echo(run_evaluation(request))
    if write:
        typer.echo(f"written to {write}")


@app.command()
def agreement(model_a: str = typer.Argument(..., help="Reference model directory or name."),
              model_b: str = typer.Argument(..., help="Model to compare (e.g. its ONNX export)."),
              gold: Path = typer.Option(..., "--gold", "--data", help="Gold root SOURCE/LANG/SPLIT.iob2: texts to "
                                        "tag (--data is the older spelling)."),
              split: str = typer.Option("test"),
              languages: Optional[str] = languages_option(),
              max_sentences: int = typer.Option(200, help="At most this many sentences per gold file."),
              backend_a: Optional[str] = backend_option("--backend-a"),
              backend_b: Optional[str] = backend_option("--backend-b"),
              threads: Optional[int] = threads_option(),
              max_length: Optional[int] = max_length_option(),
              decoding: str = decoding_option(),
              batch_size: int = batch_size_option(),
              verbose: bool = verbose_option(False)) -> None:
    """Entity agreement of two models on gold text: exact (start, end, label) matches over all entities found."""
    from polyner.agreement import gold_texts, tagger_agreement
    from polyner.data.iob2 import discover_gold, read_gold

    setup_logging(verbose)
    files = discover_gold(gold, split_list(languages), [split])
    texts = gold_texts(read_gold(files, max_sentences))
    if not texts:
        raise UserError(f"no {split} sentences under {gold}")
    tagger_a = model_spec(model_a, backend_a, threads, max_length, decoding, batch_size).build()
    tagger_b = model_spec(model_b, backend_b, threads, max_length, decoding, batch_size).build()
    typer.echo(f"A = {model_a}, B = {model_b}: {tagger_agreement(tagger_a, tagger_b, texts, batch_size).describe()}")


@app.command()
def bench(teacher: Path = typer.Option(..., help="The fine-tuned teacher directory (e.g. runs/teacher-ner)."),
          gold: Path = typer.Option(..., help="Gold root SOURCE/LANG/test.iob2 (F1, agreement and speed texts)."),
          student: Optional[str] = typer.Option(None, "--model", "--student", help="The student: a model directory or "
                                                "name (default: the shipped default; --student is the older spelling)."),
          max_sentences: int = typer.Option(200, help="Per gold test file, for F1 and agreement."),
          speed_sentences: int = typer.Option(256, help="Sentences timed at batch 1 and 32."),
          cost_words: str = typer.Option("10,100,1000,10000", help="Cost-curve text lengths in words."),
          threads: int = typer.Option(os.cpu_count() or 1, help="Threads per model (torch and ONNX Runtime)."),
          repeats: int = typer.Option(3, help="Timed passes (median) at batch 32 and 1, and per cost-curve text."),
          turns: bool = typer.Option(True, "--turns/--one-by-one",
                                     help="Models take turns pass by pass (default) or are measured one after the other."),
          scale: bool = typer.Option(True, "--scale/--no-scale", help="Include the xlm-roberta-base-sized encoder."),
          int8_embeddings: bool = typer.Option(True, "--int8-embeddings/--fp32-embeddings",
                                               help="Quantize the int8 student's word embeddings too."),
          per_batch_int8: bool = typer.Option(False, "--per-batch-int8", help="Also measure the int8 student with "
                                              "onnxruntime's per-batch activation scales (what per-token costs)."),
          work: Optional[Path] = typer.Option(None, help="Where the ONNX exports go (default: $POLYNER_HOME/bench)."),
          write: Optional[Path] = typer.Option(None, "--write", "--docs", help="Also write the report into this "
                                               "markdown file, as its inference section (e.g. docs/benchmarks.md)."),
          no_docs: bool = typer.Option(False, "--no-docs", hidden=True, help="Ignored: printing only is the default."),
          verbose: bool = verbose_option(True)) -> None:
    """Teacher, xlm-roberta-base-sized encoder and student (torch fp32, ONNX fp32, ONNX int8) side by side;
    prints the report (and writes it into --write PATH when given)."""
    needs("bench", "train")
    import shlex
    import sys

    from polyner.bench.report import render, write_docs
    from polyner.bench.runner import BenchConfig, run_bench

    setup_logging(verbose)
    try:
        sizes = [int(n) for n in cost_words.split(",") if n.strip()]
    except ValueError:
        raise UserError(f"--cost-words must be comma-separated integers, not {cost_words!r}") from None
    if threads < 1 or repeats < 1 or speed_sentences < 1 or any(n < 1 for n in sizes):
        raise UserError("--threads, --repeats, --speed-sentences and --cost-words must be positive")
    config = BenchConfig(teacher=str(teacher), gold=str(gold), student=student, max_sentences=max_sentences,
                         speed_sentences=speed_sentences, cost_words=sizes, threads=threads, repeats=repeats,
                         scale=scale, int8_embeddings=int8_embeddings, per_batch_int8=per_batch_int8,
                         work=str(work) if work else None,
                         docs=None if no_docs or write is None else str(write), turns=turns)
    try:
        run = run_bench(config)
    except RuntimeError as exc:  # a worker process failed
        raise UserError(str(exc)) from exc
    body = render(run, "polyner bench " + shlex.join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else "polyner bench")
    typer.echo(body)
    if config.docs:
        typer.echo(f"written to {write_docs(config.docs, body)}")
    if any(r.error for r in run.results):
        raise typer.Exit(1)
