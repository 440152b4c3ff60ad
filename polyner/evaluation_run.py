"""What ``polyner evaluate`` does: load models, read the data, score per language, write the tables."""
from __future__ import annotations

import logging
import platform
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from polyner.data.iob2 import Sentence, discover_gold, read_gold, read_iob2
from polyner.evaluate import ResultTable, evaluate_by_language, write_section

logger = logging.getLogger(__name__)


@dataclass
class EvaluationRequest:
    """Models, data and output of one evaluation run."""

    models: list[str]
    data: str
    splits: list[str] = field(default_factory=lambda: ["test"])
    langs: list[str] | None = None
    names: list[str] | None = None
    max_sentences: int | None = None
    wikiann_path: str = "unimelb-nlp/wikiann"
    results: str = "docs/results.md"
    section: str | None = None
    batch_size: int = 64
    decoding: str = "viterbi"  # the Tagger's word-label decoding: "viterbi" (IOB2-constrained) or "argmax"
    max_length: int | None = None  # pieces per window; None: each model's own (ner_max_length, else 128)


def load_split(request: EvaluationRequest, split: str) -> tuple[list[Sentence], str]:
    """The sentences of one split and a description of where they came from."""
    data = Path(request.data)
    if request.data == "wikiann" or request.data.startswith("wikiann:"):
        from polyner.data.wikiann import load_wikiann

        if not request.langs:
            raise ValueError("WikiAnn needs --langs")
        sentences = [s for lang in request.langs
                     for s in load_wikiann(lang, split, request.wikiann_path, request.max_sentences)]
        return sentences, f"WikiAnn ({request.wikiann_path})"
    if data.is_file():
        lang = request.langs[0] if request.langs else data.parent.name
        sentences = read_iob2(data, lang, data.parent.parent.name)[:request.max_sentences]
        return sentences, str(data)
    files = discover_gold(data, request.langs, [split])
    if not files:
        raise ValueError(f"no {split} files under {data} for languages {request.langs or 'any'}")
    sources = sorted({f"{f.source}/{f.lang}" for f in files})
    return list(read_gold(files, request.max_sentences)), f"{data.name}: {', '.join(sources)}"


def run_evaluation(request: EvaluationRequest) -> str:
    """Score every model on every split; return the markdown and write it into the results file."""
    import polyner

    names = request.names or [Path(m).name for m in request.models]
    if len(names) != len(request.models):
        raise ValueError(f"{len(request.models)} models but {len(names)} names")
    taggers = [polyner.load(m, batch_size=request.batch_size, decoding=request.decoding, max_length=request.max_length)
               for m in request.models]
    windows = ", ".join(f"{name} {tagger.config.max_length}" for name, tagger in zip(names, taggers))
    blocks = []
    for split in request.splits:
        sentences, origin = load_split(request, split)
        table = ResultTable(split, names)
        for tagger in taggers:
            table.scores.append(evaluate_by_language(tagger.tag_words, sentences))
        cap = f", at most {request.max_sentences} sentences per file" if request.max_sentences else ""
        blocks.append(f"### {' vs '.join(names)} on {split}\n\nData: {origin}{cap}. Word-level seqeval, "
                      f"mode=strict, scheme=IOB2; word labels decoded by {request.decoding}; windows of "
                      f"at most ({windows}) pieces. Measured "
                      f"{date.today().isoformat()} on {platform.machine()}, command `polyner evaluate`.\n\n{table.markdown()}\n")
    body = "\n".join(blocks)
    section = request.section or "-".join(names) + ":" + "-".join(request.splits)
    write_section(request.results, section, body)
    return body
