"""Data layer: IOB2 reading, gold discovery, subword alignment and its cache, WikiAnn from a local copy."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import CJK_TEXTS, GOLD
from polyner.data.align import align_labels, cached_encode, encode_sentences
from polyner.data.iob2 import Sentence, discover_gold, read_gold, read_iob2
from polyner.labels import IGNORE_INDEX, LABEL2ID, LABELS


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- read_iob2 -------------------------------------------------------------------------------------


def test_read_iob2_tab_separated_with_docstart(tmp_path):
    path = _write(tmp_path / "a.iob2", "-DOCSTART-\tO\n\n"
                                      "Angela\tB-PER\nMerkel\tI-PER\nvisited\tO\nParis\tB-LOC\n.\tO\n\n"
                                      "-DOCSTART-\tO\n\n"
                                      "The\tO\nUnited\tB-ORG\nNations\tI-ORG\n")
    sentences = read_iob2(path, lang="en", source="src")
    assert [s.words for s in sentences] == [["Angela", "Merkel", "visited", "Paris", "."],
                                            ["The", "United", "Nations"]]
    assert [s.tags for s in sentences] == [["B-PER", "I-PER", "O", "B-LOC", "O"], ["O", "B-ORG", "I-ORG"]]
    assert all(s.lang == "en" and s.source == "src" for s in sentences)
    assert all(isinstance(s, Sentence) for s in sentences)


def test_read_iob2_space_separated_tag_is_last_column(tmp_path):
    # CoNLL-2003 layout: word POS chunk NER; extra blank lines and CRLF endings are harmless.
    path = _write(tmp_path / "b.txt", "-DOCSTART- -X- -X- O\n\n\n"
                                      "EU NNP B-NP B-ORG\r\nrejects VBZ B-VP O\r\n"
                                      "German JJ B-NP B-MISC\r\n\r\n\r\n"
                                      "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n")
    sentences = read_iob2(path)
    assert [s.words for s in sentences] == [["EU", "rejects", "German"], ["Peter", "Blackburn"]]
    assert [s.tags for s in sentences] == [["B-ORG", "O", "O"], ["B-PER", "I-PER"]]


def test_read_iob2_tab_separated_keeps_spaces_inside_words(tmp_path):
    path = _write(tmp_path / "c.iob2", "New York\tB-LOC\ncity\tO\n")
    (sentence,) = read_iob2(path)
    assert sentence.words == ["New York", "city"]
    assert sentence.tags == ["B-LOC", "O"]


@pytest.mark.parametrize("raw, expected", [
    # IOB1: I- opens an entity unless it continues one; B- only separates adjacent same-type entities.
    ("I-PER I-PER O I-LOC B-LOC I-ORG", "B-PER I-PER O B-LOC B-LOC B-ORG"),
    # BIOES and BILOU prefixes.
    ("S-PER O B-ORG I-ORG E-ORG U-LOC B-LOC L-LOC", "B-PER O B-ORG I-ORG I-ORG B-LOC B-LOC I-LOC"),
    # Other entity types: long names map onto PER/ORG/LOC, the rest become O.
    ("B-PERSON I-PERSON B-GPE B-ORGANIZATION I-ORGANIZATION B-MISC I-MISC B-DATE O",
     "B-PER I-PER B-LOC B-ORG I-ORG O O O O"),
    ("B-LOCATION B-PERS I-PERS", "B-LOC B-PER I-PER"),
    # Orphan I- after O or after another type is repaired to B-.
    ("O I-ORG I-ORG B-PER I-LOC I-LOC", "O B-ORG I-ORG B-PER B-LOC I-LOC"),
    # An I- continuing a MISC that was dropped becomes an opener.
    ("B-MISC I-PER", "O B-PER"),
])
def test_read_iob2_normalises_tags_to_iob2(tmp_path, raw, expected):
    tags = raw.split()
    words = [f"w{i}" for i in range(len(tags))]
    path = _write(tmp_path / "t.iob2", "".join(f"{w}\t{t}\n" for w, t in zip(words, tags)))
    (sentence,) = read_iob2(path)
    assert sentence.words == words
    assert sentence.tags == expected.split()
    assert set(sentence.tags) <= set(LABELS)


def test_read_iob2_malformed_line_names_file_and_line(tmp_path):
    path = _write(tmp_path / "bad.iob2", "Angela\tB-PER\nMerkel\tI-PER\n\nlonely\n")
    with pytest.raises(ValueError) as info:
        read_iob2(path)
    assert f"{path}:4" in str(info.value)
    assert "lonely" in str(info.value)


def test_read_iob2_empty_file(tmp_path):
    assert read_iob2(_write(tmp_path / "empty.iob2", "\n\n")) == []


def test_sentence_rejects_length_mismatch():
    with pytest.raises(ValueError):
        Sentence(["a", "b"], ["O"])


# --- discover_gold ---------------------------------------------------------------------------------


def _keys(files):
    return sorted((f.source, f.lang, f.split) for f in files)


def test_discover_gold_all(gold_tree):
    files = discover_gold(gold_tree)
    assert _keys(files) == sorted((src, lang, split) for src, lang in
                                  [("src_a", "en"), ("src_a", "de"), ("src_b", "ru")]
                                  for split in ("train", "dev", "test"))
    for f in files:
        assert f.path == gold_tree / f.source / f.lang / f"{f.split}.iob2"
        assert f.path.is_file()


def test_discover_gold_filters(gold_tree):
    assert _keys(discover_gold(gold_tree, langs=["en", "ru"], splits=["dev"])) == [
        ("src_a", "en", "dev"), ("src_b", "ru", "dev")]
    assert _keys(discover_gold(gold_tree, splits=["train"], exclude_sources=["src_a"])) == [
        ("src_b", "ru", "train")]
    assert _keys(discover_gold(gold_tree, langs=["de"], splits=["test", "train"])) == [
        ("src_a", "de", "test"), ("src_a", "de", "train")]
    assert discover_gold(gold_tree, langs=["fr"]) == []
    assert discover_gold(gold_tree, langs=[]) == []


def test_discover_gold_ignores_other_files(gold_tree):
    (gold_tree / "src_a" / "en" / "notes.txt").write_text("not data")
    (gold_tree / "src_a" / "en" / "extra.iob2").write_text("x\tO\n")  # not a split name
    (gold_tree / "README.iob2").write_text("x\tO\n")  # wrong depth
    assert len(discover_gold(gold_tree)) == 9


def test_discover_gold_missing_root(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        discover_gold(missing)


def test_read_gold_caps_sentences_per_file(gold_tree):
    files = discover_gold(gold_tree, langs=["en"], splits=["dev"])
    assert len(list(read_gold(files))) == 2
    capped = list(read_gold(files, max_per_file=1))
    assert [s.words[0] for s in capped] == ["Angela"]
    assert capped[0].lang == "en" and capped[0].source == "src_a"


# --- subword alignment -----------------------------------------------------------------------------


def test_align_labels_first_subword_only():
    word_ids = [None, 0, 0, 1, 2, 2, 2, None]
    labels = align_labels(word_ids, ["B-PER", "I-PER", "O"])
    assert labels == [IGNORE_INDEX, LABEL2ID["B-PER"], IGNORE_INDEX, LABEL2ID["I-PER"], LABEL2ID["O"],
                      IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]


def test_align_labels_adjacent_words_each_labelled():
    assert align_labels([0, 1, 2], ["B-LOC", "B-ORG", "I-ORG"]) == [
        LABEL2ID["B-LOC"], LABEL2ID["B-ORG"], LABEL2ID["I-ORG"]]


def _sentences():
    return [
        Sentence("Angela Merkel visited Paris .".split(), ["B-PER", "I-PER", "O", "B-LOC", "O"], "en"),
        Sentence("Владимир Путин встретился в Москве .".split(), ["B-PER", "I-PER", "O", "O", "B-LOC", "O"], "ru"),
        Sentence(["Baden-Württemberg"], ["B-LOC"], "de"),
    ]


def test_encode_sentences_aligns_labels(tokenizer):
    sentences = _sentences()
    encoded = encode_sentences(tokenizer, sentences, max_length=64, batch_size=2)  # two tokenizer batches
    assert len(encoded) == 3
    assert encoded.langs == ["en", "ru", "de"]
    for i, sentence in enumerate(sentences):
        ids, labels = encoded.example(i)
        enc = tokenizer(sentence.words, is_split_into_words=True)
        assert ids.tolist() == enc["input_ids"]
        assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
        assert len(labels) == len(ids)
        assert labels[0] == IGNORE_INDEX and labels[-1] == IGNORE_INDEX
        kept = labels[labels != IGNORE_INDEX].tolist()
        assert kept == [LABEL2ID[t] for t in sentence.tags]  # one label per word, in order
    # at least one word is split into several pieces, so some inner pieces are ignored
    assert (encoded.labels == IGNORE_INDEX).sum() > 2 * len(sentences)


def test_encode_sentences_reads_character_level_chinese_as_the_tagger_reads_text(cjk_tokenizer):
    """Training sees the words the tagger cuts from the raw text (whole pieces), labelled by their first character."""
    from polyner.tagging.words import segment_words, tokenizer_run_splitter

    text = CJK_TEXTS[1]  # 他曾在北京大学学习, gold data one character per word (as MSRA zh, Stockmark ja)
    tags = ["O", "O", "O", "B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "O"]
    ids, labels = encode_sentences(cjk_tokenizer, [Sentence(list(text), tags, "zh")], max_length=64).example(0)
    words = [text[s:e] for s, e in segment_words(text, tokenizer_run_splitter(cjk_tokenizer))]
    assert words == ["他", "曾", "在", "北京", "大学", "学", "习"]
    pieces = cjk_tokenizer(words, is_split_into_words=True, add_special_tokens=False)["input_ids"]
    assert ids.tolist() == [cjk_tokenizer.cls_token_id] + pieces + [cjk_tokenizer.sep_token_id]  # as the tagger
    kept = labels[labels != IGNORE_INDEX].tolist()
    assert kept == [LABEL2ID[t] for t in ["O", "O", "O", "B-ORG", "I-ORG", "O", "O"]]


def test_encode_sentences_truncates(tokenizer):
    sentence = Sentence([f"Word{i}" for i in range(40)], ["B-PER"] + ["I-PER"] * 39, "en")
    encoded = encode_sentences(tokenizer, [sentence, _sentences()[0]], max_length=12)
    ids, labels = encoded.example(0)
    assert len(ids) == 12
    assert ids[-1] == tokenizer.eos_token_id
    kept = labels[labels != IGNORE_INDEX].tolist()
    assert 0 < len(kept) < 40
    assert kept == [LABEL2ID["B-PER"]] + [LABEL2ID["I-PER"]] * (len(kept) - 1)
    assert encoded.offsets.tolist() == [0, 12, 12 + len(encoded.example(1)[0])]
    assert len(encoded.example(1)[0]) <= 12


def test_encode_sentences_empty(tokenizer):
    encoded = encode_sentences(tokenizer, [], max_length=16)
    assert len(encoded) == 0
    assert encoded.offsets.tolist() == [0]


def test_cached_encode_writes_and_reuses(tokenizer, gold_tree, tmp_path):
    files = [f.path for f in discover_gold(gold_tree, splits=["train"])]
    calls: list[Path] = []

    def sentences_of(path):
        calls.append(path)
        return read_iob2(path, lang=path.parent.name)

    cache = tmp_path / "cache"
    cache.mkdir()
    first = cached_encode(tokenizer, files, sentences_of, max_length=32, cache=cache)
    assert calls == files
    stored = list(cache.glob("*.npz"))
    assert len(stored) == 1 and ".partial" not in stored[0].name
    assert len(first) == 4 and sorted(first.langs) == ["de", "en", "en", "ru"]

    second = cached_encode(tokenizer, files, sentences_of, max_length=32, cache=cache)
    assert calls == files  # not called again
    assert np.array_equal(second.ids, first.ids)
    assert np.array_equal(second.labels, first.labels)
    assert np.array_equal(second.offsets, first.offsets)
    assert second.langs == first.langs and all(type(x) is str for x in second.langs)

    # a different max_length is a different cache entry
    cached_encode(tokenizer, files, sentences_of, max_length=8, cache=cache)
    assert len(calls) == 2 * len(files)
    assert len(list(cache.glob("*.npz"))) == 2


def test_cached_encode_default_cache_is_polyner_home(tokenizer, gold_tree, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("POLYNER_HOME", str(home))
    files = [f.path for f in discover_gold(gold_tree, langs=["ru"], splits=["dev"])]
    cached_encode(tokenizer, files, read_iob2, max_length=16)
    assert len(list((home / "cache" / "tokenized").glob("*.npz"))) == 1


def test_cached_encode_sees_changed_file(tokenizer, gold_tree, tmp_path):
    path = gold_tree / "src_b" / "ru" / "dev.iob2"
    cache = tmp_path / "cache"
    cache.mkdir()
    before = cached_encode(tokenizer, [path], read_iob2, max_length=32, cache=cache)
    path.write_text("Москва\tB-LOC\n\nКиев\tB-LOC\n", encoding="utf-8")
    after = cached_encode(tokenizer, [path], read_iob2, max_length=32, cache=cache)
    assert len(before) == 1 and len(after) == 2


def test_cached_encode_keeps_entry_of_file_copied_again(tokenizer, gold_tree, tmp_path):
    """../shared is copied anew each session: same bytes, new modification time, same cache entry."""
    path = gold_tree / "src_b" / "ru" / "dev.iob2"
    cache = tmp_path / "cache"
    cache.mkdir()
    calls: list[Path] = []

    def sentences_of(p):
        calls.append(p)
        return read_iob2(p)

    cached_encode(tokenizer, [path], sentences_of, max_length=32, cache=cache)
    stat = path.stat()
    path.write_bytes(path.read_bytes())
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    cached_encode(tokenizer, [path], sentences_of, max_length=32, cache=cache)
    assert calls == [path] and len(list(cache.glob("*.npz"))) == 1
    # an edit that keeps the size and the modification time is still another entry
    path.write_text(path.read_text(encoding="utf-8").replace("B-LOC", "B-ORG", 1), encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    cached_encode(tokenizer, [path], sentences_of, max_length=32, cache=cache)
    assert calls == [path, path] and len(list(cache.glob("*.npz"))) == 2


# --- WikiAnn ---------------------------------------------------------------------------------------

WIKIANN_NAMES = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]


def _wikiann_copy(root: Path, lang: str = "xx") -> Path:
    import datasets

    features = datasets.Features({
        "tokens": datasets.Sequence(datasets.Value("string")),
        "ner_tags": datasets.Sequence(datasets.ClassLabel(names=WIKIANN_NAMES)),
        "langs": datasets.Sequence(datasets.Value("string")),
    })

    def split(rows):
        return datasets.Dataset.from_dict({
            "tokens": [r[0] for r in rows],
            "ner_tags": [[WIKIANN_NAMES.index(t) for t in r[1]] for r in rows],
            "langs": [[lang] * len(r[0]) for r in rows]}, features=features)

    data = datasets.DatasetDict({
        "train": split([(["Berlin"], ["B-LOC"])]),
        "validation": split([(["Angela", "Merkel"], ["B-PER", "I-PER"]),
                             (["the", "United", "Nations"], ["O", "I-ORG", "I-ORG"])]),  # orphan I-ORG
        "test": split([(["Paris", "is", "nice"], ["B-LOC", "O", "O"]),
                       (["Deutsche", "Bahn", "AG"], ["B-ORG", "I-ORG", "I-ORG"]),
                       (["Marie", "Curie", "in", "Warsaw"], ["B-PER", "I-PER", "O", "B-LOC"])]),
    })
    data.save_to_disk(str(root / lang))
    return root


def test_load_wikiann_from_local_copy(tmp_path):
    from polyner.data.wikiann import load_wikiann

    root = _wikiann_copy(tmp_path / "wikiann")
    test = load_wikiann("xx", "test", path=str(root))
    assert test == [
        Sentence(["Paris", "is", "nice"], ["B-LOC", "O", "O"], "xx", "wikiann"),
        Sentence(["Deutsche", "Bahn", "AG"], ["B-ORG", "I-ORG", "I-ORG"], "xx", "wikiann"),
        Sentence(["Marie", "Curie", "in", "Warsaw"], ["B-PER", "I-PER", "O", "B-LOC"], "xx", "wikiann"),
    ]
    dev = load_wikiann("xx", "dev", path=str(root))
    assert dev == [
        Sentence(["Angela", "Merkel"], ["B-PER", "I-PER"], "xx", "wikiann"),
        Sentence(["the", "United", "Nations"], ["O", "B-ORG", "I-ORG"], "xx", "wikiann"),
    ]
    assert load_wikiann("xx", "train", path=str(root)) == [Sentence(["Berlin"], ["B-LOC"], "xx", "wikiann")]
    assert [s.words[0] for s in load_wikiann("xx", "test", path=str(root), limit=2)] == ["Paris", "Deutsche"]
    # a DatasetDict saved directly (no language sub-directory) works too
    assert load_wikiann("xx", "test", path=str(root / "xx"), limit=1)[0].words == ["Paris", "is", "nice"]


def test_evaluate_cli_on_local_wikiann(tmp_path, tiny_model_dir):
    from polyner.cli import app

    root = _wikiann_copy(tmp_path / "wikiann")
    results = tmp_path / "results.md"
    result = CliRunner().invoke(app, ["evaluate", str(tiny_model_dir), "--data", "wikiann", "--langs", "xx",
                                      "--wikiann-path", str(root), "--results", str(results)])
    assert result.exit_code == 0, result.output
    assert "WikiAnn" in result.stdout
    text = results.read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| xx |")]
    assert len(rows) == 1
    # 3 test sentences with 4 entities
    assert rows[0].split("|")[2:4] == [" 3 ", " 4 "]
    assert "| **macro** |" in text


def test_evaluate_cli_wikiann_needs_langs(tmp_path, tiny_model_dir):
    from polyner.cli import app

    result = CliRunner().invoke(app, ["evaluate", str(tiny_model_dir), "--gold", "wikiann",
                                      "--write", str(tmp_path / "r.md")])
    assert result.exit_code == 2
    assert "--languages" in result.stderr
    assert not (tmp_path / "r.md").exists()


# --- the real shared gold data ---------------------------------------------------------------------


@pytest.mark.slow
def test_shared_gold_data_parses():
    if not GOLD.is_dir():
        pytest.skip(f"../shared/data/gold not present: {GOLD} does not exist")
    files = discover_gold(GOLD)
    if not files:
        pytest.skip(f"../shared/data/gold not present: no SOURCE/LANG/SPLIT.iob2 files under {GOLD}")
    allowed = set(LABELS)
    for gold in files:
        sentences = read_iob2(gold.path, gold.lang, gold.source)  # raises ValueError naming file:line
        assert sentences, f"{gold.path} has no sentences"
        assert all(s.words for s in sentences), f"{gold.path} has an empty sentence"
        tags = set().union(*(s.tags for s in sentences))
        assert tags <= allowed, f"{gold.path}: tags outside the scheme: {sorted(tags - allowed)}"
        assert tags & {"B-PER", "B-ORG", "B-LOC"}, f"{gold.path}: no entities at all"


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.skipif(not (SHARED_DATA / "gold").is_dir(), reason="../shared/data is not on this machine")
def test_every_shared_source_has_a_licence_for_model_cards():
    """A model card names the licence of each source it trained on: a new folder in gold/ or silver/ needs one."""
    from polyner.data.licences import licence_of

    folders = {p.name for kind in ("gold", "silver") if (SHARED_DATA / kind).is_dir()
               for p in (SHARED_DATA / kind).iterdir() if p.is_dir()}
    assert folders and not [name for name in sorted(folders) if licence_of(name) == "unknown"]
