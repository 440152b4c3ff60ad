"""Readers for CoNLL/IOB2 files and the gold corpus layout ``source/lang/split.iob2``."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from polyner.labels import normalize_tag, repair_iob2

logger = logging.getLogger(__name__)
SPLITS = ("train", "dev", "test")


@dataclass
class Sentence:
    """One sentence of words with their IOB2 tags and where it came from."""

    words: list[str]
    tags: list[str]
    lang: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.words) != len(self.tags):
            raise ValueError(f"{len(self.words)} words but {len(self.tags)} tags")


@dataclass(frozen=True)
class GoldFile:
    """One split file of one language of one gold source."""

    source: str
    lang: str
    split: str
    path: Path
    kind: str = "gold"  # "gold" (human-annotated) or "silver" (automatic labels)


def read_iob2(path: str | Path, lang: str = "", source: str = "") -> list[Sentence]:
    """Read a CoNLL-style file: a word and its tag per line (tag last), blank line between sentences.

    Lines starting with ``-DOCSTART-`` are skipped; tags are normalised onto PER/ORG/LOC IOB2.
    """
    path = Path(path)
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []

    def flush() -> None:
        if words:
            sentences.append(Sentence(list(words), repair_iob2(tags), lang, source))
        words.clear()
        tags.clear()

    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                flush()
                continue
            if line.startswith("-DOCSTART-"):
                continue
            parts = line.split("\t") if "\t" in line else line.split()
            if len(parts) < 2:
                raise ValueError(f"{path}:{number}: expected 'word<TAB>tag', got {line!r}")
            words.append(parts[0])
            tags.append(normalize_tag(parts[-1]))
    flush()
    return sentences


def discover_gold(root: str | Path, langs: Iterable[str] | None = None, splits: Iterable[str] = SPLITS,
                  exclude_sources: Iterable[str] = (), kind: str = "gold") -> list[GoldFile]:
    """List the files under ``root`` (``source/lang/split.iob2``), filtered by language and split.

    ``kind`` says what the root holds (``gold`` or ``silver``); the files carry it.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{kind} data directory not found: {root}")
    wanted_langs = set(langs) if langs is not None else None
    wanted_splits = set(splits)
    excluded = set(exclude_sources)
    found = []
    for path in sorted(root.glob("*/*/*.iob2")):
        split, lang, source = path.stem, path.parent.name, path.parent.parent.name
        if split not in wanted_splits or source in excluded:
            continue
        if wanted_langs is not None and lang not in wanted_langs:
            continue
        found.append(GoldFile(source, lang, split, path, kind))
    return found


def read_gold(files: Iterable[GoldFile], max_per_file: int | None = None) -> Iterator[Sentence]:
    """Yield the sentences of several gold files, at most ``max_per_file`` from each."""
    for gold in files:
        sentences = read_iob2(gold.path, gold.lang, gold.source)
        yield from sentences[:max_per_file] if max_per_file else sentences
