"""Model files: ``polyner export`` (ONNX and back), ``pack`` (the shipped copy) and ``card`` (its model card)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from polyner.cli.common import needs, one_model, setup_logging, verbose_option
from polyner.errors import UserError

app = typer.Typer()
#: The older spelling of ``--model``: the model as the first argument (still accepted, hidden from --help).
OLD_POSITIONAL = typer.Argument(None, hidden=True, show_default=False)


@app.command()
def export(model: Optional[str] = typer.Option(None, "--model", "-m", help="Model directory or name: a student or "
                                               "BERT teacher with model.safetensors (--format onnx), or an ONNX "
                                               "export such as the default (--format torch)."),
           out: Path = typer.Option(..., help="Output directory (HF layout with model.onnx, or model.safetensors)."),
           format: str = typer.Option("onnx", "--format", help="onnx, or torch: the torch weights of an ONNX "
                                      "export read back (dequantized when int8), for fine-tuning or distilling."),
           quantize: Optional[str] = typer.Option(None, help="int8: int8 weights, activations quantized on the fly "
                                                  "(default: fp32)."),
           per_channel: bool = typer.Option(True, "--per-channel/--per-tensor", help="int8 weight scales."),
           quantize_embeddings: bool = typer.Option(True, "--quantize-embeddings/--fp32-embeddings",
                                                    help="int8: quantize the word embeddings too."),
           activation_scales: Optional[str] = typer.Option(None, help="int8 activations: per-token (the default: a "
                                                           "sentence's result does not depend on its batch) or "
                                                           "per-batch (onnxruntime's, faster)."),
           opset: int = typer.Option(17, help="ONNX opset (>= 14)."),
           verbose: bool = verbose_option(False),
           model_argument: Optional[str] = OLD_POSITIONAL) -> None:
    """Export a model to ONNX (dynamic batch and sequence axes) that `polyner.load(OUT)` runs with ONNX Runtime,
    or (--format torch) an ONNX export back to torch weights."""
    needs("export", "export")
    setup_logging(verbose)
    from polyner.loading import locate_model

    if format not in ("onnx", "torch"):
        raise UserError(f"unknown --format {format!r}: expected onnx or torch")
    model = str(locate_model(one_model(model, model_argument)))
    if format == "torch":
        from polyner.models.onnx_weights import write_torch_directory

        folder = write_torch_directory(Path(model), out)
        typer.echo(f"{folder}/model.safetensors ({(folder / 'model.safetensors').stat().st_size / 1e6:.1f} MB, float32)")
        return
    from polyner.models.backend import torch_directory
    from polyner.models.onnx_export import ExportConfig, export_onnx
    from polyner.models.onnx_quantize import ACTIVATION_SCALES

    if quantize not in (None, "int8"):
        raise UserError(f"unknown --quantize {quantize!r}: expected int8")
    if activation_scales is not None and quantize != "int8":
        raise UserError("--activation-scales applies to --quantize int8 only")
    if activation_scales not in (None, *ACTIVATION_SCALES):
        raise UserError(f"unknown --activation-scales {activation_scales!r}: expected {' or '.join(ACTIVATION_SCALES)}")
    if opset < 14:
        raise UserError(f"--opset must be 14 or more, not {opset}")
    try:
        source = str(torch_directory(model))  # an ONNX-only model: its torch weights read back
        result = export_onnx(ExportConfig(model=source, out=str(out), quantize=quantize, opset=opset,
                                          per_channel=per_channel, quantize_embeddings=quantize_embeddings,
                                          activation_scales=activation_scales or ACTIVATION_SCALES[0]))
    except (RuntimeError, ValueError) as exc:  # the graph disagrees with torch, or the rewrite refused it
        raise UserError(str(exc)) from exc
    typer.echo(f"{result.path}/model.onnx ({result.quantization or 'fp32'}, {result.size_bytes / 1e6:.1f} MB; "
               f"fp32 graph vs torch: max |logit diff| {result.fp32_max_abs_diff:.1e}; "
               f"argmax agreement on random inputs {100 * result.argmax_agreement:.2f}%)")


@app.command()
def pack(model: Optional[str] = typer.Option(None, "--model", "-m",
                                             help="A trained student directory (polyner distill --out)."),
         out: Path = typer.Option(..., help="Where to write the shipped copy (e.g. polyner/default)."),
         onnx: str = typer.Option("int8", help="The shipped ONNX model: int8 (the default; activations quantized "
                                  "per token) or fp32."),
         title: str = typer.Option("polyner student", help="Title of the model card."),
         results: Optional[Path] = typer.Option(None, help="A markdown file with the quality table for the card."),
         speed: Optional[Path] = typer.Option(None, help="A markdown file with the speed table for the card (the "
                                              "<!-- polyner:speed --> part of benchmarks/distill_report.py --out)."),
         verbose: bool = verbose_option(True),
         model_argument: Optional[str] = OLD_POSITIONAL) -> None:
    """Pack a student for shipping: its ONNX model (int8; torch weights are read back from it when needed),
    config, tokenizer and a model card; no training files."""
    needs("pack", "train")
    from polyner.distill.package import ONNX_KINDS, card_for_student, directory_size_mb, marked_section, pack_model

    from polyner.loading import locate_model

    setup_logging(verbose)
    if onnx not in ONNX_KINDS:
        raise UserError(f"--onnx must be one of {', '.join(ONNX_KINDS)}, not {onnx}")
    source = locate_model(one_model(model, model_argument))  # a directory or a name, as every --model
    try:
        folder = pack_model(source, out, onnx)
    except RuntimeError as exc:  # the ONNX export failed its check
        raise UserError(str(exc)) from exc
    if (source / "training_log.json").exists():
        card_for_student(source, folder, title, results.read_text(encoding="utf-8") if results else "",
                         speed_markdown=marked_section(speed.read_text(encoding="utf-8"), "speed") if speed else "")
    typer.echo(f"{folder} ({directory_size_mb(folder):.1f} MB)")


@app.command()
def card(model: Optional[str] = typer.Option(None, "--model", "-m",
                                             help="A model directory with a card (README.md), e.g. polyner/default."),
         results: Optional[Path] = typer.Option(None, help="A markdown file with the quality table (e.g. the one "
                                                "polyner evaluate --write wrote)."),
         section: Optional[str] = typer.Option(None, help="The <!-- polyner:NAME --> section of --results to use "
                                               "(default: the whole file)."),
         speed: Optional[Path] = typer.Option(None, help="A markdown file with the speed table (the "
                                              "<!-- polyner:speed --> part of benchmarks/distill_report.py --out)."),
         model_argument: Optional[str] = OLD_POSITIONAL) -> None:
    """Rewrite the quality and speed sections of a model card from fresh figures, keeping the rest."""
    from polyner.distill.model_card import refresh_model_card
    from polyner.distill.package import marked_section
    from polyner.loading import resolve_model

    model = one_model(model, model_argument)
    if results is None and speed is None:
        raise UserError("nothing to write: give --results and/or --speed")
    folder = resolve_model(model)  # a directory or a name, as every --model (only the card needs to be there)
    for given in (results, speed):
        if given is not None and not given.is_file():
            raise UserError(f"file not found: {given}")
    quality = ""
    if results is not None:
        text = results.read_text(encoding="utf-8")
        if section and f"<!-- polyner:{section} -->" not in text:
            raise UserError(f"no section {section!r} in {results}")
        quality = marked_section(text, section) if section else text
    path = refresh_model_card(folder, quality,
                              marked_section(speed.read_text(encoding="utf-8"), "speed") if speed else "")
    typer.echo(str(path))
