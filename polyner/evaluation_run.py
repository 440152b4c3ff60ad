"""What ``polyner evaluate`` does: load models, read the data, score per language, return (and, when asked,
write) the tables."""
from __future__ import annotations

import logging
import platform
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable

from polyner.data.iob2 import GoldFile, Sentence, discover_gold, read_gold, read_iob2
from polyner.evaluate import (READINGS, UNSPACED_LANGUAGES, ResultTable, Scores, evaluate_by_language,
                              evaluate_text_by_language, write_section)

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
    results: str | None = None  # a markdown file to write the tables into (as a section); None: only return them
    section: str | None = None
    batch_size: int = 64
    decoding: str = "viterbi"  # the Tagger's word-label decoding: "viterbi" (IOB2-constrained) or "argmax"
    max_length: int | None = None  # pieces per window; None: each model's own (ner_max_length, else 128)
    backend: str | None = None  # "torch", "onnx" or "onnx-int8" for every model; None: from each directory
    threads: int | None = None  # intra-op threads of ONNX Runtime or torch; None: all cores
    silver: str | None = None  # silver root: its test files get a table of their own, never mixed with gold
    coverage: bool = False  # add the per-target-language table: training data kind and test F1 of each model
    progress: bool = True  # a progress bar on a terminal (tqdm; shown after a couple of seconds)
    reading: str = "words"  # "words": each sentence's own words; "text": its words joined as raw text

    def __post_init__(self) -> None:
        if self.reading not in READINGS:
            raise ValueError(f"--input (reading) must be one of {', '.join(READINGS)}, not {self.reading!r}")


def load_split(request: EvaluationRequest, split: str) -> tuple[list[Sentence], str]:
    """The sentences of one split and a description of where they came from."""
    data = Path(request.data)
    if request.data == "wikiann" or request.data.startswith("wikiann:"):
        from polyner.data.wikiann import load_wikiann

        if not request.langs:
            raise ValueError("WikiAnn needs --languages")
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


def silver_test_files(root: str | Path, langs: list[str] | None) -> list[GoldFile]:
    """Silver test files; where a source/language has none, its dev split stands in when a train split exists
    (then the dev trained nothing and, being silver, selected nothing)."""
    files = discover_gold(root, langs, ["train", "dev", "test"], kind="silver")
    present = {(f.source, f.lang, f.split) for f in files}
    return [f for f in files if f.split == "test" or (
        f.split == "dev" and (f.source, f.lang, "test") not in present and (f.source, f.lang, "train") in present)]


def unseen_silver_sentences(root: str | Path, files: list[GoldFile], max_per_file: int | None) -> list[Sentence]:
    """The sentences of silver test ``files`` whose words do not also occur in their source's train split
    (WikiAnn repeats many title-like fragments across its splits), at most ``max_per_file`` of each."""
    kept: list[Sentence] = []
    for file in files:
        train = Path(root) / file.source / file.lang / "train.iob2"
        seen = {tuple(s.words) for s in read_iob2(train)} if train.exists() else set()
        fresh = [s for s in read_iob2(file.path, file.lang, file.source) if tuple(s.words) not in seen]
        kept += fresh[:max_per_file] if max_per_file else fresh
    return kept


def _table_block(title: str, origin: str, names: list[str], scores: list[dict[str, Scores]], split: str,
                 request: EvaluationRequest, windows: str) -> str:
    table = ResultTable(split, names, scores)
    cap = f", at most {request.max_sentences} sentences per file" if request.max_sentences else ""
    if request.reading == "text":
        how = (f"Read as raw text (each sentence's words joined by spaces, by nothing in "
               f"{'/'.join(UNSPACED_LANGUAGES)}), cut into words by the tagger; entities matched on character spans, "
               "strict (a gold name ends before a Latin case ending, as the tagger ends it)")
    else:
        how = "Word-level seqeval, mode=strict, scheme=IOB2"
    return (f"### {title}\n\nData: {origin}{cap}. {how}; word labels decoded by {request.decoding}; windows of "
            f"at most ({windows}) pieces. Measured "
            f"{date.today().isoformat()} on {platform.machine()}, command `polyner evaluate`.\n\n{table.markdown()}\n")


def coverage_table(request: EvaluationRequest, names: list[str], gold: list[dict[str, Scores]] | None,
                   silver: list[dict[str, Scores]] | None) -> str:
    """For each target language: which labeled data a model trained with these roots had, and its test F1s."""
    from polyner.data.training_sets import training_files
    from polyner.languages import TARGET_LANGUAGES

    kinds: dict[str, set[str]] = {}
    for file in training_files(request.data, request.silver):
        kinds.setdefault(file.lang, set()).add(f"{file.kind} {'train' if file.split == 'train' else 'dev'}")
    head = ["lang", "training data"] + [f"gold test F1 {n}" for n in names] + [f"silver test F1 {n}" for n in names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for lang in TARGET_LANGUAGES:
        cells = [lang, ", ".join(sorted(kinds.get(lang, []))) or "none"]
        missing = "no test data" if request.langs is None or lang in request.langs else "not evaluated"
        for table in (gold, silver):
            cells += [f"{t[lang].f1:.2f}" if lang in t else missing for t in (table or [{}] * len(names))]
        lines.append("| " + " | ".join(cells) + " |")
    read = " Test F1s of sentences read as raw text (--input text)." if request.reading == "text" else ""
    return ("### Per-language coverage of the 41 target languages\n\n'gold dev' / 'silver dev': a dev split "
            "trained the model because its source has no train split. Silver F1s come from automatic labels "
            "(WikiAnn, WikiNEuRal) and are not comparable with gold F1s; 'no test data': no labeled test "
            "sentences in this language." + read + "\n\n" + "\n".join(lines) + "\n")


def _counting(tag: Callable[[list], list], bar, chunk: int = 256):
    """``tag`` (sentences' words or texts in, one result each out) run ``chunk`` sentences at a time, advancing the
    progress ``bar`` after each chunk."""
    def run(items: list) -> list:
        results: list = []
        for start in range(0, len(items), chunk):
            results += tag(items[start:start + chunk])
            bar.update(len(items[start:start + chunk]))
        return results
    return run


def _score(request: EvaluationRequest, taggers: list, sentences: list[Sentence], what: str) -> list[dict[str, Scores]]:
    """Each tagger's per-language scores on ``sentences``, with a progress bar when on a terminal."""
    from tqdm.auto import tqdm

    with tqdm(total=len(sentences) * len(taggers), desc=f"evaluate {what}", unit="sentence", delay=2,
              disable=None if request.progress else True, leave=False) as bar:
        if request.reading == "text":
            return [evaluate_text_by_language(_counting(tagger, bar), sentences) for tagger in taggers]
        return [evaluate_by_language(_counting(tagger.tag_words, bar), sentences) for tagger in taggers]


def run_evaluation(request: EvaluationRequest) -> str:
    """Score every model on every split; return the markdown (and write it into ``request.results`` if set)."""
    from polyner.spec import ModelSpec

    if request.names and len(request.names) != len(request.models):
        raise ValueError(f"{len(request.models)} models but {len(request.names)} names")
    specs = [ModelSpec.resolve(m, request.backend, request.threads, batch_size=request.batch_size,
                               decoding=request.decoding, max_length=request.max_length) for m in request.models]
    names = request.names or [spec.name for spec in specs]  # the shipped default: polyner-default, as it tags
    taggers = [spec.build() for spec in specs]
    windows = ", ".join(f"{name} {tagger.config.max_length}" for name, tagger in zip(names, taggers))
    blocks = []
    gold_test = silver_test = None
    for split in request.splits:
        sentences, origin = load_split(request, split)
        scores = _score(request, taggers, sentences, split)
        gold_test = scores if split == "test" else gold_test
        blocks.append(_table_block(f"{' vs '.join(names)} on {split}", origin, names, scores, split, request,
                                   windows))
    if request.silver and "test" in request.splits:
        files = silver_test_files(request.silver, request.langs)
        sentences = unseen_silver_sentences(request.silver, files, request.max_sentences)
        silver_test = _score(request, taggers, sentences, "silver test")
        origin = "silver (automatic labels; sentences also in the source's train split left out): " + ", ".join(
            f"{f.source}/{f.lang}" + (" (dev as test)" if f.split == "dev" else "") for f in files)
        blocks.append(_table_block(f"{' vs '.join(names)} on silver test", origin, names, silver_test, "test",
                                   request, windows))
    if request.coverage:
        blocks.append(coverage_table(request, names, gold_test, silver_test))
    body = "\n".join(blocks)
    section = request.section or "-".join(names) + ":" + "-".join(request.splits)
    if request.results:
        write_section(request.results, section, body)
    return body
