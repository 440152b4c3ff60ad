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
from polyner.pipelines.ner import Tagger

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
