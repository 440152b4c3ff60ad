"""Vocabulary trimming and embedding factorization (XtremeDistil's ``--compress_word_embedding``).

The teacher's XLM-R Unigram vocabulary has 250,002 pieces, and its word embeddings are 82% of its
parameters. A student for a fixed set of languages only ever needs the pieces its text produces, so:

1. :func:`count_pieces` counts piece ids over the transfer corpus (raw text) and the gold sentences
   (pre-split words, ``is_split_into_words=True``, which is how NER input is fed);
2. :func:`select_vocabulary` keeps every special token, every single-character piece (``x`` or
   ``▁x``, so that any text made of known characters still tokenizes without ``<unk>``) and the
   pieces seen at least ``min_count`` times (the most frequent first when ``max_size`` caps it);
3. :func:`trim_tokenizer` writes a tokenizer whose Unigram vocabulary is exactly the kept pieces, in
   their old order and with their old scores. Text that needed a dropped piece is re-segmented by the
   Unigram Viterbi into kept pieces, not mapped to ``<unk>``; text whose pieces are all kept gets the
   same pieces as before (the old best segmentation is still available and still best). It returns
   the old -> new id map (``-1`` for dropped ids);
4. :func:`factorize_embeddings` runs a PCA of the kept teacher rows, ``coordinates @ components +
   mean ~= teacher_rows``: the coordinates become the student's ``vocab x rank`` word embeddings,
   the components initialise (or constrain) the ``rank -> width`` projection.

Teacher/student alignment: the cached teacher outputs are per teacher piece. A sentence keeps the
same pieces under the trimmed tokenizer exactly when all its pieces are kept, which ``min_count=1``
over the very corpus that was sent through the teacher guarantees. A higher ``min_count`` or a
``max_size`` cap re-segments the sentences that used a dropped piece; those need word-level
alignment (``word_ids()``) or re-running through the teacher.

Tokenizer class (checked with transformers 5.24 / tokenizers 0.23): the trimmed directory keeps the
source's ``tokenizer_config.json`` fields, so the teacher's ``tokenizer_class XLMRobertaTokenizer``
stays. ``AutoTokenizer`` then gives transformers 5's ``XLMRobertaTokenizer``: tokenizers-backed
(``word_ids()`` and offsets work), but it rebuilds its pipeline from the vocabulary list and the
Precompiled charsmap (WhitespaceSplit + Metaspace instead of the file's Replace + Metaspace, unk_id
fixed at 3, which trimming keeps). It is the class the teacher itself loads as, which is what
matters for distillation: on the full gold corpus (356,332 sentences, word input) and the unlabeled
corpus (263,209 lines, text input) the trimmed tokenizer's ids are exactly the teacher's ids
remapped. :func:`trim_tokenizer` then re-saves through ``save_pretrained``, so the tokenizer.json on
disk is the pipeline that class really runs: ``tokenizers.Tokenizer.from_file`` on it gives the same
ids as ``AutoTokenizer`` on text and on ``is_split_into_words`` input alike (all of the above, both
kinds). Note that the *teacher's* original tokenizer.json, read raw, is not its AutoTokenizer: the two
differ on words or texts with edge whitespace (72 of the 356,332 gold sentences, e.g. tweet words
like ``"😉 "``; Gotcha 7 of the offline-assets notes). Load both tokenizers with AutoTokenizer.
Pass ``tokenizer_class="PreTrainedTokenizerFast"`` to keep the source file's pipeline verbatim.
"""
from __future__ import annotations

import collections
import copy
import json
import logging
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

METASPACE = "\u2581"

#: tokenizer_config.json written when the source has none: the teacher's fields.
DEFAULT_TOKENIZER_CONFIG: dict[str, Any] = {
    "tokenizer_class": "XLMRobertaTokenizer",
    "model_max_length": 512,
    "bos_token": "<s>",
    "cls_token": "<s>",
    "eos_token": "</s>",
    "sep_token": "</s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
    "model_input_names": ["input_ids", "attention_mask"],
}

# tokenizer_config.json keys that describe where a tokenizer was loaded from, not what it is.
_DROPPED_CONFIG_KEYS = ("name_or_path", "is_local", "local_files_only", "tokenizer_file", "vocab_file",
                        "auto_map", "_commit_hash")


# --------------------------------------------------------------------------------------------------
# tokenizer plumbing


def _backend(tokenizer) -> Any:
    """The ``tokenizers.Tokenizer`` behind ``tokenizer`` (a transformers tokenizer, a raw tokenizer,
    a tokenizer.json path or a directory holding one)."""
    from tokenizers import Tokenizer

    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    if isinstance(tokenizer, (str, Path)):
        path = Path(tokenizer)
        return Tokenizer.from_file(str(path / "tokenizer.json" if path.is_dir() else path))
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TypeError(f"need a fast (tokenizers-backed) tokenizer, got {type(tokenizer).__name__}")
    return backend


def tokenizer_pieces(tokenizer) -> list[str]:
    """Piece strings of ``tokenizer`` (anything :func:`_backend` takes) indexed by id, added tokens included."""
    return _pieces(_backend(tokenizer))


def _pieces(backend) -> list[str]:
    """Piece strings indexed by id, added tokens included."""
    vocab = backend.get_vocab(with_added_tokens=True)
    pieces = [""] * (max(vocab.values()) + 1)
    for piece, index in vocab.items():
        pieces[index] = piece
    return pieces


def _special_ids(tokenizer, backend) -> set[int]:
    """Ids that must survive trimming: added tokens, the Unigram unk, the transformers specials."""
    ids = set(backend.get_added_tokens_decoder())
    try:
        unk = json.loads(backend.model.__getstate__()).get("unk_id")
    except Exception:  # not a serializable model: rely on the declared specials
        unk = None
    if unk is not None:
        ids.add(int(unk))
    ids.update(int(i) for i in (getattr(tokenizer, "all_special_ids", None) or []) if i is not None)
    return ids


def is_single_char(piece: str) -> bool:
    """``x`` or ``▁x``: one character, optionally word-initial."""
    return len(piece) == 1 or (len(piece) == 2 and piece[0] == METASPACE)


#: Han and kana particles that XLM-R's vocabulary glues onto the next or the previous word (``在北京``, ``的中国``,
#: ``日本の``): such a piece puts a word edge, and so an entity edge, inside a piece (most of the entity edges of the
#: zh and ja gold files that fall inside a piece of the student's vocabulary do so at one of these). The preposition
#: 在 also ends pieces: ``公司在`` (丰田汽车公司在东京) would end an organisation inside a piece.
PARTICLES_BEFORE = frozenset("的在和与及是从对")
PARTICLES_AFTER = frozenset("的在の了はがをにでへも")


def is_han_or_kana(piece: str) -> bool:
    """Whether ``piece`` (``▁`` aside) is one or more Han or kana characters."""
    from polyner.tagging.words import char_kind

    body = piece[1:] if piece.startswith(METASPACE) else piece
    return bool(body) and all(char_kind(ch) == "cjk" for ch in body)


def joins_particle(piece: str) -> bool:
    """Whether ``piece`` is two or more Han/kana characters that begin with a particle of
    :data:`PARTICLES_BEFORE` or end with one of :data:`PARTICLES_AFTER` (``▁`` aside)."""
    body = piece[1:] if piece.startswith(METASPACE) else piece
    if len(body) < 2 or not is_han_or_kana(body):
        return False
    return body[0] in PARTICLES_BEFORE or body[-1] in PARTICLES_AFTER


# --------------------------------------------------------------------------------------------------
# 1. counting


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def count_pieces(tokenizer, texts: Iterable[str] | None = None, word_lists: Iterable[list[str]] | None = None,
                 batch_size: int = 1000, add_special_tokens: bool = False) -> collections.Counter[int]:
    """Piece-id frequencies of raw ``texts`` (tokenized as text) and of pre-split ``word_lists``
    (tokenized with ``is_split_into_words=True``, as NER input is fed). Specials are not counted
    unless ``add_special_tokens``. Uses the tokenizer's own backend pipeline (for transformers 5's
    ``XLMRobertaTokenizer`` that is its rebuilt one), without padding or truncation."""
    backend = _backend(tokenizer)
    if backend.padding is not None or backend.truncation is not None:  # never touch the caller's object
        backend = type(backend).from_str(backend.to_str())
        backend.no_padding()
        backend.no_truncation()
    totals = np.zeros(backend.get_vocab_size(with_added_tokens=True), dtype=np.int64)

    def add(encodings) -> None:
        nonlocal totals
        ids = np.fromiter((i for e in encodings for i in e.ids), dtype=np.int64)
        if ids.size:
            found = np.bincount(ids)
            if found.size > totals.size:
                totals = np.pad(totals, (0, found.size - totals.size))
            totals[: found.size] += found

    for batch in _batches(texts or (), batch_size):
        add(backend.encode_batch([str(t) for t in batch], add_special_tokens=add_special_tokens))
    for batch in _batches(word_lists or (), batch_size):
        batch = [list(words) for words in batch if len(words)]
        if batch:
            add(backend.encode_batch(batch, is_pretokenized=True, add_special_tokens=add_special_tokens))
    nonzero = np.flatnonzero(totals)
    return collections.Counter(dict(zip(nonzero.tolist(), totals[nonzero].tolist())))


def count_bare_forms(tokenizer, counts: collections.Counter[int]) -> collections.Counter[int]:
    """``counts`` plus, for every piece of a script without spaces counted word-initially (``▁公司``), the same
    count for its bare form (``公司``) where the tokenizer has one.

    Counting pre-split words meets such a piece only in its ``▁`` form, but the tagger cuts a Han, kana or Thai
    run out of running text, where a word inside the run is its bare form: without it in the vocabulary the run
    falls apart into single characters (``东 京`` for 东京) and the words the student reads are not the ones
    it learned from."""
    from polyner.tagging.words import char_kind

    backend = _backend(tokenizer)
    pieces = _pieces(backend)
    index = backend.get_vocab(with_added_tokens=True)
    out = collections.Counter(counts)
    for piece_id, count in counts.items():
        piece = pieces[int(piece_id)] if 0 <= int(piece_id) < len(pieces) else ""
        body = piece[1:]
        if piece.startswith(METASPACE) and body and body in index \
                and all(char_kind(ch) in ("cjk", "nospace") for ch in body):
            out[index[body]] += count
    return out


# --------------------------------------------------------------------------------------------------
# 2. selection


def language_balanced_ranking(counts_by_language: dict[str, collections.Counter[int]],
                              alpha: float = 0.0) -> dict[int, float]:
    """Rank pieces by their per-language frequencies summed with language weights ``total ** alpha``
    (each language's counts divided by its total): with ``alpha`` 0 every language has the same pull on a
    capped vocabulary however much text it has; with 1 this is the plain count over all text."""
    ranking: dict[int, float] = collections.defaultdict(float)
    for counts in counts_by_language.values():
        total = max(sum(counts.values()), 1)
        for piece, count in counts.items():
            ranking[int(piece)] += count / total * total ** alpha
    return dict(ranking)


def select_vocabulary(tokenizer, counts: collections.Counter[int] | dict[int, int], min_count: int = 1,
                      max_size: int | None = None, keep_single_chars: bool = True,
                      ranking: dict[int, float] | None = None, drop_particle_pieces: bool = False) -> list[int]:
    """Old ids to keep, sorted ascending: all special tokens, all single-character pieces when
    ``keep_single_chars`` (else the single characters counted at least once), and the pieces counted
    at least ``min_count`` times. ``max_size`` caps
    the total (specials and single characters included); the frequent pieces are then taken in
    ``ranking`` order (default: most frequent first; ties by lower id). ``drop_particle_pieces`` leaves out
    the Han/kana pieces that glue a particle to a word (:func:`joins_particle`): the trimmed tokenizer then
    cuts ``在北京`` as ``在`` + ``北京``."""
    backend = _backend(tokenizer)
    pieces = _pieces(backend)
    mandatory = {i for i in _special_ids(tokenizer, backend) if i < len(pieces)}
    singles = (i for i, piece in enumerate(pieces) if piece and is_single_char(piece))
    # every single character when asked, else those the text has (a dropped one would be <unk>)
    mandatory.update(i for i in singles if keep_single_chars or counts.get(i, 0) > 0)
    if max_size is not None and len(mandatory) > max_size:
        raise ValueError(f"max_size {max_size} is below the {len(mandatory)} ids that are always kept "
                         f"(specials{' and single characters' if keep_single_chars else ''})")
    order = ranking if ranking is not None else counts
    frequent = sorted(((int(i), order.get(int(i), 0)) for i, c in counts.items()
                       if c >= min_count and 0 <= int(i) < len(pieces) and int(i) not in mandatory
                       and not (drop_particle_pieces and joins_particle(pieces[int(i)]))),
                      key=lambda item: (-item[1], item[0]))
    if max_size is not None:
        frequent = frequent[: max_size - len(mandatory)]
    return sorted(mandatory.union(i for i, _ in frequent))


# --------------------------------------------------------------------------------------------------
# 3. trimming


def _source_files(source) -> tuple[dict, dict | None]:
    """(tokenizer.json as a dict, tokenizer_config.json as a dict or None) for any tokenizer source."""
    from tokenizers import Tokenizer

    if isinstance(source, (str, Path)):
        path = Path(source)
        file = path / "tokenizer.json" if path.is_dir() else path
        config_file = file.parent / "tokenizer_config.json"
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.exists() else None
        return json.loads(file.read_text(encoding="utf-8")), config
    if isinstance(source, Tokenizer):
        return json.loads(source.to_str()), None
    if hasattr(source, "save_pretrained") and hasattr(source, "backend_tokenizer"):
        with tempfile.TemporaryDirectory() as tmp:  # the in-memory state, as transformers serializes it
            source.save_pretrained(tmp)
            return _source_files(tmp)
    raise TypeError(f"cannot read a tokenizer from {type(source).__name__}")


def _remap_post_processor(processor: dict | None, mapping: np.ndarray) -> dict | None:
    if not processor:
        return processor
    kind = processor.get("type")
    if kind == "Sequence":
        processor["processors"] = [_remap_post_processor(p, mapping) for p in processor["processors"]]
    elif kind == "TemplateProcessing":
        for special in processor.get("special_tokens", {}).values():
            special["ids"] = [_new_id(i, mapping, special.get("id")) for i in special["ids"]]
    elif kind in ("RobertaProcessing", "BertProcessing"):
        for key in ("sep", "cls"):
            token, index = processor[key]
            processor[key] = [token, _new_id(index, mapping, token)]
    return processor


def _new_id(old: int, mapping: np.ndarray, what: Any = None) -> int:
    if not 0 <= old < len(mapping) or mapping[old] < 0:
        raise ValueError(f"token {what!r} (id {old}) is needed by the tokenizer but not in keep_ids")
    return int(mapping[old])


def trim_tokenizer(tokenizer, keep_ids: Iterable[int], out_dir: str | Path,
                   tokenizer_class: str | None = None) -> tuple[Any, np.ndarray]:
    """Write a tokenizer restricted to ``keep_ids`` into ``out_dir`` and load it back.

    ``tokenizer`` is a tokenizer.json path, a directory holding one (its tokenizer_config.json is
    copied too), a ``tokenizers.Tokenizer`` or a transformers fast tokenizer. The new Unigram
    vocabulary is exactly the kept pieces in their old order with their old scores, so specials
    0..3 keep their ids and ``<mask>`` lands wherever its rank puts it (last for XLM-R); the
    Unigram ``unk_id``, the added tokens and the post-processor ids are renumbered. Every added
    token and the unk piece must be kept (:func:`select_vocabulary` does so).

    ``tokenizer_class`` overrides the one in tokenizer_config.json (default: the source's, else
    ``XLMRobertaTokenizer``; see the module docstring for the choice).

    Returns ``(AutoTokenizer.from_pretrained(out_dir), mapping)`` where ``mapping[old_id]`` is the
    new id, or -1 for a dropped piece; ``len(mapping)`` is the old tokenizer's vocabulary size. The
    student's embedding rows are ``teacher_rows[keep_ids]`` (new id ``k`` is ``keep_ids[k]``).
    """
    from transformers import AutoTokenizer

    start = time.perf_counter()
    data, config = _source_files(tokenizer)
    model = data.get("model", {})
    if model.get("type") != "Unigram":
        raise ValueError(f"only Unigram tokenizers can be trimmed, this one is {model.get('type')!r}")
    vocab = model["vocab"]
    keep = np.unique(np.asarray(list(keep_ids), dtype=np.int64))
    if keep.size == 0 or keep[0] < 0 or keep[-1] >= len(vocab):
        raise ValueError(f"keep_ids must be ids in 0..{len(vocab) - 1}")
    mapping = np.full(len(vocab), -1, dtype=np.int64)
    mapping[keep] = np.arange(keep.size)

    data = dict(data)
    model = dict(model)
    model["vocab"] = [vocab[i] for i in keep.tolist()]
    if model.get("unk_id") is not None:
        model["unk_id"] = _new_id(int(model["unk_id"]), mapping, "unk")
    data["model"] = model
    added = []
    for token in data.get("added_tokens") or []:
        old = int(token["id"])
        if old >= len(vocab):
            raise ValueError(f"added token {token['content']!r} (id {old}) lies outside the Unigram vocabulary")
        if vocab[old][0] != token["content"]:
            raise ValueError(f"added token {token['content']!r} does not match piece {vocab[old][0]!r} of id {old}")
        added.append({**token, "id": _new_id(old, mapping, token["content"])})
    data["added_tokens"] = added
    data["post_processor"] = _remap_post_processor(copy.deepcopy(data.get("post_processor")), mapping)
    if data.get("padding") and "pad_id" in data["padding"]:
        data["padding"] = {**data["padding"], "pad_id": _new_id(int(data["padding"]["pad_id"]), mapping, "pad")}

    config = {k: v for k, v in (config or DEFAULT_TOKENIZER_CONFIG).items() if k not in _DROPPED_CONFIG_KEYS}
    if "added_tokens_decoder" in config:
        config["added_tokens_decoder"] = {str(_new_id(int(i), mapping, t.get("content"))): t
                                          for i, t in config["added_tokens_decoder"].items()}
    if tokenizer_class is not None:
        config["tokenizer_class"] = tokenizer_class

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n",
                                                   encoding="utf-8")
    trimmed = AutoTokenizer.from_pretrained(str(out_dir))
    # Re-save through transformers so that tokenizer.json holds the pipeline the loaded class really
    # runs (XLMRobertaTokenizer rebuilds its own): raw `tokenizers` and AutoTokenizer then agree.
    trimmed.save_pretrained(str(out_dir))
    # ... but keep the scores as written in the source: the Rust JSON float parser may be 1 ulp off,
    # and re-serializing its values would compound that (ties in the Viterbi must break identically).
    saved = json.loads((out_dir / "tokenizer.json").read_text(encoding="utf-8"))
    if [piece for piece, _ in saved["model"]["vocab"]] != [piece for piece, _ in model["vocab"]]:
        raise RuntimeError("transformers re-saved a different vocabulary")
    saved["model"]["vocab"] = model["vocab"]
    (out_dir / "tokenizer.json").write_text(json.dumps(saved, ensure_ascii=False), encoding="utf-8")
    if len(trimmed) != keep.size:
        raise RuntimeError(f"the trimmed tokenizer has {len(trimmed)} ids, expected {keep.size}")
    logger.info("trimmed tokenizer: %d -> %d pieces (%s) in %.1f s, saved to %s", len(vocab), keep.size,
                type(trimmed).__name__, time.perf_counter() - start, out_dir)
    return trimmed, mapping


def remap_ids(ids: np.ndarray | torch.Tensor | list[int], mapping: np.ndarray) -> np.ndarray:
    """Old ids to new ids through ``mapping``; raises if one was dropped."""
    old = np.asarray(ids, dtype=np.int64)
    new = mapping[old]
    if (new < 0).any():
        raise ValueError(f"ids dropped by the trimming: {sorted(set(old[new < 0].tolist()))[:10]}")
    return new


# --------------------------------------------------------------------------------------------------
# 4. factorization


@dataclass
class Factorization:
    """PCA of the kept teacher rows: ``coordinates @ components + mean`` approximates them.

    Unpacks as ``coordinates, components, mean = factorization``."""

    coordinates: np.ndarray  # [len(keep_ids), rank], float32
    components: np.ndarray  # [rank, teacher_width], orthonormal rows
    mean: np.ndarray  # [teacher_width]; zeros when not centered
    # [rank]: each component's share of the total variance (of the raw second moment when not centered)
    explained_variance_ratio: np.ndarray
    seconds: float = 0.0

    def __iter__(self):
        return iter((self.coordinates, self.components, self.mean))

    def __getitem__(self, index):
        return (self.coordinates, self.components, self.mean)[index]

    def __len__(self) -> int:
        return 3

    @property
    def rank(self) -> int:
        return self.components.shape[0]

    def reconstruct(self) -> np.ndarray:
        return self.coordinates @ self.components + self.mean


def factorize_embeddings(teacher_embeddings: np.ndarray | torch.Tensor, keep_ids: Iterable[int] | None, rank: int,
                         center: bool = True, chunk_rows: int = 32768) -> Factorization:
    """PCA of ``teacher_embeddings[keep_ids]`` (all rows if ``keep_ids`` is None) down to ``rank``.

    The kept rows are centered on their mean (``center=False`` gives a plain truncated SVD with a
    zero mean, for a bias-free projection), their ``width x width`` scatter matrix is accumulated in
    float64 over row chunks and eigen-decomposed; the top ``rank`` eigenvectors are the components
    (signs fixed so each component's largest-magnitude entry is positive) and the coordinates are
    the centered rows projected on them. Exact up to float error; memory is one float32 copy of the
    kept rows plus the coordinates. Returns a :class:`Factorization` (unpacks to
    ``coordinates, components, mean``).
    """
    start = time.perf_counter()
    weight = torch.as_tensor(teacher_embeddings).detach()
    if weight.dim() != 2:
        raise ValueError(f"teacher_embeddings must be 2-D, got shape {tuple(weight.shape)}")
    if keep_ids is not None:
        index = torch.as_tensor(np.asarray(list(keep_ids), dtype=np.int64))
        if index.numel() and (index.min() < 0 or index.max() >= weight.shape[0]):
            raise ValueError(f"keep_ids out of range for {weight.shape[0]} embedding rows")
        rows = weight.index_select(0, index)
    else:
        rows = weight
    rows = rows.to(torch.float32).contiguous()
    count, width = rows.shape
    if not 1 <= rank <= min(count, width):
        raise ValueError(f"rank must be in 1..{min(count, width)} for {count} rows of width {width}, got {rank}")

    mean64 = rows.sum(dim=0, dtype=torch.float64) / count if center else torch.zeros(width, dtype=torch.float64)
    mean = mean64.to(torch.float32)
    scatter = torch.zeros(width, width, dtype=torch.float64)
    for lo in range(0, count, chunk_rows):
        block = rows[lo:lo + chunk_rows] - mean
        scatter += (block.T @ block).to(torch.float64)
    scatter = (scatter + scatter.T) / 2
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a width x width problem: threads only add overhead (5 s vs 0.03 s when cores are busy)
    try:
        eigenvalues, eigenvectors = torch.linalg.eigh(scatter)  # ascending
    finally:
        torch.set_num_threads(threads)
    eigenvalues = eigenvalues.flip(0).clamp_min(0)
    eigenvectors = eigenvectors.flip(1)[:, :rank]
    peaks = eigenvectors.abs().argmax(dim=0)
    signs = torch.sign(eigenvectors[peaks, torch.arange(rank)])
    eigenvectors = eigenvectors * torch.where(signs == 0, torch.ones_like(signs), signs)
    components = eigenvectors.T.contiguous().to(torch.float32)  # [rank, width]

    coordinates = torch.empty(count, rank, dtype=torch.float32)
    for lo in range(0, count, chunk_rows):
        coordinates[lo:lo + chunk_rows] = (rows[lo:lo + chunk_rows] - mean) @ components.T
    total = float(eigenvalues.sum())
    ratio = (eigenvalues[:rank] / total).numpy() if total > 0 else np.zeros(rank)
    seconds = time.perf_counter() - start
    logger.info("factorized %d x %d embeddings to rank %d in %.2f s (explained variance %.3f)",
                count, width, rank, seconds, float(ratio.sum()))
    return Factorization(coordinates=coordinates.numpy(), components=components.numpy(), mean=mean.numpy(),
                         explained_variance_ratio=ratio.astype(np.float64), seconds=seconds)
