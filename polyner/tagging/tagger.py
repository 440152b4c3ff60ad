"""The one NER tagging core: words with offsets, stride windows, length-sorted batches, word labels.

Every surface (Python API, CLI, spaCy, HTTP) calls :class:`Tagger`. Words are found by
:func:`~polyner.tagging.words.segment_words` (runs of scripts written without spaces are cut where
the tokenizer's pieces end). A word's label is the label of its first subword; an entity is a
maximal run of words ``B-X I-X*`` (an ``I-X`` with no opener starts a new entity) and its score is
the mean of its words' probabilities.
Entity offsets are character offsets into the original text, so ``text[start:end]`` is the
entity text.
"""
from __future__ import annotations

import logging
import operator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np

from polyner.tagging.decoding import Decoder, check_decoding
from polyner.tagging.pieces import reading_forms, special_ids, word_pieces
from polyner.languages import written_in_turkish
from polyner.tagging.word_punctuation import name_end
from polyner.tagging.words import Span, is_symbol_word, recut_words, segment_words, tokenizer_run_splitter
from polyner.labels import LABELS, tags_to_spans
from polyner.models.classifier import TokenClassifier, as_token_classifier
from polyner.textcheck import lone_surrogate

if TYPE_CHECKING:  # a torch model is one kind of model; an ONNX one runs without torch
    import torch

logger = logging.getLogger(__name__)

TOKENIZE_CHUNK = 256  # sentences per tokenizer call in Tagger.predict_words


@dataclass(frozen=True)
class TaggerConfig:
    """Inference settings of a :class:`Tagger`."""

    max_length: int | None = None  # pieces per window, specials included; None: the model's own window
    stride: int = 32  # pieces of context shared by two neighbouring windows
    batch_size: int = 32
    max_text_chars: int | None = None  # None: no limit (long texts are windowed)
    decoding: str = "viterbi"  # "viterbi": the best IOB2-valid label sequence; "argmax": each word on its own

    def __post_init__(self) -> None:
        if self.max_length is not None:
            object.__setattr__(self, "max_length", _check_int("max_length", self.max_length, 4))
        object.__setattr__(self, "stride", _check_int("stride", self.stride, 0))
        object.__setattr__(self, "batch_size", _check_int("batch_size", self.batch_size, 1))
        check_decoding(self.decoding)


def _check_int(name: str, value: Any, least: int) -> int:
    """``value`` as an int (any integer type, a numpy one too; not a bool, float or str) of at least ``least``,
    else ValueError."""
    try:
        number = operator.index(value) if not isinstance(value, bool) else None
    except TypeError:
        number = None
    if number is None or number < least:
        raise ValueError(f"{name} must be an int of at least {least}, not {value!r}")
    return number


@dataclass
class _Window:
    text_index: int
    word_indices: list[int]  # words of this window, in order
    input_ids: list[int]
    first_piece: list[int]  # position in input_ids of each word's first piece (-1: word has no piece)


def check_texts(texts: Any) -> tuple[list[str], bool]:
    """Validate input: a str or an ordered sequence of valid-Unicode str. Return the list and whether one str was
    given. A lone surrogate (from a JSON escape or ``surrogateescape``-decoded bytes) is a ValueError, as in the CLI
    and the service: the tokenizer would read it as a space and cut a word in two."""
    if isinstance(texts, str):
        items, single = [texts], True
    elif isinstance(texts, (bytes, bytearray)):
        raise TypeError("texts must be str, not bytes: decode it first, e.g. data.decode('utf-8')")
    elif not isinstance(texts, Iterable) or isinstance(texts, dict):
        raise TypeError(f"texts must be a str or a list of str, not {type(texts).__name__}")
    elif isinstance(texts, (set, frozenset)):
        raise TypeError(f"texts must be ordered (a list or tuple of str), not {type(texts).__name__}: the results "
                        "come back in the order of the texts")
    else:
        items, single = list(texts), False
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be str, not {type(text).__name__}")
        problem = lone_surrogate(text)
        if problem:
            raise ValueError(f"{'the text' if single else f'texts[{i}]'} is not valid Unicode: {problem}")
    return items, single


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in float32."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def plan_windows(piece_counts: Sequence[int], content: int, stride: int) -> list[tuple[int, int]]:
    """Cut words into windows ``[start, end)`` of at most ``content`` pieces; neighbours share about ``stride`` pieces."""
    windows: list[tuple[int, int]] = []
    n, start = len(piece_counts), 0
    while start < n:
        end, used = start, 0
        while end < n and (used + piece_counts[end] <= content or end == start):
            used += min(piece_counts[end], content)
            end += 1
        windows.append((start, end))
        if end >= n:
            break
        nxt, shared = end, 0
        while nxt - 1 > start and shared + piece_counts[nxt - 1] <= stride:
            nxt -= 1
            shared += piece_counts[nxt]
        start = max(nxt, start + 1)
    return windows


def choose_windows(windows: list[tuple[int, int]], piece_counts: Sequence[int]) -> dict[int, int]:
    """For each word, the window in which it has the most context on both sides."""
    best: dict[int, tuple[int, int]] = {}
    for w, (start, end) in enumerate(windows):
        before = 0
        total = sum(piece_counts[start:end])
        for word in range(start, end):
            after = total - before - piece_counts[word]
            margin = min(before, after)
            if word not in best or margin > best[word][1]:
                best[word] = (w, margin)
            before += piece_counts[word]
    return {word: w for word, (w, _) in best.items()}


class Tagger:
    """Tag texts with a token-classification model; ``tagger(texts)`` gives entities per text.

    ``model`` is a :class:`~polyner.models.classifier.TokenClassifier` (the ONNX model) or a torch module, which is
    wrapped in a :class:`~polyner.models.classifier.TorchClassifier`; :attr:`classifier` is what the tagger runs,
    :attr:`model` the model as given. :meth:`polyner.spec.ModelSpec.build` makes one from a model directory.
    """

    def __init__(self, model: TokenClassifier | torch.nn.Module, tokenizer, config: TaggerConfig | None = None,
                 name: str = "", source: str | None = None) -> None:
        self.classifier = as_token_classifier(model, source)  # a torch module is wrapped in a TorchClassifier
        self.model = model  # as given: the ONNX classifier, or the torch module
        self.tokenizer = tokenizer
        config = config or TaggerConfig()
        if config.max_length is None:
            config = replace(config, max_length=self.classifier.window())
        self.config = config
        self.name = name
        self.source = source  # the model directory, when loaded from one
        self.id2label = self.classifier.id2label
        if sorted(self.id2label) != list(range(len(self.id2label))):
            raise ValueError(f"model {name or ''} has label ids {sorted(self.id2label)}, not 0..{len(self.id2label) - 1}")
        unknown = set(self.id2label.values()) - set(LABELS)
        if unknown:
            raise ValueError(f"model {name or ''} has labels outside the IOB2 PER/ORG/LOC scheme: {sorted(unknown)}")
        self._split_run = tokenizer_run_splitter(tokenizer)
        self.unspaced_runs = self.classifier.unspaced_runs()  # how the model reads runs of Han, kana, Thai, ...
        if "O" not in self.id2label.values():
            raise ValueError(f"model {name or ''} has no 'O' label")
        labels = [self.id2label[i] for i in range(len(self.id2label))]
        self._names = labels  # label name by index
        self._decode = Decoder(labels, self.config.decoding)  # checks the decoding name
        self._outside = np.eye(len(labels), dtype=np.float32)[labels.index("O")]  # a word without pieces is O
        self.bos, self.eos = special_ids(tokenizer)
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @property
    def labels(self) -> list[str]:
        """Entity types this tagger can emit."""
        return sorted({label[2:] for label in self.id2label.values() if label != "O"})

    def __call__(self, texts: str | Sequence[str], batch_size: int | None = None):
        """Entities of each text: dicts ``{text, label, start, end, score}`` with offsets into that text."""
        items, single = check_texts(texts)
        limit = self.config.max_text_chars
        for i, text in enumerate(items):
            if limit is not None and len(text) > limit:
                raise ValueError(f"texts[{i}] has {len(text)} characters, more than max_text_chars={limit}")
        spans = [segment_words(text, self._split_run) for text in items]
        words = [[text[s:e] for s, e in sp] for text, sp in zip(items, spans)]
        adjacent = [[a[1] == b[0] for a, b in zip(sp, sp[1:])] for sp in spans]  # a space ends a run
        predictions = self._predict(words, batch_size, adjacent)
        results = [self._entities(text, sp, pred) for text, sp, pred in zip(items, spans, predictions)]
        return results[0] if single else results

    def tag_words(self, sentences: Sequence[Sequence[str]], batch_size: int | None = None) -> list[list[str]]:
        """IOB2 tags for pre-split sentences (one tag per word), as used for word-level evaluation."""
        return [[tag for tag, _ in sent] for sent in self.predict_words(sentences, batch_size)]

    def predict_words(self, sentences: Sequence[Sequence[str]], batch_size: int | None = None
                      ) -> list[list[tuple[str, float]]]:
        """A (tag, probability) per given word.

        Words of scripts written without spaces are read as raw text is (:func:`recut_words`): a run of them is
        joined and cut where the tokenizer's pieces end, and each given word takes the label of the piece-word
        holding its first character (a continuation when that began in an earlier word).
        """
        recut = [recut_words(words, self._split_run) for words in sentences]
        predictions = self._predict([r.words for r in recut], batch_size)
        return [r.back(pred) for r, pred in zip(recut, predictions)]

    def _predict(self, sentences: Sequence[Sequence[str]], batch_size: int | None = None,
                 adjacent: Sequence[Sequence[bool]] | None = None) -> list[list[tuple[str, float]]]:
        """A (tag, probability) per word; words are read through stride windows in length-sorted batches
        (``adjacent``: whether each word touches the next in the text, for words cut out of raw text)."""
        if batch_size is not None:
            batch_size = _check_int("batch_size", batch_size, 1)
        batch_size = batch_size or self.config.batch_size
        content = self.config.max_length - 2
        stride = min(self.config.stride, content // 2)
        windows: list[_Window] = []
        owner: list[dict[int, int]] = []
        for t, pieces in enumerate(self._word_pieces(sentences, content, adjacent)):
            if not pieces:
                owner.append({})
                continue
            counts = [len(p) for p in pieces]
            planned = plan_windows(counts, content, stride)
            owner.append({word: len(windows) + w for word, w in choose_windows(planned, counts).items()})
            for start, end in planned:
                ids, first = [self.bos], []
                for word in range(start, end):
                    first.append(len(ids) if pieces[word] else -1)
                    ids.extend(pieces[word])
                ids = ids[:content + 1] + [self.eos]
                windows.append(_Window(t, list(range(start, end)), ids, first))
        probs = self._run(windows, batch_size)
        results: list[list[tuple[str, float]]] = []
        for t, words in enumerate(sentences):
            word_probs = self._word_probs(len(words), owner[t], windows, probs)
            chosen = self._decode(word_probs)
            scores = word_probs[np.arange(len(chosen)), chosen].tolist()
            results.append([(self._names[k], p) for k, p in zip(chosen.tolist(), scores)])
        return results

    def _word_probs(self, n_words: int, owner: dict[int, int], windows: list[_Window],
                    probs: list[np.ndarray]) -> np.ndarray:
        """The label probabilities of each word's first piece, read in the window chosen for it (O if no piece)."""
        if n_words and len(owner) == n_words and len(set(owner.values())) == 1:  # one window: one gather
            w = owner[0]
            positions = np.asarray(windows[w].first_piece[:n_words])
            found = probs[w][np.maximum(positions, 0)]
            found[positions < 0] = self._outside
            return found
        word_probs = np.empty((n_words, len(self.id2label)), dtype=np.float32)
        for word in range(n_words):
            w = owner.get(word)
            window = windows[w] if w is not None else None
            position = window.first_piece[word - window.word_indices[0]] if window else -1
            word_probs[word] = probs[w][position] if position >= 0 else self._outside
        return word_probs

    def _word_pieces(self, sentences: Sequence[Sequence[str]], content: int,
                     adjacent: Sequence[Sequence[bool]] | None = None) -> Iterator[list[list[int]]]:
        """The piece ids of each word of each sentence (at most ``content`` per word), read as the model reads
        words (:func:`~polyner.tagging.pieces.word_pieces`; each in its reading form, without tatweel, Arabic vowel
        marks and Hebrew points, Persian's yeh and kaf in Persian: :func:`~polyner.tagging.pieces.reading_forms`),
        tokenized in chunks.

        One tokenizer call per chunk of sentences instead of one per sentence: the fast tokenizer
        encodes a chunk in one pass, which takes a visible share off the time of short sentences.
        """
        for first in range(0, len(sentences), TOKENIZE_CHUNK):
            chunk = [reading_forms(words) for words in sentences[first:first + TOKENIZE_CHUNK]]
            touching = None if adjacent is None else adjacent[first:first + TOKENIZE_CHUNK]
            for pieces in word_pieces(self.tokenizer, chunk, self.unspaced_runs, touching):
                yield [p[:content] for p in pieces]

    def _run(self, windows: list[_Window], batch_size: int) -> list[np.ndarray]:
        """Softmax probabilities per piece for every window, batched by similar length.

        Everything around the model call is numpy: no torch kernel wakes torch's thread pool, which on a
        small machine would spin against ONNX Runtime's own threads when the model is an ONNX graph.
        """
        out: list[np.ndarray | None] = [None] * len(windows)
        order = sorted(range(len(windows)), key=lambda i: len(windows[i].input_ids))
        for b in range(0, len(order), batch_size):
            batch = order[b:b + batch_size]
            width = max(len(windows[i].input_ids) for i in batch)
            ids = np.full((len(batch), width), self.pad, dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                seq = windows[i].input_ids
                ids[row, :len(seq)] = seq
                mask[row, :len(seq)] = 1
            probs = softmax(self.classifier.logits(ids, mask))
            for row, i in enumerate(batch):
                out[i] = probs[row]
        return out  # type: ignore[return-value]

    def _entities(self, text: str, spans: list[Span], tagged: list[tuple[str, float]]) -> list[dict]:
        """The entities of ``text`` from its words' tags; symbol words (emoji, flags) at an entity's edges are left
        out of it (France 🇫🇷 tagged as one place gives France), and an entity of symbols alone is none; a case
        ending joined to its last word is left out too (Ankara'da gives Ankara, EU:n gives EU)."""
        entities = []
        turkish = written_in_turkish(text)  # an apostrophe before a name's ending: a case ending
        for span in tags_to_spans([tag for tag, _ in tagged]):
            first, last = span.start, span.end - 1
            while first <= last and is_symbol_word(text[slice(*spans[first])]):
                first += 1
            while last >= first and is_symbol_word(text[slice(*spans[last])]):
                last -= 1
            if first > last:
                continue
            start, end = spans[first][0], spans[last][0] + name_end(text[slice(*spans[last])], turkish)
            score = float(np.mean([p for _, p in tagged[first:last + 1]]))
            entities.append({"text": text[start:end], "label": span.label, "start": start, "end": end,
                             "score": round(score, 4)})
        return entities
