"""RustTokenizer: tokenizer.json read without transformers gives transformers' encodings, word ids and offsets."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from polyner.models.io import ModelDirectoryError
from polyner.models.rust_tokenizer import RustTokenizer
from polyner.tagging.tagger import Tagger

from conftest import SAMPLE_TEXTS
from tiny_student import save_tiny_student

WORDS = [text.split() for text in SAMPLE_TEXTS[:16]] + [["x"], ["   "], ["a", "b" * 300]]
SPECIALS = ("cls_token_id", "sep_token_id", "bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id",
            "mask_token_id")


@pytest.fixture(scope="module")
def rust(tokenizer_dir):
    return RustTokenizer.from_directory(tokenizer_dir)


def test_special_tokens_and_vocabulary_match_transformers(rust, tokenizer):
    for name in SPECIALS:
        assert getattr(rust, name) == getattr(tokenizer, name), name
    assert len(rust) == len(tokenizer)
    assert rust.get_vocab() == tokenizer.get_vocab()
    assert rust.convert_tokens_to_ids(["<s>", "never-a-piece"]) == [tokenizer.cls_token_id, tokenizer.unk_token_id]


def test_split_words_encode_like_transformers(rust, tokenizer):
    ours = rust(WORDS, is_split_into_words=True, add_special_tokens=False)
    theirs = tokenizer(WORDS, is_split_into_words=True, add_special_tokens=False)
    assert ours["input_ids"] == theirs["input_ids"]
    for row in range(len(WORDS)):
        assert ours.word_ids(row) == theirs.word_ids(row)


@pytest.mark.parametrize("special", [True, False])
def test_text_offsets_like_transformers(rust, tokenizer, special):
    for text in SAMPLE_TEXTS[:16] + ["", "  leading and trailing  "]:
        ours = rust(text, add_special_tokens=special, return_offsets_mapping=True)
        theirs = tokenizer(text, add_special_tokens=special, return_offsets_mapping=True)
        assert ours["input_ids"] == theirs["input_ids"]
        assert [tuple(o) for o in ours["offset_mapping"]] == [tuple(o) for o in theirs["offset_mapping"]]
        assert rust.tokenize(text) == tokenizer.tokenize(text)


def test_tagger_gives_the_same_tags_with_either_tokenizer(rust, tokenizer, tmp_path):
    from polyner.models.io import load_token_classifier

    model, _ = load_token_classifier(save_tiny_student(tokenizer, tmp_path / "student"))
    assert Tagger(model, rust)(SAMPLE_TEXTS[:16]) == Tagger(model, tokenizer)(SAMPLE_TEXTS[:16])


def test_save_round_trips_through_transformers(rust, tokenizer, tmp_path):
    from transformers import AutoTokenizer

    rust.save_pretrained(tmp_path / "saved")
    again = AutoTokenizer.from_pretrained(str(tmp_path / "saved"))
    assert again(WORDS, is_split_into_words=True)["input_ids"] == tokenizer(WORDS, is_split_into_words=True)["input_ids"]
    assert again.pad_token_id == tokenizer.pad_token_id


@pytest.mark.parametrize("file,content", [("tokenizer.json", "{not json"), ("tokenizer_config.json", "[1, 2]"),
                                          ("tokenizer_config.json", "{broken")])
def test_corrupt_files_name_the_directory(tokenizer_dir, tmp_path, file, content):
    broken = tmp_path / "broken-tokenizer"
    shutil.copytree(tokenizer_dir, broken)
    (broken / file).write_text(content)
    with pytest.raises(ModelDirectoryError, match="cannot load the tokenizer in .*broken-tokenizer"):
        RustTokenizer.from_directory(broken)


def test_added_token_objects_in_config(tokenizer_dir, tmp_path):
    copy = tmp_path / "added"
    shutil.copytree(tokenizer_dir, copy)
    config = json.loads((copy / "tokenizer_config.json").read_text())
    config["pad_token"] = {"content": "<pad>", "special": True}
    (copy / "tokenizer_config.json").write_text(json.dumps(config))
    assert RustTokenizer.from_directory(copy).pad_token_id == 1


def test_onnx_load_and_tagging_import_neither_transformers_nor_torch(tokenizer, tmp_path):
    pytest.importorskip("onnxruntime", reason="the ONNX backend needs onnxruntime (pip install 'polyner[export]')")
    pytest.importorskip("onnx", reason="the ONNX export needs onnx (pip install 'polyner[export]')")
    from polyner.models.onnx_export import ExportConfig, export_onnx

    out = tmp_path / "onnx"
    export_onnx(ExportConfig(model=str(save_tiny_student(tokenizer, tmp_path / "student")), out=str(out)))
    code = ("import sys, polyner; tagger = polyner.load(sys.argv[1]); tagger('Angela Merkel visited Paris.'); "
            "print(type(tagger.tokenizer).__name__, 'transformers' in sys.modules, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["RustTokenizer", "False", "False"]


@pytest.mark.parametrize("option", [{"padding": True}, {"truncation": True, "max_length": 8}, {"return_tensors": "pt"}])
def test_padding_truncation_and_tensors_are_refused_not_ignored(rust, option):
    with pytest.raises(TypeError, match="RustTokenizer does not support .*load_tokenizer"):
        rust(WORDS, is_split_into_words=True, **option)
    assert rust(WORDS, is_split_into_words=True, padding=False, truncation=None)["input_ids"]  # defaults are fine
