"""Ordered, sharded, resumable output: ``OUT/part-00000.jsonl`` ... plus ``manifest.json`` and a journal.

Each shard file is written to a temporary name and renamed, so a shard file is either complete or
absent; after the rename one line is appended to ``progress.jsonl`` (the journal). A rerun with the
same settings skips the shards the journal lists whose files exist. Reading the part files in name
order gives the records in input order.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from polyner.errors import UserError

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
JOURNAL = "progress.jsonl"
FORMAT_NAME = "polyner-tagged-corpus"


class CorpusOutputError(UserError, ValueError):
    """The output directory holds the results of another run, or cannot be written."""


TEMPORARY = ("part-*.jsonl.tmp", MANIFEST + ".tmp")


def _write_atomic(path: Path, text: str) -> None:
    """Write ``path`` through a temporary file and a rename; the temporary file never outlives a failure."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class ShardedOutput:
    """The output directory of one tagging run; ``settings`` must match for a run to resume into it."""

    def __init__(self, folder: str | Path, settings: dict[str, Any], n_shards: int, overwrite: bool = False) -> None:
        self.folder = Path(folder)
        self.settings = settings
        self.width = max(5, len(str(max(n_shards - 1, 0))))
        self.done: dict[int, dict] = {}
        if self.folder.exists() and not self.folder.is_dir():
            raise CorpusOutputError(f"output {self.folder} is a file, not a directory")
        manifest_path = self.folder / MANIFEST
        if manifest_path.exists() and not overwrite:
            try:
                previous = json.loads(manifest_path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise CorpusOutputError(f"corrupt {manifest_path} ({exc}): remove it or pass --overwrite") from exc
            if previous.get("settings") != settings:
                changed = sorted(k for k in set(settings) | set(previous.get("settings", {}))
                                 if previous.get("settings", {}).get(k) != settings.get(k))
                raise CorpusOutputError(
                    f"{self.folder} holds the output of a different run (changed: {', '.join(changed)}); "
                    "use another --output, or --overwrite to start again")
            self.done = self._read_journal()
            self._remove_temporary()  # left by a run that was killed mid-write
        elif overwrite or any(self.folder.glob("part-*.jsonl")):
            if not overwrite:
                raise CorpusOutputError(f"{self.folder} has part files but no {MANIFEST}: not a polyner output "
                                        "directory; use another --output, or --overwrite")
            self._clear()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write_manifest({"complete": False})

    def _clear(self) -> None:
        for pattern in ("part-*.jsonl", MANIFEST, JOURNAL, *TEMPORARY):
            for path in self.folder.glob(pattern):
                path.unlink()

    def _remove_temporary(self) -> None:
        for pattern in TEMPORARY:
            for path in self.folder.glob(pattern):
                path.unlink(missing_ok=True)

    def _read_journal(self) -> dict[int, dict]:
        done: dict[int, dict] = {}
        path = self.folder / JOURNAL
        if not path.exists():
            return done
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:  # a line torn by an interruption: its shard is redone
                continue
            if (self.folder / self.file_name(entry["shard"])).exists():
                done[entry["shard"]] = entry
        return done

    def _write_manifest(self, extra: dict) -> None:
        manifest = {"format": FORMAT_NAME, "version": 1, "settings": self.settings, **extra}
        _write_atomic(self.folder / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")

    def file_name(self, shard: int) -> str:
        """The name of a shard's file, e.g. ``part-00003.jsonl``."""
        return f"part-{shard:0{self.width}d}.jsonl"

    def is_done(self, shard: int) -> bool:
        """Whether this shard was completely written by this or an earlier run."""
        return shard in self.done

    def write(self, shard: int, lines: list[str], errors: int) -> None:
        """Write one shard's output lines atomically, then record it in the journal."""
        _write_atomic(self.folder / self.file_name(shard), "".join(line + "\n" for line in lines))
        entry = {"shard": shard, "records": len(lines), "errors": errors}
        with (self.folder / JOURNAL).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.done[shard] = entry

    def finish(self, n_shards: int) -> dict[str, Any]:
        """Mark the run complete in the manifest once every shard is written; return the totals."""
        missing = [s for s in range(n_shards) if s not in self.done]
        if missing:
            raise CorpusOutputError(f"{len(missing)} shards were not written (first: {missing[0]})")
        totals = {"complete": True, "shards": n_shards,
                  "records": sum(e["records"] for e in self.done.values()),
                  "errors": sum(e["errors"] for e in self.done.values()),
                  "files": [self.file_name(s) for s in range(n_shards)]}
        self._write_manifest(totals)
        return totals
