"""Vocabulary trimming and embedding factorization (polyner.distill.vocab), on the tiny Unigram tokenizer."""
from __future__ import annotations

import collections
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from polyner.distill.vocab import (
    language_balanced_ranking,
    Factorization,
    count_pieces,
    factorize_embeddings,
    is_single_char,
    remap_ids,
    select_vocabulary,
    trim_tokenizer,
)

from conftest import SAMPLE_TEXTS

TEXTS = list(dict.fromkeys(SAMPLE_TEXTS))
WORDS = [text.split() for text in TEXTS]
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def pieces_of(tokenizer) -> list[str]:
    vocab = tokenizer.get_vocab()
    out = [""] * len(vocab)
    for piece, index in vocab.items():
        out[index] = piece
    return out


# -- counting --------------------------------------------------------------------------------------

def test_count_pieces_matches_the_tokenizer(tokenizer):
    counts = count_pieces(tokenizer, texts=TEXTS[:5], word_lists=WORDS[5:9], batch_size=2)
    expected = collections.Counter()
    for ids in tokenizer(TEXTS[:5], add_special_tokens=False)["input_ids"]:
        expected.update(ids)
    for ids in tokenizer(WORDS[5:9], is_split_into_words=True, add_special_tokens=False)["input_ids"]:
        expected.update(ids)
    assert counts == expected
    assert all(isinstance(k, int) and isinstance(v, int) for k, v in counts.items())
    assert tokenizer.bos_token_id not in counts


def test_count_pieces_inputs(tokenizer, tokenizer_dir):
    from tokenizers import Tokenizer

    words = [["Angela", "Merkel"], [], ["Paris"]]  # an empty sentence is skipped
    reference = count_pieces(tokenizer, word_lists=words)
    assert reference == count_pieces(Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json")), word_lists=words)
    assert reference == count_pieces(tokenizer_dir, word_lists=iter(words))  # a generator and a directory
    assert count_pieces(tokenizer) == collections.Counter()
    with_specials = count_pieces(tokenizer, word_lists=words, add_special_tokens=True)
    assert with_specials[0] == 2 and with_specials[2] == 2


def test_count_pieces_ignores_padding_left_on_the_backend(tokenizer):
    tokenizer(TEXTS[:3], padding=True)  # may leave padding switched on in the shared backend
    counts = count_pieces(tokenizer, texts=TEXTS[:3])
    assert tokenizer.pad_token_id not in counts
    assert sum(counts.values()) == sum(len(ids) for ids in tokenizer(TEXTS[:3], add_special_tokens=False)["input_ids"])


# -- selection -------------------------------------------------------------------------------------

def test_select_keeps_specials_and_single_chars(tokenizer):
    counts = count_pieces(tokenizer, texts=TEXTS[:2])
    keep = select_vocabulary(tokenizer, counts)
    pieces = pieces_of(tokenizer)
    assert keep == sorted(set(keep))
    assert {tokenizer.convert_tokens_to_ids(s) for s in SPECIALS} <= set(keep)
    singles = {i for i, p in enumerate(pieces) if is_single_char(p)}
    assert singles and singles <= set(keep)
    assert set(counts) <= set(keep)
    assert set(keep) == singles | set(counts) | {tokenizer.convert_tokens_to_ids(s) for s in SPECIALS}
    assert len(keep) < len(pieces)

    bare = select_vocabulary(tokenizer, counts, keep_single_chars=False)
    assert set(bare) == set(counts) | {tokenizer.convert_tokens_to_ids(s) for s in SPECIALS}


def test_seen_single_chars_are_kept_even_when_the_cap_is_tight(tokenizer):
    """keep_single_chars=False still keeps every single character the text has (else it would be <unk>)."""
    counts = count_pieces(tokenizer, texts=TEXTS[:2])
    pieces = pieces_of(tokenizer)
    seen_singles = {i for i in counts if is_single_char(pieces[i])}
    specials = {tokenizer.convert_tokens_to_ids(s) for s in SPECIALS}
    keep = select_vocabulary(tokenizer, counts, keep_single_chars=False, max_size=len(specials | seen_singles))
    assert seen_singles and seen_singles | specials == set(keep)


def test_language_balanced_ranking():
    counts = {"big": collections.Counter({1: 990, 2: 10}), "small": collections.Counter({3: 9, 4: 1})}
    balanced = language_balanced_ranking(counts, alpha=0.0)
    assert balanced[1] == pytest.approx(0.99) and balanced[3] == pytest.approx(0.9)  # same pull per language
    assert sorted(balanced, key=lambda i: -balanced[i])[:2] == [1, 3]
    plain = language_balanced_ranking(counts, alpha=1.0)
    assert plain == pytest.approx({1: 990, 2: 10, 3: 9, 4: 1})  # alpha 1: the plain counts
    half = language_balanced_ranking(counts, alpha=0.5)
    assert plain[2] > plain[3] and half[3] > half[2]  # between the two: the small language's top piece wins


def test_select_takes_pieces_in_ranking_order(tokenizer):
    counts = count_pieces(tokenizer, texts=TEXTS[:2])
    pieces = pieces_of(tokenizer)
    multi = sorted(i for i in counts if not is_single_char(pieces[i]))
    specials = {tokenizer.convert_tokens_to_ids(s) for s in SPECIALS}
    singles = {i for i in counts if is_single_char(pieces[i])}
    favourite = multi[-1]
    ranking = {i: (1000.0 if i == favourite else float(counts[i])) for i in counts}
    keep = select_vocabulary(tokenizer, counts, keep_single_chars=False, ranking=ranking,
                             max_size=len(specials | singles) + 1)
    assert set(keep) - specials - singles == {favourite}


def test_is_single_char():
    assert is_single_char("x") and is_single_char("\u2581x") and is_single_char("\u2581") and is_single_char("東")
    assert not is_single_char("ab") and not is_single_char("\u2581ab") and not is_single_char("x\u2581")


def test_select_min_count_and_max_size(tokenizer):
    counts = collections.Counter({100: 9, 101: 5, 102: 5, 103: 1, 10**6: 50})  # an out-of-vocabulary id is ignored
    pieces = pieces_of(tokenizer)
    counts = collections.Counter({i: c for i, c in counts.items() if i >= len(pieces) or not is_single_char(pieces[i])})
    assert counts, "the tiny vocabulary should have multi-character pieces at these ids"
    base = select_vocabulary(tokenizer, {})
    assert select_vocabulary(tokenizer, counts, min_count=5) == sorted(set(base) | {i for i, c in counts.items()
                                                                              if c >= 5 and i < len(pieces)})
    capped = select_vocabulary(tokenizer, counts, max_size=len(base) + 2)
    assert len(capped) == len(base) + 2
    frequent = sorted((i for i in counts if i < len(pieces)), key=lambda i: (-counts[i], i))[:2]
    assert set(capped) == set(base) | set(frequent)  # most frequent first, ties by lower id
    with pytest.raises(ValueError, match="max_size"):
        select_vocabulary(tokenizer, counts, max_size=len(base) - 1)
    only_specials = select_vocabulary(tokenizer, {}, keep_single_chars=False)
    assert only_specials == sorted(tokenizer.convert_tokens_to_ids(s) for s in SPECIALS)


# -- trimming --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trimmed(tokenizer, tmp_path_factory):
    """The tiny tokenizer trimmed to what the first half of the texts use (plus specials, single chars)."""
    counts = count_pieces(tokenizer, texts=TEXTS[:8], word_lists=WORDS[:8])
    keep = select_vocabulary(tokenizer, counts)
    out = tmp_path_factory.mktemp("trimmed")
    new, mapping = trim_tokenizer(tokenizer.name_or_path, keep, out)
    return new, mapping, keep, out


def test_trim_layout(tokenizer, trimmed):
    new, mapping, keep, out = trimmed
    assert len(new) == len(keep) < len(tokenizer)
    assert mapping.shape == (len(tokenizer),) and mapping.dtype == np.int64
    assert (mapping[keep] == np.arange(len(keep))).all()
    assert (np.delete(mapping, keep) == -1).all()
    for name in ("bos", "pad", "eos", "unk", "mask"):
        old = getattr(tokenizer, f"{name}_token_id")
        assert getattr(new, f"{name}_token_id") == mapping[old]
    assert [new.bos_token_id, new.pad_token_id, new.eos_token_id, new.unk_token_id] == [0, 1, 2, 3]
    data = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
    old_data = json.loads((Path(tokenizer.name_or_path) / "tokenizer.json").read_text(encoding="utf-8"))
    assert data["model"]["vocab"] == [old_data["model"]["vocab"][i] for i in keep]  # old order, old scores
    assert data["model"]["unk_id"] == 3
    assert {t["content"]: t["id"] for t in data["added_tokens"]} == {s: int(mapping[tokenizer.convert_tokens_to_ids(s)])
                                                                     for s in SPECIALS}
    config = json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["model_max_length"] == 512 and config["pad_token"] == "<pad>"


def test_trimmed_ids_are_the_same_pieces_when_all_are_kept(tokenizer, trimmed):
    new, mapping, _, _ = trimmed
    for kwargs, batch in (({}, TEXTS[:8]), ({"is_split_into_words": True}, WORDS[:8])):
        old_ids = tokenizer(batch, **kwargs)["input_ids"]
        new_ids = new(batch, **kwargs)["input_ids"]
        for old, fresh in zip(old_ids, new_ids):
            assert tokenizer.convert_ids_to_tokens(old) == new.convert_ids_to_tokens(fresh)
            assert remap_ids(old, mapping).tolist() == fresh


def test_dropped_pieces_are_resegmented_not_unknown(tokenizer, trimmed):
    new, mapping, keep, _ = trimmed
    unseen = TEXTS[8:]
    old_ids = tokenizer(unseen, add_special_tokens=False)["input_ids"]
    assert any((mapping[ids] < 0).any() for ids in old_ids), "the held-out texts should need dropped pieces"
    new_ids = new(unseen, add_special_tokens=False)["input_ids"]
    for text, old, fresh in zip(unseen, old_ids, new_ids):
        assert fresh.count(new.unk_token_id) == old.count(tokenizer.unk_token_id)  # no new <unk>
        assert "".join(new.convert_ids_to_tokens(fresh)) == "".join(tokenizer.convert_ids_to_tokens(old))
        assert new.decode(fresh) == tokenizer.decode(old)
    with pytest.raises(ValueError, match="dropped"):
        remap_ids(next(ids for ids in old_ids if (mapping[ids] < 0).any()), mapping)


def test_minimal_vocabulary_spells_everything_with_single_characters(tokenizer, tmp_path):
    keep = select_vocabulary(tokenizer, {})  # specials and single characters only
    new, _ = trim_tokenizer(tokenizer.name_or_path, keep, tmp_path / "minimal")
    for text in TEXTS:
        old = tokenizer(text)["input_ids"]
        fresh = new(text)["input_ids"]
        assert fresh.count(new.unk_token_id) == old.count(tokenizer.unk_token_id)
        assert all(is_single_char(p) or p in SPECIALS for p in new.convert_ids_to_tokens(fresh))
        assert new.decode(fresh, skip_special_tokens=True) == tokenizer.decode(old, skip_special_tokens=True)


def test_save_load_round_trip(trimmed, tmp_path):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    new, _, _, out = trimmed
    reloaded = AutoTokenizer.from_pretrained(str(out))
    new.save_pretrained(tmp_path / "again")
    again = AutoTokenizer.from_pretrained(str(tmp_path / "again"))
    raw = Tokenizer.from_file(str(out / "tokenizer.json"))
    for kwargs, batch in (({}, TEXTS), ({"is_split_into_words": True}, WORDS)):
        ids = new(batch, **kwargs)["input_ids"]
        assert reloaded(batch, **kwargs)["input_ids"] == ids
        assert again(batch, **kwargs)["input_ids"] == ids
        assert [e.ids for e in raw.encode_batch(batch, is_pretokenized=bool(kwargs))] == ids
    assert type(again) is type(new) and len(again) == len(new)


def test_word_ids_and_offsets_work(tokenizer, trimmed):
    new, *_ = trimmed
    for text in TEXTS[:8]:  # all pieces kept: the same offsets and word ids as the original
        encoding = new(text, return_offsets_mapping=True)
        assert encoding["offset_mapping"] == tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
        assert encoding["offset_mapping"][1][0] == 0 and encoding["offset_mapping"][-2][1] == len(text.rstrip())
        words = text.split()
        encoding = new(words, is_split_into_words=True, return_offsets_mapping=True)
        word_ids = encoding.word_ids()
        assert word_ids == tokenizer(words, is_split_into_words=True).word_ids()
        assert word_ids[0] is None and word_ids[-1] is None
        assert sorted(set(w for w in word_ids if w is not None)) == list(range(len(words)))


@pytest.mark.parametrize("source", ["directory", "file", "transformers", "tokenizers"])
def test_trim_accepts_any_tokenizer_source(tokenizer, tokenizer_dir, trimmed, tmp_path, source):
    from tokenizers import Tokenizer

    _, mapping, keep, out = trimmed
    given = {"directory": tokenizer_dir, "file": tokenizer_dir / "tokenizer.json", "transformers": tokenizer,
             "tokenizers": Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))}[source]
    new, other = trim_tokenizer(given, keep, tmp_path / source)
    assert (other == mapping).all()
    assert new(WORDS, is_split_into_words=True)["input_ids"] == \
        trimmed[0](WORDS, is_split_into_words=True)["input_ids"]
    vocab = json.loads((tmp_path / source / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    reference = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    assert [p for p, _ in vocab] == [p for p, _ in reference]
    # in-memory sources carry the scores as the Rust JSON parser read them (at most an ulp or so away)
    assert np.allclose([s for _, s in vocab], [s for _, s in reference], rtol=1e-12, atol=0)


def test_xlm_roberta_class(tokenizer, trimmed, tmp_path):
    """The teacher's tokenizer_class: transformers 5 rebuilds the pipeline; what is saved is what runs."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    _, mapping, keep, _ = trimmed
    new, _ = trim_tokenizer(tokenizer.name_or_path, keep, tmp_path / "xlmr", tokenizer_class="XLMRobertaTokenizer")
    assert type(new).__name__ == "XLMRobertaTokenizer"
    config = json.loads((tmp_path / "xlmr" / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "XLMRobertaTokenizer"
    raw = Tokenizer.from_file(str(tmp_path / "xlmr" / "tokenizer.json"))
    reloaded = AutoTokenizer.from_pretrained(str(tmp_path / "xlmr"))
    ids = new(WORDS, is_split_into_words=True)["input_ids"]
    assert [e.ids for e in raw.encode_batch(WORDS, is_pretokenized=True)] == ids
    assert reloaded(WORDS, is_split_into_words=True)["input_ids"] == ids
    assert [new.bos_token_id, new.pad_token_id, new.eos_token_id, new.unk_token_id] == [0, 1, 2, 3]
    assert new.mask_token_id == mapping[tokenizer.mask_token_id]
    latin = [w for w in WORDS[:8] if all(word.isascii() for word in w)]  # no NFKC differences there
    for words in latin:
        old = tokenizer(words, is_split_into_words=True)["input_ids"]
        assert new.convert_ids_to_tokens(new(words, is_split_into_words=True)["input_ids"]) == \
            tokenizer.convert_ids_to_tokens(old)
    assert new(WORDS[0], is_split_into_words=True).word_ids()[1] == 0


def test_trim_rejects_bad_keep_ids(tokenizer, tmp_path):
    keep = select_vocabulary(tokenizer, {})
    with pytest.raises(ValueError, match="not in keep_ids"):
        trim_tokenizer(tokenizer.name_or_path, [i for i in keep if i != tokenizer.unk_token_id], tmp_path / "a")
    with pytest.raises(ValueError, match="keep_ids"):
        trim_tokenizer(tokenizer.name_or_path, keep + [len(tokenizer) + 5], tmp_path / "b")


# -- factorization ---------------------------------------------------------------------------------

def synthetic_embeddings(rows=600, width=48, seed=0):
    """Rows with a decaying spectrum around a non-zero mean."""
    rng = np.random.default_rng(seed)
    scales = np.geomspace(3.0, 0.01, width)
    basis = np.linalg.qr(rng.normal(size=(width, width)))[0]
    return (rng.normal(size=(rows, width)) * scales @ basis.T + rng.normal(size=width)).astype(np.float32)


def test_factorization_shapes_and_full_rank():
    weights = synthetic_embeddings()
    keep = list(range(0, 600, 2))
    result = factorize_embeddings(weights, keep, rank=48)
    coordinates, components, mean = result  # unpacks as a triple
    assert isinstance(result, Factorization) and result.rank == 48
    assert coordinates.shape == (300, 48) and components.shape == (48, 48) and mean.shape == (48,)
    assert coordinates.dtype == components.dtype == mean.dtype == np.float32
    kept = weights[keep]
    assert np.allclose(mean, kept.mean(axis=0), atol=1e-5)
    error = np.linalg.norm(coordinates @ components + mean - kept) / np.linalg.norm(kept)
    assert error < 1e-5
    assert np.allclose(components @ components.T, np.eye(48), atol=1e-5)
    assert result.explained_variance_ratio.sum() == pytest.approx(1.0, abs=1e-6)
    assert (np.diff(result.explained_variance_ratio) <= 1e-12).all()


def test_factorization_error_decreases_with_rank():
    weights = torch.from_numpy(synthetic_embeddings(seed=1))  # a torch tensor works too
    kept = weights.numpy()
    errors, explained = [], []
    for rank in (1, 4, 16, 32, 48):
        result = factorize_embeddings(weights, None, rank=rank)
        assert result.coordinates.shape == (600, rank)
        errors.append(float(np.linalg.norm(result.reconstruct() - kept)))
        explained.append(float(result.explained_variance_ratio.sum()))
    assert all(a > b for a, b in zip(errors, errors[1:]))
    assert all(a < b for a, b in zip(explained, explained[1:]))
    # the PCA optimum: the squared error left is the variance not explained
    centered = kept - kept.mean(axis=0)
    result = factorize_embeddings(weights, None, rank=16)
    left = np.linalg.norm(result.reconstruct() - kept) ** 2 / np.linalg.norm(centered) ** 2
    assert left == pytest.approx(1 - result.explained_variance_ratio.sum(), abs=1e-4)


def test_factorization_is_deterministic_and_uncentered_option():
    weights = synthetic_embeddings(seed=2)
    a, b = factorize_embeddings(weights, range(100), 8), factorize_embeddings(weights, range(100), 8)
    assert np.array_equal(a.components, b.components)
    assert (np.abs(a.components).argmax(axis=1) == np.argmax(a.components, axis=1)).all()  # peak entry positive
    plain = factorize_embeddings(weights, range(100), 48, center=False)
    assert not plain.mean.any()
    assert np.allclose(plain.coordinates @ plain.components, weights[:100], atol=1e-4)


def test_factorization_rejects_bad_input():
    weights = synthetic_embeddings(rows=10, width=8)
    with pytest.raises(ValueError, match="rank"):
        factorize_embeddings(weights, range(10), rank=9)
    with pytest.raises(ValueError, match="rank"):
        factorize_embeddings(weights, range(10), rank=0)
    with pytest.raises(ValueError, match="range"):
        factorize_embeddings(weights, [0, 10], rank=1)
    with pytest.raises(ValueError, match="2-D"):
        factorize_embeddings(weights[0], None, rank=1)


# -- the real teacher (opt-in) ---------------------------------------------------------------------

@pytest.mark.slow
def test_real_teacher_trim_and_factorize(tmp_path):
    """Set POLYNER_TEACHER_DIR to a converted multilingual-e5-small directory to run this."""
    folder = os.environ.get("POLYNER_TEACHER_DIR")
    if not folder or not (Path(folder) / "tokenizer.json").exists():
        pytest.skip("POLYNER_TEACHER_DIR is not set to a teacher directory")
    from safetensors import safe_open
    from transformers import AutoTokenizer

    teacher = AutoTokenizer.from_pretrained(folder)
    assert len(teacher) == 250002
    counts = count_pieces(teacher, texts=TEXTS, word_lists=WORDS)
    keep = select_vocabulary(teacher, counts)
    assert 15_000 < len(keep) < 20_000 and keep[-1] == teacher.mask_token_id
    start = time.perf_counter()
    new, mapping = trim_tokenizer(folder, keep, tmp_path / "trimmed")
    print(f"trim {time.perf_counter() - start:.1f} s, {len(new)} pieces, {type(new).__name__}")
    assert new.mask_token_id == len(keep) - 1 and new.unk_token_id == 3
    for kwargs, batch in (({}, TEXTS), ({"is_split_into_words": True}, WORDS)):
        old = teacher(batch, **kwargs)["input_ids"]
        assert new(batch, **kwargs)["input_ids"] == [remap_ids(ids, mapping).tolist() for ids in old]
    text = "Unbekannte Wörter werden zerlegt, nicht verworfen: Donaudampfschifffahrtsgesellschaft"
    assert new(text)["input_ids"].count(3) == 0
    with safe_open(str(Path(folder) / "model.safetensors"), "pt") as handle:
        embeddings = handle.get_tensor("embeddings.word_embeddings.weight")
    result = factorize_embeddings(embeddings, keep, rank=128)
    print(f"factorize {result.seconds:.2f} s, explained variance {result.explained_variance_ratio.sum():.3f}")
    assert result.coordinates.shape == (len(keep), 128) and result.components.shape == (128, embeddings.shape[1])


def test_packed_tokenizer_loads_its_file_as_is_with_the_same_ids(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    from polyner.distill.package import TOKENIZER_PROBES, use_fast_tokenizer_file

    keep = select_vocabulary(tokenizer, count_pieces(tokenizer, texts=SAMPLE_TEXTS))
    trimmed, _ = trim_tokenizer(tokenizer.name_or_path, keep, tmp_path / "student")
    before = trimmed(TOKENIZER_PROBES + SAMPLE_TEXTS, return_offsets_mapping=True)
    assert use_fast_tokenizer_file(tmp_path / "student")
    config = json.loads((tmp_path / "student" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    after = AutoTokenizer.from_pretrained(str(tmp_path / "student"))
    again = after(TOKENIZER_PROBES + SAMPLE_TEXTS, return_offsets_mapping=True)
    assert again["input_ids"] == before["input_ids"] and again["offset_mapping"] == before["offset_mapping"]
    assert not use_fast_tokenizer_file(tmp_path / "nowhere")


def test_pieces_that_glue_a_particle_to_a_word_can_be_left_out(tmp_path):
    """XLM-R has pieces like 在北京 and 日本の: with them a word edge (北京大学 starts after 在) falls inside a piece,
    where no label can mark it. ``drop_particle_pieces`` leaves them out, and the trimmed tokenizer cuts around them."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from polyner.distill.vocab import joins_particle

    assert joins_particle("在北京") and joins_particle("\u2581的中国") and joins_particle("日本の")
    assert joins_particle("公司在")  # 丰田汽车公司在东京: the organisation would end inside the piece
    assert not any(joins_particle(p) for p in ("北京", "在", "\u2581在", "Paris", "在Paris"))
    text = "他曾在北京大学学习"
    vocab = [(t, 0.0) for t in ("<s>", "<pad>", "</s>", "<unk>")] + [("\u2581", -2.0), ("在北京", -2.5)]
    vocab += [(p, -3.0) for p in ("北京", "大学", "学习")] + [(c, -5.0) for c in sorted(set(text))]
    raw = Tokenizer(models.Unigram(vocab, unk_id=3))
    raw.pre_tokenizer = pre_tokenizers.Metaspace()
    raw.decoder = decoders.Metaspace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", cls_token="<s>", eos_token="</s>",
                                        sep_token="</s>", unk_token="<unk>", pad_token="<pad>")
    assert "在北京" in tokenizer.tokenize(text)
    counts = count_pieces(tokenizer, texts=[text, "北京大学"])  # 北京 is a piece of the text elsewhere
    assert select_vocabulary(tokenizer, counts) == select_vocabulary(tokenizer, counts, drop_particle_pieces=False)
    keep = select_vocabulary(tokenizer, counts, drop_particle_pieces=True)
    assert tokenizer.convert_tokens_to_ids("在北京") not in keep
    trimmed, _ = trim_tokenizer(tokenizer, keep, tmp_path / "trimmed")
    pieces = trimmed.tokenize(text)
    assert "北京" in pieces and "在北京" not in pieces
    ends = np.cumsum([len(p.lstrip("\u2581")) for p in pieces]).tolist()
    assert text.index("北京") in ends and text.index("学习") in ends  # 北京大学 starts and ends between pieces


def test_words_of_unspaced_scripts_keep_the_bare_piece_the_tagger_cuts_runs_with(tmp_path):
    """Pre-split words count 东京 as ▁东京, but the tagger cuts 东京 out of running text (他在东京), where the piece
    is the bare 东京: the vocabulary keeps both, so the run is not cut into 东 京."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from polyner.distill.vocab import count_bare_forms
    from polyner.tagging.words import segment_words, tokenizer_run_splitter

    vocab = [(t, 0.0) for t in ("<s>", "<pad>", "</s>", "<unk>")] + [("\u2581", -2.0), ("\u2581东京", -2.5),
                                                                     ("东京", -2.5), ("\u2581Paris", -2.5),
                                                                     ("Paris", -2.5)]
    vocab += [(c, -5.0) for c in "他在东京Pars"] + [("\u2581他", -5.0)]
    raw = Tokenizer(models.Unigram(vocab, unk_id=3))
    raw.pre_tokenizer = pre_tokenizers.Metaspace()
    raw.decoder = decoders.Metaspace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", cls_token="<s>", eos_token="</s>",
                                        sep_token="</s>", unk_token="<unk>", pad_token="<pad>")
    counts = count_pieces(tokenizer, word_lists=[["他", "在", "东京"], ["Paris"]])
    ids = tokenizer.convert_tokens_to_ids
    assert ids("东京") not in counts and counts[ids("\u2581东京")] == 1
    mirrored = count_bare_forms(tokenizer, counts)
    assert mirrored[ids("东京")] == 1 and ids("Paris") not in mirrored  # Latin words are not cut from runs
    assert mirrored - counts == {ids("东京"): 1, ids("他"): 1}  # 他 was counted as ▁他 only, too
    text = "他在东京"
    for chosen, words in ((counts, ["他", "在", "东", "京"]), (mirrored, ["他", "在", "东京"])):
        trimmed, _ = trim_tokenizer(tokenizer, select_vocabulary(tokenizer, chosen),
                                    tmp_path / str(len(chosen)))
        assert [text[a:b] for a, b in segment_words(text, tokenizer_run_splitter(trimmed))] == words


def test_a_teacher_read_through_a_trimmed_vocabulary_gives_its_own_outputs(tmp_path, teacher_dir, tokenizer):
    """benchmarks/teacher_vocab.py: where the trimmed vocabulary cuts a sentence as the teacher's does, the trimmed
    copy of the teacher gives the teacher's own logits (the embedding rows follow the kept ids)."""
    import numpy as np
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from benchmarks.teacher_vocab import write_trimmed_teacher

    text = "Angela Merkel visited Paris"
    teacher_ids = tokenizer(text)["input_ids"]
    keep = np.unique(np.concatenate([tokenizer.all_special_ids, teacher_ids, np.arange(100, 200)]))
    write_trimmed_teacher(str(teacher_dir), tokenizer, keep, tmp_path / "trimmed")
    trimmed_tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "trimmed"))
    trimmed_ids = trimmed_tokenizer(text)["input_ids"]
    assert [int(keep[i]) for i in trimmed_ids] == teacher_ids
    teacher = AutoModelForTokenClassification.from_pretrained(str(teacher_dir)).eval()
    trimmed = AutoModelForTokenClassification.from_pretrained(str(tmp_path / "trimmed")).eval()
    assert trimmed.config.vocab_size == len(keep)
    with torch.no_grad():
        expected = teacher(torch.tensor([teacher_ids])).logits
        found = trimmed(torch.tensor([trimmed_ids])).logits
    torch.testing.assert_close(found, expected)
