"""Which files train and which select: gold, silver, dev standing in for train; silver never selects."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import write_gold_tree
from polyner.data.iob2 import GoldFile
from polyner.data.training_sets import (encode_training_files, group_of, group_weights, selection_files,
                                        selection_sentences, silver_only_without_gold, training_files)
from polyner.training.sampling import MixedLanguageSampler


def _write(path: Path, rows: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "\n\n".join("\n".join(f"{w}\t{t}" for w, t in zip(s.split(), tags.split())) for s, tags in rows)
    path.write_text(body + "\n", encoding="utf-8")


@pytest.fixture()
def trees(tmp_path) -> tuple[Path, Path]:
    gold = write_gold_tree(tmp_path / "gold")
    row = [("Tallinn on pealinn .", "B-LOC O O O")]
    _write(gold / "estner" / "et" / "dev.iob2", row)  # et: dev and test only, no train anywhere in gold
    _write(gold / "estner" / "et" / "test.iob2", row)
    _write(gold / "ssj" / "en" / "dev.iob2", row)  # en has gold train elsewhere: this dev stays a dev
    silver = tmp_path / "silver"
    for split in ("train", "dev", "test"):
        _write(silver / "wikiann" / "de" / f"{split}.iob2", [("Berlin ist groß .", "B-LOC O O O")])
    for split in ("dev", "test"):  # no train split: its dev trains
        _write(silver / "wikineural" / "en" / f"{split}.iob2", [("Paris is big .", "B-LOC O O O")])
    return gold, silver


def _names(files) -> set[tuple[str, str, str, str]]:
    return {(f.kind, f.source, f.lang, f.split) for f in files}


def test_training_files_follow_the_rules(trees):
    gold, silver = trees
    train = training_files(gold, silver)
    names = _names(train)
    assert ("gold", "estner", "et", "dev") in names  # a language without any gold train trains on its dev
    assert ("gold", "ssj", "en", "dev") not in names  # not when the language has gold train elsewhere
    assert ("silver", "wikiann", "de", "train") in names and ("silver", "wikiann", "de", "dev") not in names
    assert ("silver", "wikineural", "en", "dev") in names  # silver source without train: its dev trains
    assert not any(f.split == "test" for f in train)
    assert _names(training_files(gold)) == {n for n in names if n[0] == "gold"}
    assert {f.lang for f in training_files(gold, silver, langs=["de"])} == {"de"}
    assert not any(f.source == "wikiann" for f in training_files(gold, silver, exclude_sources=["wikiann"]))


def test_silver_labels_only_where_gold_has_none(trees, tmp_path):
    gold, silver = trees
    _write(silver / "wikiann" / "sw" / "train.iob2", [("Nairobi ni mji .", "B-LOC O O O")])
    files = training_files(gold, silver)
    kept = _names(silver_only_without_gold(files))
    gold_languages = {f.lang for f in files if f.kind == "gold"}
    assert {"de", "en"} <= gold_languages and "sw" not in gold_languages
    assert ("silver", "wikiann", "sw", "train") in kept  # sw has only silver: its labels stay
    assert not any(kind == "silver" and lang in gold_languages for kind, _, lang, _ in kept)
    assert {n for n in kept if n[0] == "gold"} == {n for n in _names(files) if n[0] == "gold"}


def test_selection_never_uses_silver_or_a_dev_that_trains(trees):
    gold, silver = trees
    train = training_files(gold, silver)
    dev = selection_files(gold, training=train)
    assert all(f.kind == "gold" and f.split == "dev" for f in dev)
    assert ("gold", "estner", "et", "dev") not in _names(dev)
    assert ("gold", "ssj", "en", "dev") in _names(dev)
    assert {f.lang for f in dev} == {"en", "de", "ru"}


def test_selection_sentences_spread_over_the_file_not_its_opening(tmp_path):
    """A file that opens with sentences without entities (a listing, one document) still selects on entities."""
    rows = [(f"plain sentence {i} .", "O O O O") for i in range(40)]
    rows += [(f"Oslo number {i} .", "B-LOC O O O") for i in range(60)]
    path = tmp_path / "norne" / "nn" / "dev.iob2"
    _write(path, rows)
    file = GoldFile("norne", "nn", "dev", path)
    picked = selection_sentences([file], 10)
    assert len(picked) == 10 and len({" ".join(s.words) for s in picked}) == 10
    assert sum(s.tags[0] == "B-LOC" for s in picked) == 6  # in proportion: the first ten would hold none
    assert [s.words[2] for s in picked][:2] == ["5", "15"]  # the middle of each tenth: deterministic
    assert len(selection_sentences([file], 500)) == 100 and len(selection_sentences([file], None)) == 100
    assert all(s.lang == "nn" and s.source == "norne" for s in picked)


def test_group_weights_pull_silver_less(trees):
    gold, silver = trees
    train = training_files(gold, silver)
    weights = group_weights(train, 0.25)
    assert {weights[group_of(f)] for f in train if f.kind == "silver"} == {0.25}
    assert {weights[group_of(f)] for f in train if f.kind == "gold"} == {1.0}
    groups = [group_of(f) for f in train for _ in range(100)]
    sampler = MixedLanguageSampler(groups, alpha=1.0, seed=0, weights=weights)
    drawn = [groups[i] for step in range(200) for i in sampler.batch(step, 16)]
    silver_share = sum(g.startswith("silver/") for g in drawn) / len(drawn)
    n_silver = sum(f.kind == "silver" for f in train)
    expected = 0.25 * n_silver / (0.25 * n_silver + len(train) - n_silver)
    assert silver_share == pytest.approx(expected, abs=0.03)


def test_bucketed_batches_are_repeatable_similar_in_length_and_cover_the_draw():
    rng = np.random.default_rng(0)
    langs = ["en"] * 300 + ["de"] * 300
    lengths = rng.integers(3, 64, size=len(langs))
    sampler = MixedLanguageSampler(langs, seed=5, lengths=lengths, bucket=8)
    again = MixedLanguageSampler(list(langs), seed=5, lengths=lengths, bucket=8)
    assert [sampler.batch(s, 16) for s in range(16)] == [again.batch(s, 16) for s in reversed(range(16))][::-1]
    spread_bucketed = np.mean([np.ptp(lengths[sampler.batch(s, 16)]) for s in range(64)])
    plain = MixedLanguageSampler(langs, seed=5)
    spread_plain = np.mean([np.ptp(lengths[plain.batch(s, 16)]) for s in range(64)])
    assert spread_bucketed < spread_plain / 3  # far less padding
    block = sorted(i for s in range(8) for i in sampler.batch(s, 16))
    assert len(block) == 128  # the 8 batches of a block are one draw of 128, cut by length
    with pytest.raises(ValueError, match="one length per sentence"):
        MixedLanguageSampler(langs, bucket=4)
    with pytest.raises(ValueError, match="bucket"):
        MixedLanguageSampler(langs, lengths=lengths, bucket=0)


def test_lower_cased_copies_join_their_files_group(trees, tokenizer, tmp_path, monkeypatch):
    """lowercase_share: per file, lower-cased copies of that share of its sentences, labels unchanged, in the file's
    sampling group; the originals stay first and as written; the copies are cached apart from the originals."""
    monkeypatch.setenv("POLYNER_HOME", str(tmp_path / "home"))
    gold, _ = trees
    files = training_files(gold)
    plain, plain_groups = encode_training_files(tokenizer, files, 32)
    mixed, groups = encode_training_files(tokenizer, files, 32, lowercase_share=1.0, seed=3)
    assert len(mixed) == 2 * len(plain) and sorted(set(groups)) == sorted(set(plain_groups))
    start = 0
    for file in files:  # each file: its sentences as written, then as many lower-cased copies
        n = plain_groups.count(group_of(file))
        assert groups[start:start + 2 * n] == [group_of(file)] * (2 * n)
        for i in range(n):
            original, copy = mixed.example(start + i), mixed.example(start + n + i)
            assert [int(x) for x in original[0]] == [int(x) for x in plain.example(plain_groups.index(group_of(file)) + i)[0]]
            assert [int(x) for x in copy[1] if x >= 0] == [int(x) for x in original[1] if x >= 0]  # word labels
            words = tokenizer.convert_ids_to_tokens([int(x) for x in copy[0]])
            assert not any(ch.isupper() for piece in words if piece not in tokenizer.all_special_tokens for ch in piece)
        start += 2 * n
    assert len(encode_training_files(tokenizer, files, 32, lowercase_share=0.5, seed=3)[0]) == \
        len(plain) + sum(round(0.5 * plain_groups.count(group_of(f))) for f in files)
    with pytest.raises(ValueError, match="lowercase_share must be between 0 and 1, not 1.5"):
        encode_training_files(tokenizer, files, 32, lowercase_share=1.5)


def test_lower_cased_copies_only_of_sentences_with_a_capital(tmp_path, tokenizer, monkeypatch):
    """A sentence without capitals (any caseless script) would be copied as it is: it is not copied; Turkish lowers
    İ and I to i and ı."""
    from polyner.data.iob2 import Sentence
    from polyner.data.training_sets import lowercased

    monkeypatch.setenv("POLYNER_HOME", str(tmp_path / "home"))
    _write(tmp_path / "gold" / "src" / "en" / "train.iob2", [("Paris is big .", "B-LOC O O O"),
                                                            ("it is big .", "O O O O")])
    files = training_files(tmp_path / "gold")
    encoded, groups = encode_training_files(tokenizer, files, 32, lowercase_share=1.0)
    assert len(encoded) == 3 and groups == ["gold/src/en"] * 3
    turkish, english = lowercased([Sentence(["İSTANBUL"], ["B-LOC"], "tr"), Sentence(["İstanbul"], ["B-LOC"], "en")])
    assert (turkish.words, english.words) == (["istanbul"], ["i̇stanbul"])
