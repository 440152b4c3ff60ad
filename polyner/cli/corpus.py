"""``polyner tag-corpus``: tag a large corpus into resumable shards."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from polyner.cli.common import (backend_option, batch_size_option, decoding_option, max_length_option, model_option,
                                setup_logging, split_list, threads_option, verbose_option)
from polyner.errors import UserError

app = typer.Typer()


@app.command("tag-corpus")
def tag_corpus_cmd(
        input: Path = typer.Argument(..., help="JSON lines (.jsonl/.ndjson/.json) or Parquet (.parquet) input."),
        out: Path = typer.Option(..., "--out", "--output", "-o", help="Output directory: part-NNNNN.jsonl shards "
                                 "+ manifest (--output and -o are older spellings)."),
        text_field: str = typer.Option("text", help="The field (JSON key or Parquet column) holding the text."),
        keep: str = typer.Option("id", help="Comma-separated fields copied to the output when present ('' for none)."),
        model: Optional[str] = model_option(),
        backend: Optional[str] = backend_option(),
        threads: int = threads_option(1, help="Intra-op threads of ONNX Runtime or torch, per worker."),
        max_length: Optional[int] = max_length_option(),
        decoding: str = decoding_option(),
        batch_size: int = batch_size_option(),
        engine: str = typer.Option("local", help="local (this process), process (spawned workers) or ray."),
        workers: int = typer.Option(1, help="Worker processes (process) or Ray actors (ray)."),
        shard_size: int = typer.Option(1000, help="Records per output shard (the unit of work and of resume)."),
        address: Optional[str] = typer.Option(None, help="Existing Ray cluster (e.g. auto); default: a local Ray."),
        format: Optional[str] = typer.Option(None, "--format", help="jsonl or parquet (default: from the suffix)."),
        overwrite: bool = typer.Option(False, help="Start again even if --out holds another run's shards."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="A progress bar with rate and ETA."),
        verbose: bool = verbose_option(False)) -> None:
    """Tag a large corpus in bounded memory: ordered, resumable shards with a per-record error field."""
    from polyner.corpus import TagCorpusConfig, tag_corpus

    setup_logging(verbose)
    if address and engine != "ray":
        raise UserError("--address is for --engine ray")
    config = TagCorpusConfig(
        input=str(input), output=str(out), text_field=text_field, keep_fields=tuple(split_list(keep) or ()),
        model=model, backend=backend, engine=engine, workers=workers, threads=threads, batch_size=batch_size,
        max_length=max_length, decoding=decoding, shard_size=shard_size,
        address=address, format=format, overwrite=overwrite, progress=progress)
    summary = tag_corpus(config)
    typer.echo(json.dumps({"output": summary.output, "records": summary.records, "errors": summary.errors,
                           "shards": summary.shards, "shards_skipped": summary.shards_skipped,
                           "docs_per_second": round(summary.docs_per_second, 1),
                           "seconds": round(summary.seconds, 1)}))
