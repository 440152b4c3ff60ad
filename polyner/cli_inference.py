"""The fast-inference verbs of the ``polyner`` command line: ``export`` and ``agreement``.

Registered on the main typer app by :func:`register` (called from polyner/cli.py).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def export(model: str = typer.Argument(..., help="Model directory (student or BERT teacher) with model.safetensors."),
           out: Path = typer.Option(..., help="Output directory (HF layout with model.onnx)."),
           format: str = typer.Option("onnx", "--format", help="Export format: onnx."),
           quantize: Optional[str] = typer.Option(None, help="int8: dynamic int8 quantization (default: fp32)."),
           opset: int = typer.Option(17, help="ONNX opset (>= 14)."),
           verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Export a model to ONNX (dynamic batch and sequence axes) that `polyner.load(OUT)` runs with ONNX Runtime."""
    from polyner.models.io import ModelDirectoryError
    from polyner.models.onnx_export import ExportConfig, export_onnx

    _logging(verbose)
    if format != "onnx":
        _fail(f"unknown --format {format!r}: expected onnx")
    if quantize not in (None, "int8"):
        _fail(f"unknown --quantize {quantize!r}: expected int8")
    if opset < 14:
        _fail(f"--opset must be 14 or more, not {opset}")
    try:
        result = export_onnx(ExportConfig(model=model, out=str(out), quantize=quantize, opset=opset))
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


def register(app: typer.Typer) -> None:
    """Add ``export`` and ``agreement`` to the ``polyner`` app."""
    app.command("export")(export)
    app.command("agreement")(agreement)
