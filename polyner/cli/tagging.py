"""``polyner tag`` and ``polyner models``: tag texts with one model, list the models on this machine."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from polyner.cli.common import (backend_option, batch_size_option, decoding_option, max_length_option, model_option,
                                model_spec, setup_logging, text_lines, threads_option, verbose_option)
from polyner.errors import UserError
from polyner.textcheck import lone_surrogate, one_json_line

app = typer.Typer()


@app.command()
def tag(texts: List[str] = typer.Argument(None, help="Texts to tag; none: read --file or standard input."),
        file: Optional[Path] = typer.Option(None, "--file", "-f", help="A text file, one text per line."),
        model: Optional[str] = model_option(),
        backend: Optional[str] = backend_option(),
        threads: Optional[int] = threads_option(),
        max_length: Optional[int] = max_length_option(),
        decoding: str = decoding_option(),
        batch_size: int = batch_size_option(),
        verbose: bool = verbose_option(False)) -> None:
    """Tag texts and write one JSON line per text: {"text": ..., "entities": [...]}."""
    setup_logging(verbose)
    if texts and file is not None:
        raise UserError("give texts or --file, not both")
    if texts:
        lines = list(texts)
        for i, text in enumerate(lines, 1):
            problem = lone_surrogate(text)  # bytes that are not UTF-8 reach argv as lone surrogates
            if problem:
                raise UserError(f"text argument {i} is not valid UTF-8 ({problem})")
    elif file is not None:
        if not file.exists():
            raise UserError(f"input file not found: {file}")
        if not file.is_file():
            raise UserError(f"--file is not a file: {file}")
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise UserError(f"cannot read {file}: {exc.strerror or exc}") from None
        lines = text_lines(data, str(file))
    else:
        lines = text_lines(sys.stdin.buffer.read(), "standard input")
    tagger = model_spec(model, backend, threads, max_length, decoding, batch_size).build()
    for text, entities in zip(lines, tagger(lines)):
        line = json.dumps({"text": text, "entities": entities}, ensure_ascii=False)
        sys.stdout.write(one_json_line(line) + "\n")


@app.command()
def models() -> None:
    """List the models on this machine that --model takes by name: the shipped default, built teachers and models
    in $POLYNER_HOME, cached ONNX exports and torch rebuilds, hub repositories in the local cache."""
    from polyner.loading import local_models

    found = local_models()
    if not found:
        typer.echo("no local models")
        return
    width = max(len(m.name) for m in found)
    kinds = max(len(m.kind) for m in found)
    for m in found:
        where = "" if m.name == str(m.path) else f"  {m.path}"
        typer.echo(f"{m.name:<{width}}  {m.kind:<{kinds}}  {m.backend:<9}  {m.size_mb:7.1f} MB{where}")
