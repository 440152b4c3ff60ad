"""Subword alignment of word-level labels, with an on-disk cache of tokenized data."""
from __future__ import annotations

import hashlib
import os
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from polyner.data.iob2 import Sentence
from polyner.home import cache_dir, hash_file
from polyner.labels import IGNORE_INDEX, LABEL2ID
from polyner.tagging.pieces import special_ids, word_pieces
from polyner.tagging.words import recut_words, tokenizer_run_splitter

logger = logging.getLogger(__name__)

# version of how words become labelled pieces (2: runs without spaces cut at piece ends; 3: a run's first word
# whole (the lone ▁ piece), 々 〆 〇 〻 inside Han runs)
ALIGNMENT = 3


@dataclass
class EncodedSet:
    """Tokenized sentences stored flat: ids/labels concatenated, ``offsets[i]:offsets[i+1]`` per sentence."""

    ids: np.ndarray
    labels: np.ndarray
    offsets: np.ndarray
    langs: list[str]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def example(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Input ids and aligned labels of sentence ``i``."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.ids[a:b], self.labels[a:b]

    def subset(self, indices: Sequence[int]) -> "EncodedSet":
        """The sentences ``indices``, in that order."""
        pieces = [self.example(i) for i in indices]
        lengths = np.asarray([len(ids) for ids, _ in pieces], dtype=np.int64)
        offsets = np.concatenate([np.zeros(1, np.int64), np.cumsum(lengths)])
        ids = np.concatenate([ids for ids, _ in pieces] or [self.ids[:0]])
        labels = np.concatenate([labels for _, labels in pieces] or [self.labels[:0]])
        return EncodedSet(ids, labels, offsets, [self.langs[i] for i in indices])


def align_labels(word_ids: Sequence[int | None], tags: Sequence[str]) -> list[int]:
    """Label the first subword of each word with its tag id; other pieces and specials get -100."""
    labels, previous = [], None
    for word in word_ids:
        if word is None or word == previous:
            labels.append(IGNORE_INDEX)
        else:
            labels.append(LABEL2ID[tags[word]])
        previous = word
    return labels


def model_input(per_word: Sequence[Sequence[int]], bos: int, eos: int, content: int
                ) -> tuple[list[int], list[int | None]]:
    """Input ids (``bos``, at most ``content`` pieces, ``eos``) from each word's pieces, and the word of each id
    (None for the specials), as transformers' ``word_ids()``."""
    flat = [piece for word in per_word for piece in word][:content]
    owners: list[int | None] = [w for w, word in enumerate(per_word) for _ in word][:content]
    return [bos] + flat + [eos], [None] + owners + [None]


def encode_sentences(tokenizer, sentences: Sequence[Sentence], max_length: int = 64,
                     batch_size: int = 1000, unspaced_runs: str = "words") -> EncodedSet:
    """Tokenize word lists as the model reads them (:func:`~polyner.tagging.pieces.word_pieces`), truncated to
    ``max_length`` pieces (specials included), with the tag of each word on its first piece.

    Words are read as the tagger reads them (:func:`~polyner.tagging.words.recut_words`): runs of scripts
    written without spaces, such as character-level Chinese and Japanese data, are cut where the tokenizer's
    pieces end, each piece-word taking the tag of its first character.
    """
    split_run = tokenizer_run_splitter(tokenizer)
    bos, eos = special_ids(tokenizer)
    content = max(max_length - 2, 0)  # pieces between the two specials
    ids: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for start in range(0, len(sentences), batch_size):
        chunk = sentences[start:start + batch_size]
        recut = [recut_words(s.words, split_run) for s in chunk]
        pieces = word_pieces(tokenizer, [r.words for r in recut], unspaced_runs)
        for sentence, words, per_word in zip(chunk, recut, pieces):
            sentence_ids, word_ids = model_input(per_word, bos, eos, content)
            ids.append(np.asarray(sentence_ids, dtype=np.int32))
            labels.append(np.asarray(align_labels(word_ids, words.tags_of(sentence.tags)), dtype=np.int16))
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat_ids = np.concatenate(ids) if ids else np.zeros(0, np.int32)
    flat_labels = np.concatenate(labels) if labels else np.zeros(0, np.int16)
    return EncodedSet(flat_ids, flat_labels, offsets, [s.lang for s in sentences])


def concat_encoded(parts: Sequence[EncodedSet]) -> EncodedSet:
    """One set holding the sentences of ``parts`` in order."""
    if not parts:
        return EncodedSet(np.zeros(0, np.int32), np.zeros(0, np.int16), np.zeros(1, np.int64), [])
    offsets, base = [np.zeros(1, np.int64)], 0
    for part in parts:
        offsets.append(part.offsets[1:] + base)
        base += int(part.offsets[-1])
    return EncodedSet(np.concatenate([p.ids for p in parts]), np.concatenate([p.labels for p in parts]),
                      np.concatenate(offsets).astype(np.int64), [lang for p in parts for lang in p.langs])


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash identifying a tokenizer's vocabulary."""
    vocab = tokenizer.get_vocab()
    digest = hashlib.sha256(json.dumps(sorted(vocab.items())[:5000] + [len(vocab)]).encode()).hexdigest()
    return digest[:16]


def cached_encode(tokenizer, files: Sequence[Path], sentences_of, max_length: int = 64,
                  cache: Path | None = None, unspaced_runs: str = "words", variant: str = "") -> EncodedSet:
    """Encode the sentences of ``files`` once and keep the result in ``$POLYNER_HOME/cache/tokenized``.

    ``sentences_of(path)`` returns the sentences of one file; the cache key covers the files'
    paths and contents (a file copied again with the same bytes, as ``../shared`` is each session, keeps its entry),
    the tokenizer vocabulary, ``max_length``, :data:`ALIGNMENT`,
    ``unspaced_runs`` (how the model reads runs of scripts without spaces) and ``variant`` (what ``sentences_of``
    does to them besides reading them, e.g. "lowercase"; empty: nothing).
    """
    contents = [(str(Path(f).resolve()), hash_file(hashlib.sha256(), Path(f)).hexdigest()) for f in files]
    parts = [contents, tokenizer_fingerprint(tokenizer), max_length, ALIGNMENT, unspaced_runs]
    key = hashlib.sha256(json.dumps(parts + ([variant] if variant else [])).encode()).hexdigest()[:24]
    folder = Path(cache) if cache else cache_dir("cache", "tokenized")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{key}.npz"
    if target.exists():
        with np.load(target, allow_pickle=False) as data:
            return EncodedSet(data["ids"], data["labels"], data["offsets"], [str(x) for x in data["langs"]])
    sentences: list[Sentence] = []
    for f in files:
        sentences.extend(sentences_of(f))
    encoded = encode_sentences(tokenizer, sentences, max_length, unspaced_runs=unspaced_runs)
    tmp = folder / f"{key}.{os.getpid()}.partial.npz"
    np.savez(tmp, ids=encoded.ids, labels=encoded.labels, offsets=encoded.offsets,
             langs=np.asarray(encoded.langs, dtype=str))
    tmp.rename(target)
    logger.info("cached %d tokenized sentences in %s", len(encoded), target)
    return encoded
