"""WikiAnn (PAN-X) through ``datasets.load_dataset("unimelb-nlp/wikiann", lang)``."""
from __future__ import annotations

from polyner.data.iob2 import Sentence
from polyner.labels import normalize_tag, repair_iob2

WIKIANN = "unimelb-nlp/wikiann"
WIKIANN_SPLITS = {"train": "train", "dev": "validation", "test": "test"}


def load_wikiann(lang: str, split: str = "test", path: str = WIKIANN, limit: int | None = None) -> list[Sentence]:
    """Load one WikiAnn split as sentences; ``path`` may be the hub name or a local copy.

    A local copy is either a directory written by ``DatasetDict.save_to_disk`` (with one
    sub-directory per language) or any path ``datasets.load_dataset`` understands.
    """
    import datasets
    from pathlib import Path

    hf_split = WIKIANN_SPLITS.get(split, split)
    local = Path(path)
    if (local / lang / "dataset_dict.json").exists():
        data = datasets.load_from_disk(str(local / lang))[hf_split]
    elif (local / "dataset_dict.json").exists():
        data = datasets.load_from_disk(str(local))[hf_split]
    else:
        data = datasets.load_dataset(path, lang, split=hf_split)
    names = data.features["ner_tags"].feature.names
    rows = data if limit is None else data.select(range(min(limit, len(data))))
    sentences = []
    for row in rows:
        tags = repair_iob2([normalize_tag(names[t]) for t in row["ner_tags"]])
        sentences.append(Sentence(list(row["tokens"]), tags, lang, "wikiann"))
    return sentences
