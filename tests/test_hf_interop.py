"""Hugging Face interop: a student directory loads with transformers' Auto classes and pipeline wherever polyner is
installed (auto_map + polyner_student.py), or after ``import polyner.models.student`` without trust_remote_code."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from polyner.models.hf_interop import AUTO_MAP, CODE_FILE

from tiny_student import save_tiny_student

TEXT = "Angela Merkel visited Paris with Emmanuel Macron."


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory, tokenizer):
    return save_tiny_student(tokenizer, tmp_path_factory.mktemp("student"))


def test_a_saved_student_names_its_code(student_dir):
    config = json.loads((student_dir / "config.json").read_text())
    assert config["auto_map"] == AUTO_MAP and config["model_type"] == "polyner_student"
    assert "from polyner.models.student import" in (student_dir / CODE_FILE).read_text()


def test_auto_classes_and_pipeline_without_importing_polyner(student_dir, tmp_path):
    """A fresh interpreter that never imports polyner itself: transformers runs the directory's code file, which
    takes the classes from the installed polyner."""
    code = f"""
import json, sys
import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline
folder = {str(student_dir)!r}
model = AutoModelForTokenClassification.from_pretrained(folder, trust_remote_code=True).eval()
tok = AutoTokenizer.from_pretrained(folder)
enc = tok({TEXT!r}, return_tensors="pt")
with torch.no_grad():
    logits = model(**enc).logits
ner = pipeline("token-classification", model=folder, trust_remote_code=True, aggregation_strategy="simple")
found = ner({TEXT!r})
print(json.dumps({{"class": type(model).__name__, "ids": enc["input_ids"][0].tolist(), "logits": logits[0].tolist(),
                  "found": [dict(e, score=float(e["score"])) for e in found]}}))
"""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["class"] == "PolynerStudentForTokenClassification"
    import polyner

    reference = polyner.load(student_dir, backend="torch").model
    with torch.no_grad():
        expected = reference(input_ids=torch.tensor([out["ids"]])).logits[0]
    assert torch.allclose(torch.tensor(out["logits"]), expected, atol=1e-5)
    assert out["found"]  # the tiny student's classifier bias makes entities of random weights
    for entity in out["found"]:  # the pipeline's own word grouping over the polyner labels
        assert entity["entity_group"] in ("PER", "ORG", "LOC") and TEXT[entity["start"]:entity["end"]]


def test_registered_after_importing_the_student_module(student_dir):
    from transformers import AutoConfig, AutoModelForTokenClassification

    import polyner.models.student  # noqa: F401  (registers polyner_student with the Auto classes)

    assert type(AutoConfig.from_pretrained(str(student_dir))).__name__ == "PolynerStudentConfig"
    model = AutoModelForTokenClassification.from_pretrained(str(student_dir))  # no trust_remote_code needed
    assert type(model).__module__ == "polyner.models.student"
