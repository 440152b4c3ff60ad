"""The fast-inference verbs of the ``polyner`` command line: ``export``, ``agreement`` and ``bench``.

Registered on the main typer app by :func:`register` (called from polyner/cli.py).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from polyner.cli_common import fail as _fail, needs as _needs, setup_logging as _logging



def export(model: str = typer.Argument(..., help="Model directory or name: a student or BERT teacher with "
                                        "model.safetensors (--format onnx), or an ONNX export such as the default "
                                        "(--format torch)."),
           out: Path = typer.Option(..., help="Output directory (HF layout with model.onnx, or model.safetensors)."),
           format: str = typer.Option("onnx", "--format", help="onnx, or torch: the torch weights of an ONNX "
                                      "export read back (dequantized when int8), for fine-tuning or distilling."),
           quantize: Optional[str] = typer.Option(None, help="int8: dynamic int8 quantization (default: fp32)."),
           per_channel: bool = typer.Option(True, "--per-channel/--per-tensor", help="int8 weight scales."),
           quantize_embeddings: bool = typer.Option(True, "--quantize-embeddings/--fp32-embeddings",
                                                    help="int8: quantize the word embeddings too."),
           opset: int = typer.Option(17, help="ONNX opset (>= 14)."),
           verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Export a model to ONNX (dynamic batch and sequence axes) that `polyner.load(OUT)` runs with ONNX Runtime,
    or (--format torch) an ONNX export back to torch weights."""
    from polyner.models.io import ModelDirectoryError

    _needs("export", "export")
    _logging(verbose)
    if format not in ("onnx", "torch"):
        _fail(f"unknown --format {format!r}: expected onnx or torch")
    if format == "torch":
        from polyner.loading import resolve_model
        from polyner.models.io import check_model_dir
        from polyner.models.onnx_weights import write_torch_directory

        try:
            folder = write_torch_directory(check_model_dir(resolve_model(model)), out)
        except ModelDirectoryError as exc:
            _fail(str(exc))
        typer.echo(f"{folder}/model.safetensors ({(folder / 'model.safetensors').stat().st_size / 1e6:.1f} MB, float32)")
        return
    from polyner.models.onnx_export import ExportConfig, export_onnx

    if quantize not in (None, "int8"):
        _fail(f"unknown --quantize {quantize!r}: expected int8")
    if opset < 14:
        _fail(f"--opset must be 14 or more, not {opset}")
    try:
        result = export_onnx(ExportConfig(model=model, out=str(out), quantize=quantize, opset=opset,
                                          per_channel=per_channel, quantize_embeddings=quantize_embeddings))
    except (ModelDirectoryError, ImportError, RuntimeError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(f"{result.path}/model.onnx ({result.quantization or 'fp32'}, {result.size_bytes / 1e6:.1f} MB; "
               f"fp32 graph vs torch: max |logit diff| {result.fp32_max_abs_diff:.1e}; "
               f"argmax agreement on random inputs {100 * result.argmax_agreement:.2f}%)")


def agreement(model_a: str = typer.Argument(..., help="Reference model directory or name."),
              model_b: str = typer.Argument(..., help="Model to compare (e.g. its ONNX export)."),
              data: Path = typer.Option(..., help="Gold root SOURCE/LANG/SPLIT.iob2: texts to tag."),
              split: str = typer.Option("test"),
              langs: Optional[str] = typer.Option(None, help="Comma-separated languages (default: all found)."),
              max_sentences: int = typer.Option(200, help="At most this many sentences per gold file."),
              backend_a: Optional[str] = typer.Option(None, help="torch or onnx (default: from the directory)."),
              backend_b: Optional[str] = typer.Option(None, help="torch or onnx (default: from the directory)."),
              onnx_threads: Optional[int] = typer.Option(None, help="ONNX Runtime intra-op threads."),
              batch_size: int = typer.Option(32),
              verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Entity agreement of two models on gold text: exact (start, end, label) matches over all entities found."""
    import polyner
    from polyner.agreement import gold_texts, tagger_agreement
    from polyner.data.iob2 import discover_gold, read_gold
    from polyner.models.io import ModelDirectoryError

    _logging(verbose)
    try:
        files = discover_gold(data, [s.strip() for s in langs.split(",")] if langs else None, [split])
        texts = gold_texts(read_gold(files, max_sentences))
        if not texts:
            _fail(f"no {split} sentences under {data}")
        tagger_a = polyner.load(model_a, backend=backend_a, onnx_threads=onnx_threads)
        tagger_b = polyner.load(model_b, backend=backend_b, onnx_threads=onnx_threads)
    except (ModelDirectoryError, FileNotFoundError, ImportError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(f"A = {model_a}, B = {model_b}: {tagger_agreement(tagger_a, tagger_b, texts, batch_size).describe()}")


def bench(teacher: Path = typer.Option(..., help="The fine-tuned teacher directory (e.g. runs/teacher-ner)."),
          gold: Path = typer.Option(..., help="Gold root SOURCE/LANG/test.iob2 (F1, agreement and speed texts)."),
          student: Optional[str] = typer.Option(None, help="Student directory (default: the shipped default)."),
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
          work: Optional[Path] = typer.Option(None, help="Where the ONNX exports go (default: $POLYNER_HOME/bench)."),
          docs: Optional[Path] = typer.Option(Path("docs/benchmarks.md"), help="Markdown file for the report."),
          no_docs: bool = typer.Option(False, "--no-docs", help="Print only; do not write the docs file."),
          verbose: bool = typer.Option(True, "--verbose/--quiet")) -> None:
    """Teacher, xlm-roberta-base-sized encoder and student (torch fp32, ONNX fp32, ONNX int8) side by side."""
    _needs("bench", "train")
    import shlex
    import sys

    from polyner.bench.report import render, write_docs
    from polyner.bench.runner import BenchConfig, run_bench
    from polyner.models.io import ModelDirectoryError

    _logging(verbose)
    try:
        sizes = [int(n) for n in cost_words.split(",") if n.strip()]
    except ValueError:
        _fail(f"--cost-words must be comma-separated integers, not {cost_words!r}")
    if threads < 1 or repeats < 1 or speed_sentences < 1 or any(n < 1 for n in sizes):
        _fail("--threads, --repeats, --speed-sentences and --cost-words must be positive")
    config = BenchConfig(teacher=str(teacher), gold=str(gold), student=student, max_sentences=max_sentences,
                         speed_sentences=speed_sentences, cost_words=sizes, threads=threads, repeats=repeats,
                         scale=scale, int8_embeddings=int8_embeddings, work=str(work) if work else None,
                         docs=None if no_docs else str(docs), turns=turns)
    try:
        run = run_bench(config)
    except (ModelDirectoryError, FileNotFoundError, ImportError, RuntimeError, ValueError) as exc:
        _fail(str(exc))
    body = render(run, "polyner bench " + shlex.join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else "polyner bench")
    typer.echo(body)
    if config.docs:
        typer.echo(f"written to {write_docs(config.docs, body)}")
    if any(r.error for r in run.results):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``export``, ``agreement`` and ``bench`` to the ``polyner`` app."""
    app.command("export")(export)
    app.command("agreement")(agreement)
    app.command("bench")(bench)
