"""``polyner tag-corpus``: tag a large JSON-lines or Parquet corpus into ordered, resumable shards."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from polyner.corpus.engines import ENGINES, run_local, run_process, run_ray
from polyner.corpus.reader import CorpusInputError, detect_format, plan_shards
from polyner.corpus.writer import ShardedOutput

if TYPE_CHECKING:
    from polyner.spec import ModelSpec

logger = logging.getLogger(__name__)


@dataclass
class TagCorpusConfig:
    """Settings of one ``polyner tag-corpus`` run."""

    input: str
    output: str
    text_field: str = "text"
    keep_fields: tuple[str, ...] = ("id",)  # copied to the output when a record has them
    model: str | None = None  # None: the shipped default student
    backend: str | None = None  # torch | onnx | onnx-int8; None: from the model directory
    engine: str = "local"  # local | process | ray
    workers: int = 1  # worker processes (process) or actors (ray)
    threads: int = 1  # ONNX Runtime or torch threads per worker
    batch_size: int = 32  # windows per forward pass
    max_length: int | None = None  # pieces per window; None: the model's own
    decoding: str = "viterbi"  # viterbi | argmax
    shard_size: int = 1000  # records per output file, and the unit of work
    address: str | None = None  # an existing Ray cluster
    format: str | None = None  # jsonl | parquet; None: from the suffix
    overwrite: bool = False
    progress: bool = True


@dataclass
class CorpusSummary:
    """What a run did."""

    output: str
    records: int
    errors: int
    shards: int
    shards_skipped: int
    records_tagged: int  # by this run (skipped shards excluded)
    seconds: float
    files: list[str] = field(default_factory=list)

    @property
    def docs_per_second(self) -> float:
        """Records tagged by this run per second of wall time."""
        return self.records_tagged / self.seconds if self.seconds > 0 else 0.0


def model_spec(config: TagCorpusConfig) -> ModelSpec:
    """The run's model, resolved once (located, checked, its backend chosen); every worker builds its tagger from it."""
    from polyner.spec import ModelSpec

    return ModelSpec.resolve(config.model, config.backend, config.threads, batch_size=config.batch_size,
                             max_length=config.max_length, decoding=config.decoding)


def tag_corpus(config: TagCorpusConfig) -> CorpusSummary:
    """Tag every record of ``config.input`` (resuming an interrupted run) and return a summary."""
    if config.engine not in ENGINES:
        raise ValueError(f"unknown engine {config.engine!r}: choose one of {', '.join(ENGINES)}")
    for name in ("workers", "threads", "batch_size", "shard_size"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, not {value!r}")
    if config.engine == "local" and config.workers != 1:
        raise ValueError("the local engine runs in this process: use --engine process or ray for several workers")
    started = time.time()
    fmt = detect_format(config.input, config.format)
    model = model_spec(config)
    specs = plan_shards(config.input, fmt, config.shard_size, config.text_field, tuple(config.keep_fields))
    source = Path(specs[0].path if specs else config.input).expanduser().resolve()
    stat = source.stat()
    settings = {"input": str(source), "input_bytes": stat.st_size, "input_mtime_ns": stat.st_mtime_ns,
                "format": fmt, "text_field": config.text_field, "keep_fields": list(config.keep_fields),
                "shard_size": config.shard_size, "model": str(model.path.resolve()), "backend": model.backend,
                "max_length": config.max_length, "decoding": config.decoding}
    output = ShardedOutput(config.output, settings, len(specs), config.overwrite)
    todo = [spec for spec in specs if not output.is_done(spec.shard)]
    total = sum(spec.count for spec in specs)
    skipped = total - sum(spec.count for spec in todo)
    if skipped:
        logger.info("resuming: %d of %d shards already written", len(specs) - len(todo), len(specs))
    if todo:  # an export or torch rebuild is made here once, not by every worker
        model = model.prepare()
    if not todo:
        results = iter(())
    elif config.engine == "local":
        results = run_local(todo, model)
    elif config.engine == "process":
        results = run_process(todo, model, config.workers)
    else:
        results = run_ray(todo, model, config.workers, config.address)
    tagged = 0
    with tqdm(total=total, initial=skipped, unit="doc", desc="tag-corpus", disable=not config.progress,
              smoothing=0.1) as bar:
        for result in results:
            output.write(result.shard, result.lines, result.errors)
            tagged += len(result.lines)
            bar.update(len(result.lines))
    totals = output.finish(len(specs))
    return CorpusSummary(output=str(output.folder), records=totals["records"], errors=totals["errors"],
                         shards=len(specs), shards_skipped=len(specs) - len(todo), records_tagged=tagged,
                         seconds=time.time() - started, files=totals["files"])


__all__ = ["CorpusInputError", "CorpusSummary", "TagCorpusConfig", "tag_corpus"]
