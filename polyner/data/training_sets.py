"""Which labeled files train a model and which select it: gold, silver, and dev splits standing in for train.

Rules (issue 20): every gold train file trains; a gold source/language with dev but no train split
trains on its dev when the language has no gold train file at all (Estonian's estner-new), and that dev
then never selects; silver trains on its train split, or on its dev where it has no train split
(WikiNEuRal), and never selects; test splits never train or select.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Iterable

import numpy as np

from polyner.data.align import EncodedSet, cached_encode, concat_encoded
from polyner.data.iob2 import GoldFile, Sentence, discover_gold, read_iob2
from polyner.languages import TURKISH_CASING
from polyner.tagging.pieces import lower_case


def training_files(gold: str | Path, silver: str | Path | None = None, langs: Iterable[str] | None = None,
                   exclude_sources: Iterable[str] = ()) -> list[GoldFile]:
    """The gold and silver files a model trains on (see the module's rules)."""
    langs = list(langs) if langs is not None else None
    gold_files = discover_gold(gold, langs, ["train", "dev"], exclude_sources)
    chosen = [f for f in gold_files if f.split == "train"]
    with_train = {f.lang for f in chosen}
    chosen += [f for f in gold_files if f.split == "dev" and f.lang not in with_train]
    if silver is not None:
        silver_files = discover_gold(silver, langs, ["train", "dev"], exclude_sources, kind="silver")
        has_train = {(f.source, f.lang) for f in silver_files if f.split == "train"}
        chosen += [f for f in silver_files
                   if f.split == "train" or (f.split == "dev" and (f.source, f.lang) not in has_train)]
    return chosen


def silver_only_without_gold(files: list[GoldFile]) -> list[GoldFile]:
    """``files`` without the silver files of languages that have a gold file among them: there the labels follow
    the gold source's conventions alone."""
    gold_languages = {f.lang for f in files if f.kind != "silver"}
    return [f for f in files if f.kind != "silver" or f.lang not in gold_languages]


def selection_files(gold: str | Path, langs: Iterable[str] | None = None, exclude_sources: Iterable[str] = (),
                    training: Iterable[GoldFile] = ()) -> list[GoldFile]:
    """The gold dev files that choose a checkpoint: every gold dev file not used for training."""
    used = {f.path for f in training}
    return [f for f in discover_gold(gold, list(langs) if langs is not None else None, ["dev"], exclude_sources)
            if f.path not in used]


def selection_sentences(files: Iterable[GoldFile], per_file: int | None) -> list[Sentence]:
    """The dev sentences that choose a checkpoint: at most ``per_file`` of each file, spread evenly over it.

    Not the first ones: a file's opening sentences are often one document (norne nn's first 60 dev sentences
    hold no entity at all, uner sv's 5), which would leave that language's dev score at 0 or at chance.
    """
    chosen: list[Sentence] = []
    for file in files:
        sentences = read_iob2(file.path, file.lang, file.source)
        n = len(sentences)
        if per_file is None or n <= per_file:
            chosen += sentences
        else:
            chosen += [sentences[(2 * i + 1) * n // (2 * per_file)] for i in range(per_file)]
    return chosen


def group_of(file: GoldFile) -> str:
    """The sampling group of a file's sentences: one per kind, source and language."""
    return f"{file.kind}/{file.source}/{file.lang}"


def lowercased(sentences: list[Sentence]) -> list[Sentence]:
    """The sentences with every word in lower case (labels unchanged)."""
    return [replace(s, words=[lower_case(w, s.lang in TURKISH_CASING) for w in s.words]) for s in sentences]


def encode_training_files(tokenizer, files: list[GoldFile], max_length: int, unspaced_runs: str = "words",
                          lowercase_share: float = 0.0, seed: int = 0) -> tuple[EncodedSet, list[str]]:
    """Tokenize each file once (cached per file) as a model reading runs without spaces as ``unspaced_runs`` does
    (:mod:`polyner.tagging.pieces`) and return the sentences with their sampling groups.

    ``lowercase_share`` adds, per file, lower-cased copies of that share of its sentences that have a capital
    (chosen with ``seed``; in the file's group; none in scripts without case), so that a model also learns names from
    text written without capitals (chat, transcripts).
    """
    if not 0.0 <= lowercase_share <= 1.0:
        raise ValueError(f"lowercase_share must be between 0 and 1, not {lowercase_share!r}")
    rng = np.random.default_rng(seed)
    parts, groups = [], []
    for file in files:
        read = (lambda p, f=file: read_iob2(p, f.lang, f.source))
        part = cached_encode(tokenizer, [file.path], read, max_length, unspaced_runs=unspaced_runs)
        parts.append(part)
        groups += [group_of(file)] * len(part)
        if lowercase_share <= 0:
            continue
        sentences = read(file.path)
        cased = [i for i, s in enumerate(sentences)
                 if any(lower_case(w, s.lang in TURKISH_CASING) != w for w in s.words)]
        copies = int(round(lowercase_share * len(cased)))
        if copies:
            lower = cached_encode(tokenizer, [file.path], lambda p, r=read: lowercased(r(p)), max_length,
                                  unspaced_runs=unspaced_runs, variant="lowercase")
            parts.append(lower.subset(sorted(rng.choice(cased, copies, replace=False).tolist())))
            groups += [group_of(file)] * copies
    return concat_encoded(parts), groups


def group_weights(files: list[GoldFile], silver_weight: float) -> dict[str, float]:
    """Sampling pull per file group: 1 for gold, ``silver_weight`` for silver."""
    return {group_of(f): (silver_weight if f.kind == "silver" else 1.0) for f in files}
