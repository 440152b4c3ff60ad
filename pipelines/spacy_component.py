"""The spaCy component: ``nlp.add_pipe("polyner")`` sets ``doc.ents`` with the polyner tagger.

Entities are found on the raw text by the shared tagger; where a spaCy token straddles an entity
boundary (long tokens of a blank pipeline on Chinese or Japanese, say) the token is split at the
boundary, so every entity lands on exact tokens and none is dropped. Each entity carries its score
in ``span._.score``; ``doc._.language`` holds the detected language (None without letters or under 30 letters of
Latin or Cyrillic: too short to tell). Weights and tokenizer are
written by ``nlp.to_disk`` and read back by ``spacy.load`` offline.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
from bisect import bisect_left, bisect_right
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.util import minibatch

if TYPE_CHECKING:
    from polyner.spec import ModelSpec

logger = logging.getLogger(__name__)
MODEL_FOLDER = "model"
# The ``model`` setting that ``to_disk`` writes into the saved pipeline's config.cfg: the weights are those in
# the pipeline's own folder, supplied by ``from_disk`` when ``spacy.load`` reads it back.
SAVED_MODEL = "@saved-with-pipeline"

if not Doc.has_extension("language"):
    Doc.set_extension("language", default=None)
if not Span.has_extension("score"):
    Span.set_extension("score", default=None)


class PolynerComponent:
    """Sets ``doc.ents`` (PER, ORG, LOC) from a polyner model, batch by batch."""

    def __init__(self, nlp: Language, name: str, model: str | None, overwrite_ents: bool, batch_size: int,
                 max_length: int | None, detect_language: bool, backend: str | None = None,
                 threads: int | None = None, decoding: str = "viterbi") -> None:
        self.name = name
        self.model = model
        self.overwrite_ents = overwrite_ents
        self.batch_size = batch_size
        self.max_length = max_length
        self.detect_language = detect_language
        self.backend = backend  # None: from the model directory; "onnx-int8": the fastest on CPU
        self.threads = threads  # None: all cores (one each in nlp.pipe(n_process=N) workers)
        self.decoding = decoding
        # the model to tag with, resolved at add_pipe time (an error names the path); spacy.load of a saved
        # pipeline (model SAVED_MODEL): from_disk supplies it
        self.spec: ModelSpec | None = None if model == SAVED_MODEL else self._resolve(model)
        self._tagger = None
        self._pid = os.getpid()

    def _resolve(self, model: str | Path | None) -> ModelSpec:
        from polyner.spec import ModelSpec

        return ModelSpec.resolve(model, self.backend, self.threads, max_length=self.max_length,
                                 batch_size=self.batch_size, decoding=self.decoding)

    @property
    def tagger(self):
        """The polyner tagger, built on first use from :attr:`spec`."""
        if self._tagger is None:
            if self.spec is None:
                raise ValueError(f"pipe {self.name!r}: model {SAVED_MODEL!r} means the weights are stored with a saved "
                                 "pipeline; load that pipeline with spacy.load(PATH) instead of building it from config")
            self._tagger = self.spec.build()
        return self._tagger

    def _one_thread_in_worker(self) -> None:
        """One thread per worker of ``nlp.pipe(n_process=N)``: it fills the cores without oversubscribing them.

        Torch gets it before any parallel region (a child forked after the parent ran torch on several threads
        hangs in its first one: the OpenMP pool does not survive fork); torch is imported for that only when the
        model runs on torch. An ONNX Runtime session inherited from the parent is dropped for the same reason
        and the worker builds its own, with one thread.
        """
        on_torch = self.spec is not None and self.spec.backend == "torch"
        if self.spec is not None:
            self.spec = self.spec.with_threads(1)
        if self._tagger is not None and not on_torch:
            self._tagger = None
        if on_torch or sys.modules.get("torch") is not None:
            import torch

            torch.set_num_threads(1)

    def __call__(self, doc: Doc) -> Doc:
        return next(iter(self.pipe([doc])))

    def pipe(self, docs: Iterable[Doc], batch_size: int | None = None) -> Iterator[Doc]:
        """Tag whole batches of docs with one tagger call each (the tagger sorts them by length)."""
        if os.getpid() != self._pid:  # a worker of nlp.pipe(n_process=N): see _one_thread_in_worker
            self._pid = os.getpid()
            self._one_thread_in_worker()
        for batch in minibatch(docs, size=batch_size or self.batch_size):
            results = self.tagger([doc.text for doc in batch])
            for doc, entities in zip(batch, results):
                yield self.set_annotations(doc, entities)

    def set_annotations(self, doc: Doc, entities: list[dict]) -> Doc:
        """Split tokens at entity boundaries where needed, then set the entities and their scores."""
        if self.detect_language:
            from polyner.langid import detect_language

            doc._.language = detect_language(doc.text)
        split_at_boundaries(doc, entities)
        spans, scores = [], {}
        for entity in entities:
            span = doc.char_span(entity["start"], entity["end"], label=entity["label"], alignment_mode="expand")
            if span is None:  # only whitespace between the offsets: nothing to mark
                continue
            spans.append(span)
            scores[(span.start_char, span.end_char, span.label_)] = entity["score"]
        if self.overwrite_ents:
            doc.set_ents(spans, default="outside")
        else:
            taken = {i for ent in doc.ents for i in range(ent.start, ent.end)}
            new = [s for s in spans if not taken.intersection(range(s.start, s.end))]
            doc.set_ents(list(doc.ents) + new, default="unmodified")
        # span._.score is stored by character offsets alone, so it is set only on the entities that were set:
        # a kept entity at the same offsets with another label does not take the model's score
        for span in doc.ents:
            key = (span.start_char, span.end_char, span.label_)
            if key in scores:
                span._.score = scores[key]
        return doc

    def score(self, examples, **kwargs) -> dict[str, Any]:
        """ents_p, ents_r, ents_f and per-type figures, as spaCy's own NER reports them."""
        from spacy.scorer import get_ner_prf

        return get_ner_prf(examples)

    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        """Write the model (weights, config, tokenizer) into ``path/model`` and point the saved pipeline's
        config.cfg at it, so that ``spacy.load`` needs nothing outside the pipeline's folder."""
        path = Path(path)
        target = path / MODEL_FOLDER
        path.mkdir(parents=True, exist_ok=True)
        if self.spec is None:
            raise ValueError(f"pipe {self.name!r} has no model to save: it was built with model={SAVED_MODEL!r} "
                             "and never read from disk")
        if not (target.exists() and target.resolve() == self.spec.path.resolve()):
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(self.spec.path, target,
                            ignore=shutil.ignore_patterns("work", "checkpoint*", "*.npy", "training_*"))
        _point_config_at_saved_model(path.parent / "config.cfg", path.name)

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> "PolynerComponent":
        """Use the model written by :meth:`to_disk` (the configured ``model`` is then ignored)."""
        self.spec = self._resolve(Path(path) / MODEL_FOLDER)
        self._tagger = None
        return self


@Language.factory(
    "polyner",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type", "span._.score", "doc._.language"],
    default_config={"model": None, "overwrite_ents": True, "batch_size": 32, "max_length": None,
                    "detect_language": True, "backend": None, "threads": None, "decoding": "viterbi"},
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
    retokenizes=True,  # tokens straddling an entity boundary are split
)
def make_polyner(nlp: Language, name: str, model: str | None, overwrite_ents: bool, batch_size: int,
                 max_length: int | None, detect_language: bool, backend: str | None, threads: int | None,
                 decoding: str) -> PolynerComponent:
    """Factory of the ``polyner`` pipe; ``model`` is a directory or name, None for the shipped default;
    ``backend`` None (from the directory), "torch", "onnx" or "onnx-int8"; ``max_length`` None reads in the model's
    own window; ``threads`` None uses every core; ``decoding`` "viterbi" or "argmax" (as :func:`polyner.load`)."""
    return PolynerComponent(nlp, name, model, overwrite_ents, batch_size, max_length, detect_language, backend,
                            threads, decoding)


def _point_config_at_saved_model(config_path: Path, name: str) -> None:
    """``nlp.to_disk`` writes config.cfg before the pipes: set this pipe's ``model`` there to the saved copy."""
    from thinc.api import Config

    if not config_path.exists():  # the pipe alone was written (component.to_disk), not a whole pipeline
        return
    config = Config().from_disk(config_path, interpolate=False)
    settings = config.get("components", {}).get(name)
    if settings is None or settings.get("factory") != "polyner" or settings.get("model") == SAVED_MODEL:
        return
    settings["model"] = SAVED_MODEL
    config.to_disk(config_path)


def split_at_boundaries(doc: Doc, entities: list[dict]) -> None:
    """Split every token that an entity starts or ends inside of, so entities fall on token edges."""
    cuts = sorted({e["start"] for e in entities} | {e["end"] for e in entities})
    plans = []
    for token in doc:  # each token looks only at the cuts after its start (bisect): linear in long docs
        first, end = bisect_right(cuts, token.idx), token.idx + len(token.text)
        inside = [c - token.idx for c in cuts[first:bisect_left(cuts, end, first)]]
        if inside:
            plans.append((token.i, inside))
    if not plans:
        return
    with doc.retokenize() as retokenizer:
        for index, offsets in plans:
            token = doc[index]
            edges = [0] + offsets + [len(token.text)]
            orths = [token.text[a:b] for a, b in zip(edges, edges[1:])]
            retokenizer.split(token, orths, heads=[(token, 0)] * len(orths))  # the last piece keeps the space
