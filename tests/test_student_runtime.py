"""The student run without transformers (StudentRuntime): the same logits and entities as the transformers class."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import polyner
from polyner.models.io import ModelDirectoryError, load_token_classifier
from polyner.models.student_runtime import StudentRuntime, is_student_directory, load_student_runtime
from polyner.tagging.tagger import Tagger

from conftest import SAMPLE_TEXTS
from tiny_student import save_tiny_student


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory, tokenizer):
    return save_tiny_student(tokenizer, tmp_path_factory.mktemp("student"))


def test_same_logits_as_the_transformers_class(student_dir):
    runtime, _ = load_student_runtime(student_dir)
    reference, _ = load_token_classifier(student_dir)
    ids = torch.randint(4, runtime.config.vocab_size, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    with torch.no_grad():
        got = runtime(input_ids=ids, attention_mask=mask).logits
        expected = reference(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(got, expected, atol=1e-6)
    assert sum(p.numel() for p in runtime.parameters()) == sum(p.numel() for p in reference.parameters())


def test_load_picks_it_for_a_student_and_finds_the_same_entities(student_dir, tokenizer):
    tagger = polyner.load(student_dir)
    assert isinstance(tagger.model, StudentRuntime) and not tagger.model.training
    reference, _ = load_token_classifier(student_dir)
    assert tagger(SAMPLE_TEXTS[:16]) == Tagger(reference, tokenizer)(SAMPLE_TEXTS[:16])


def test_other_models_still_load_through_transformers(tiny_model_dir):
    assert not is_student_directory(tiny_model_dir)
    assert not isinstance(polyner.load(tiny_model_dir).model, StudentRuntime)


def test_weights_that_do_not_fit_the_config(student_dir, tmp_path):
    broken = tmp_path / "broken-student"
    shutil.copytree(student_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelDirectoryError, match="do not fit its config.json"):
        polyner.load(broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelDirectoryError, match="cannot load the model in .*broken-student"):
        polyner.load(broken)


def test_loading_and_tagging_a_student_does_not_import_transformers(student_dir):
    code = ("import sys, polyner; tagger = polyner.load(sys.argv[1]); tagger('Angela Merkel visited Paris.'); "
            "print(type(tagger.model).__name__, 'transformers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(student_dir)], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["StudentRuntime", "False"]


# --- config.json must describe the weights (issue 23, case 8) --------------------------------------------------------

def _with_config(source: Path, folder: Path, **changes) -> Path:
    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))
    return folder


@pytest.mark.parametrize("changes", [{"model_type": "bert"}, {"model_type": "bert", "num_hidden_layers": 1}])
def test_another_architecture_next_to_student_weights_is_refused(student_dir, tmp_path, changes):
    """It loaded silently with random weights. Refused before allocating (the config describes more parameters
    than the file holds) or after (tensors of the model missing from the file), naming the weights file."""
    folder = _with_config(student_dir, tmp_path / "relabelled", **changes)
    with pytest.raises(ModelDirectoryError, match=r"do not fit its config.json \(model_type 'bert'\).*"
                                                  rf"{folder / 'model.safetensors'}"):
        polyner.load(folder)


def test_bert_weights_under_a_student_config_are_refused(tiny_model_dir, tmp_path):
    folder = _with_config(tiny_model_dir, tmp_path / "bert-as-student", model_type="polyner_student",
                          embedding_rank=0)
    with pytest.raises(ModelDirectoryError, match="tensors missing.*student.embeddings.*unexpected.*bert"):
        polyner.load(folder)


@pytest.mark.parametrize("field, value, words", [
    ("intermediate_size", 2e9, "intermediate_size must be a whole number from 1 to 131072, not 2000000000.0"),
    ("intermediate_size", 2_000_000_000, "intermediate_size must be a whole number"),
    ("layer_norm_eps", "x", "layer_norm_eps must be a number more than 0 and below 1, not 'x'"),
    ("layer_norm_eps", -1e-5, "layer_norm_eps"), ("hidden_dropout_prob", 1.5, "hidden_dropout_prob"),
    ("num_hidden_layers", True, "num_hidden_layers"), ("vocab_size", 0, "vocab_size"),
    ("num_attention_heads", 3, "not a multiple of num_attention_heads 3"),
    ("embedding_rank", 64, "embedding_rank 64 is larger than hidden_size"),
    ("pad_token_id", 10 ** 6, "pad_token_id 1000000 is not below vocab_size"),
])
@pytest.mark.parametrize("kind", ["student", "bert"])
def test_config_values_are_range_checked_before_anything_is_built(student_dir, tiny_model_dir, tmp_path, monkeypatch,
                                                                  kind, field, value, words):
    """``intermediate_size: 2e9`` tried to allocate terabytes, ``layer_norm_eps: "x"`` loaded and failed at the
    first call: both are errors naming config.json, raised before any module is built."""
    import torch.nn

    folder = _with_config(student_dir if kind == "student" else tiny_model_dir, tmp_path / kind, **{field: value})
    built = []
    monkeypatch.setattr(torch.nn.Linear, "reset_parameters", lambda self: built.append(self))
    with pytest.raises(ModelDirectoryError, match=rf"{folder / 'config.json'}: .*{words}"):
        polyner.load(folder)
    assert built == []


def test_a_config_within_range_but_not_the_files_shapes_allocates_nothing(student_dir, tmp_path, monkeypatch):
    import torch.nn

    folder = _with_config(student_dir, tmp_path / "wide", intermediate_size=100_000)
    real = []
    monkeypatch.setattr(torch.nn.Linear, "reset_parameters",
                        lambda self: real.append(self) if self.weight.device.type != "meta" else None)
    with pytest.raises(ModelDirectoryError, match=r"of another shape \(student.layers.0.intermediate.bias \[64\] "
                                                  r"\(expected \[100000\]\)"):
        polyner.load(folder)
    assert real == []  # only the meta-device skeleton was built


def test_a_truncated_weights_file_is_named(student_dir, tmp_path):
    folder = tmp_path / "truncated"
    shutil.copytree(student_dir, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ModelDirectoryError, match=rf"{weights} is truncated"):
        polyner.load(folder)
