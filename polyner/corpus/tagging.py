"""Tag the records of one shard into output JSON lines; the unit of work of every engine.

A shard is always tagged as one list of texts, whatever the engine, so the windows are batched
the same way and the results of the local, multiprocessing and Ray paths are identical.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from polyner.corpus.reader import InputRecord, ShardSpec, read_shard
from polyner.textcheck import lone_surrogate, one_json_line

if TYPE_CHECKING:
    from polyner.spec import ModelSpec

logger = logging.getLogger(__name__)


@dataclass
class ShardResult:
    """The output lines of one shard, in input order, and how many records carry an error."""

    shard: int
    lines: list[str]
    errors: int


def _dumps(value: Any) -> str:
    """Strict JSON (no NaN) that is valid UTF-8; raises ValueError or TypeError (UnicodeEncodeError included)."""
    text = one_json_line(json.dumps(value, ensure_ascii=False, allow_nan=False, default=str))
    text.encode("utf-8")  # a lone surrogate (from a "\\ud800" escape in the input) cannot be written
    return text


def _unwritable(value: Any) -> str | None:
    """Why ``value`` cannot be written as a JSON value in UTF-8, or None when it can."""
    try:
        _dumps(value)
    except UnicodeEncodeError as exc:
        found = lone_surrogate(value) if isinstance(value, str) else None
        return f"{found or f'a lone surrogate U+{ord(exc.object[exc.start]):04X}'} (not valid Unicode)"
    except (ValueError, TypeError, RecursionError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def output_line(record: InputRecord, text_field: str, entities: list[dict] | None,
                error: str | None) -> tuple[str, str | None]:
    """One output record (index, kept fields, the text, the entities or null, the error or null) and its error.

    A field that cannot be written (a lone surrogate, NaN) is written as null and the record gets an error
    naming it; the record is never lost.
    """
    row: dict[str, Any] = {"index": record.index, **record.fields, text_field: record.text,
                           "entities": entities, "error": error}
    try:
        return _dumps(row), error
    except (ValueError, TypeError, RecursionError):
        pass
    problems = []
    for name, value in row.items():
        problem = _unwritable(value) if name not in ("index", "entities", "error") else None
        if problem:
            problems.append(f"field {name!r} cannot be written: {problem}")
            row[name] = None
    row["entities"] = None
    row["error"] = "; ".join(([error] if error else []) + problems)
    return json.dumps(row, ensure_ascii=True, default=str), row["error"]  # ASCII: writable whatever is left


def tag_records(tagger, records: list[InputRecord], text_field: str) -> tuple[list[str], int]:
    """Tag the good records together; a record the tagger refuses gets its own error, the rest are kept."""
    good = [r for r in records if r.error is None]
    try:
        found = dict(zip((r.index for r in good), tagger([r.text for r in good])))
        failed: dict[int, str] = {}
    except Exception:  # find the culprit(s): tag one by one
        found, failed = {}, {}
        for record in good:
            try:
                found[record.index] = tagger([record.text])[0]
            except Exception as exc:
                failed[record.index] = f"tagging failed: {type(exc).__name__}: {exc}"
                logger.warning("record %d: %s", record.index, failed[record.index])
    lines, errors = [], 0
    for record in records:
        tagged = record.error or failed.get(record.index)
        line, error = output_line(record, text_field, None if tagged else found[record.index], tagged)
        if error != tagged:
            logger.warning("record %d: %s", record.index, error)
        errors += error is not None
        lines.append(line)
    return lines, errors


class ShardTagger:
    """Builds the tagger of a :class:`~polyner.spec.ModelSpec` once, then tags whole shards; one per worker process
    or Ray actor (the spec's threads are that worker's: an ONNX model never imports torch)."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.tagger = spec.build()

    def __call__(self, spec: ShardSpec) -> ShardResult:
        """Read and tag one shard."""
        lines, errors = tag_records(self.tagger, read_shard(spec), spec.text_field)
        return ShardResult(spec.shard, lines, errors)
