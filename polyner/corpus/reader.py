"""Streaming corpus input: JSON lines or Parquet, cut into shards of records that any process can read alone.

:func:`plan_shards` scans the input once (a line scan for JSON lines, the footer for Parquet) and
returns one small :class:`ShardSpec` per ``shard_size`` records; :func:`read_shard` reads the records
of one shard, so memory is bounded by the shard, and local, multiprocessing and Ray workers read
their own shards. A record that cannot be tagged (invalid JSON, no text field, a non-string text)
becomes an :class:`InputRecord` with an ``error`` instead of stopping the run.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyner.errors import UserError
from polyner.textcheck import lone_surrogate

logger = logging.getLogger(__name__)

FORMATS = ("jsonl", "parquet")
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
RESERVED_FIELDS = ("index", "entities", "error")


class CorpusInputError(UserError, ValueError):
    """The input cannot be read as a whole: missing, unreadable, of an unknown format, or without the text column."""


@dataclass(frozen=True)
class ShardSpec:
    """Where the records ``start .. start + count - 1`` of the input are, and how to read them."""

    path: str
    format: str
    shard: int
    start: int  # index of the shard's first record in the input
    count: int
    offset: int = 0  # byte offset of the shard's first line (JSON lines)
    text_field: str = "text"
    keep_fields: tuple[str, ...] = ()


@dataclass
class InputRecord:
    """One input record: its index in the input, its text, the fields to carry over, or why it cannot be tagged."""

    index: int
    text: str | None
    fields: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def detect_format(path: str | Path, format: str | None = None) -> str:
    """``jsonl`` or ``parquet``: ``format`` when given, else from the file suffix."""
    if format is not None:
        if format not in FORMATS:
            raise CorpusInputError(f"unknown input format {format!r}: choose one of {', '.join(FORMATS)}")
        return format
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise CorpusInputError(f"cannot tell the format of {path} from its suffix {suffix!r}: name it "
                               f"{', '.join(SUFFIXES)} or pass --format {'|'.join(FORMATS)}")
    return SUFFIXES[suffix]


def check_fields(text_field: str, keep_fields: tuple[str, ...]) -> None:
    """Refuse field names that would collide with the output's own keys."""
    if not text_field:
        raise CorpusInputError("the text field name is empty")
    for name in (text_field, *keep_fields):
        if name in RESERVED_FIELDS:
            raise CorpusInputError(f"field {name!r} collides with an output key ({', '.join(RESERVED_FIELDS)}); "
                                   "rename it in the input")
    if text_field in keep_fields:
        raise CorpusInputError(f"the text field {text_field!r} is always written; do not list it in the kept fields")


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise CorpusInputError(f"input file not found: {path}")
    if not path.is_file():
        raise CorpusInputError(f"input is not a file: {path}")
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise CorpusInputError(f"cannot read input file {path}: {exc}") from exc


def _open_parquet(path: Path):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(str(path))
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
        raise CorpusInputError(f"cannot read {path} as Parquet: {exc}") from exc


def plan_shards(path: str | Path, format: str, shard_size: int, text_field: str = "text",
                keep_fields: tuple[str, ...] = ()) -> list[ShardSpec]:
    """Cut the input into shards of ``shard_size`` records (the last one may be shorter)."""
    if shard_size < 1:
        raise CorpusInputError(f"shard size must be at least 1, not {shard_size}")
    path = Path(path).expanduser().resolve()
    _check_readable(path)
    check_fields(text_field, keep_fields)
    common = dict(path=str(path), format=format, text_field=text_field, keep_fields=tuple(keep_fields))
    specs: list[ShardSpec] = []
    if format == "parquet":
        parquet = _open_parquet(path)
        names = parquet.schema_arrow.names
        if text_field not in names:
            raise CorpusInputError(f"{path} has no column {text_field!r} (columns: {', '.join(names)}); "
                                   "name the text column with --text-field")
        total = parquet.metadata.num_rows
        for shard, start in enumerate(range(0, total, shard_size)):
            specs.append(ShardSpec(shard=shard, start=start, count=min(shard_size, total - start), **common))
        return specs
    index, offset, shard_offset = 0, 0, 0
    with path.open("rb") as handle:
        for line in handle:
            if index % shard_size == 0:
                shard_offset = offset
            offset += len(line)
            index += 1
            if index % shard_size == 0:
                specs.append(ShardSpec(shard=len(specs), start=index - shard_size, count=shard_size,
                                       offset=shard_offset, **common))
    if index % shard_size:
        specs.append(ShardSpec(shard=len(specs), start=index - index % shard_size, count=index % shard_size,
                               offset=shard_offset, **common))
    return specs


def _describe(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def make_record(index: int, row: Any, text_field: str, keep_fields: tuple[str, ...]) -> InputRecord:
    """Check one parsed row: it must be an object whose ``text_field`` is a string."""
    if not isinstance(row, dict):
        return InputRecord(index, None, error=f"record is a JSON {_describe(row)}, not an object")
    kept = {name: row[name] for name in keep_fields if name in row}
    if text_field not in row:
        return InputRecord(index, None, kept, f"no {text_field!r} field")
    text = row[text_field]
    if not isinstance(text, str):
        return InputRecord(index, None, kept, f"field {text_field!r} is {_describe(text)}, not a string")
    problem = lone_surrogate(text)  # a JSON escape such as "\ud800": the tagger refuses it, nothing could write it
    if problem:
        return InputRecord(index, None, kept, f"field {text_field!r} is not valid Unicode: {problem}")
    return InputRecord(index, text, kept)


def parse_line(index: int, raw: bytes, text_field: str, keep_fields: tuple[str, ...]) -> InputRecord:
    """One JSON line (bytes, newline included or not) as a record, or a record with the reason it is bad."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return InputRecord(index, None, error=f"line is not valid UTF-8 ({exc.reason} at byte {exc.start})")
    if not line.strip():
        return InputRecord(index, None, error="blank line")
    try:
        row = json.loads(line)
    except ValueError as exc:
        return InputRecord(index, None, error=f"invalid JSON: {exc}")
    return make_record(index, row, text_field, keep_fields)


def _read_jsonl(spec: ShardSpec) -> list[InputRecord]:
    records = []
    with open(spec.path, "rb") as handle:
        handle.seek(spec.offset)
        for i in range(spec.count):
            raw = handle.readline()
            if not raw:
                raise CorpusInputError(f"{spec.path} ended at record {spec.start + i} but {spec.start + spec.count} "
                                       "were planned: the file changed during the run")
            records.append(parse_line(spec.start + i, raw, spec.text_field, spec.keep_fields))
    return records


def _read_parquet(spec: ShardSpec, read_rows: int = 8192) -> list[InputRecord]:
    parquet = _open_parquet(Path(spec.path))
    names = set(parquet.schema_arrow.names)
    columns = [spec.text_field] + [name for name in spec.keep_fields if name in names]
    groups, first_row, row = [], None, 0
    for g in range(parquet.metadata.num_row_groups):  # the row groups that overlap the shard
        n = parquet.metadata.row_group(g).num_rows
        if row + n > spec.start and row < spec.start + spec.count:
            groups.append(g)
            first_row = row if first_row is None else first_row
        row += n
    records: list[InputRecord] = []
    position = first_row or 0
    for batch in parquet.iter_batches(batch_size=read_rows, row_groups=groups, columns=columns):
        lo, hi = max(spec.start - position, 0), min(spec.start + spec.count - position, batch.num_rows)
        if lo < hi:
            for offset, item in enumerate(batch.slice(lo, hi - lo).to_pylist()):
                records.append(make_record(position + lo + offset, item, spec.text_field, spec.keep_fields))
        position += batch.num_rows
        if position >= spec.start + spec.count:
            break
    return records


def read_shard(spec: ShardSpec) -> list[InputRecord]:
    """The records of one shard, in input order."""
    return _read_parquet(spec) if spec.format == "parquet" else _read_jsonl(spec)
