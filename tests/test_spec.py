"""The model spec (resolved once, frozen, picklable, built into a tagger) and the TokenClassifier protocol that the
tagger, the HTTP service and the benchmarks read instead of guessing what a model is."""
from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import polyner
from polyner.models.classifier import TokenClassifier, TorchClassifier, as_token_classifier
from polyner.models.io import ModelDirectoryError
from polyner.spec import ModelSpec

from conftest import SAMPLE_TEXTS
from tiny_student import save_tiny_student

TEXTS = SAMPLE_TEXTS[:6]


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory, tokenizer) -> Path:
    return save_tiny_student(tokenizer, tmp_path_factory.mktemp("student"))


@pytest.fixture(scope="module")
def fp32_dir(tmp_path_factory, student_dir) -> Path:
    """The student exported to ONNX fp32: an ONNX-only directory."""
    from polyner.models.onnx_export import ExportConfig, export_onnx

    out = tmp_path_factory.mktemp("fp32")
    export_onnx(ExportConfig(model=str(student_dir), out=str(out)))
    return out


def spans(results) -> list[list[tuple]]:
    return [[(e["text"], e["label"], e["start"], e["end"]) for e in entities] for entities in results]


class TestModelSpec:
    def test_resolved_once_frozen_and_picklable(self, student_dir):
        spec = ModelSpec.resolve(str(student_dir), max_length=32, decoding="argmax", batch_size=4)
        assert (spec.path, spec.backend, spec.name) == (student_dir, "torch", student_dir.name)
        assert (spec.tagger.max_length, spec.tagger.decoding, spec.tagger.batch_size) == (32, "argmax", 4)
        with pytest.raises(dataclasses.FrozenInstanceError):
            spec.backend = "onnx"  # type: ignore[misc]
        assert pickle.loads(pickle.dumps(spec)) == spec

    def test_the_shipped_model_has_one_name_however_it_is_given(self, monkeypatch):
        from polyner.loading import DEFAULT_MODEL_DIR, model_name
        from polyner.tasks.finetune import FinetuneConfig, display_name

        if not (DEFAULT_MODEL_DIR / "config.json").exists():
            pytest.skip("no default model shipped in this installation")
        monkeypatch.chdir(DEFAULT_MODEL_DIR.parent.parent)
        relative = str(DEFAULT_MODEL_DIR.relative_to(DEFAULT_MODEL_DIR.parent.parent))  # polyner/default
        for given in (None, "polyner-default", DEFAULT_MODEL_DIR, relative):
            assert ModelSpec.resolve(given).name == model_name(given) == "polyner-default", given
            assert display_name(FinetuneConfig(task="sst2", out="x", model=given)) == "polyner-default"
        assert model_name("owner/tiny-ner") == "tiny-ner"
        assert display_name(FinetuneConfig(task="sst2", out="x", model=relative, name="mine")) == "mine"

    def test_build_is_polyner_load(self, student_dir):
        tagger = ModelSpec.resolve(student_dir, max_length=24).build()
        assert tagger.config.max_length == 24 and tagger.name == student_dir.name
        assert tagger(TEXTS) == polyner.load(student_dir, max_length=24)(TEXTS)

    @pytest.mark.parametrize("options, error, message", [
        ({"backend": "tpu"}, ValueError, "unknown backend 'tpu'"),
        ({"decoding": "beam"}, ValueError, "unknown decoding 'beam'"),
        ({"max_length": 2}, ValueError, "max_length must be an int of at least 4"),
        ({"threads": 0}, ValueError, "threads must be an int of at least 1")])
    def test_bad_settings_fail_at_resolve(self, student_dir, options, error, message):
        with pytest.raises(error, match=message):
            ModelSpec.resolve(student_dir, **options)

    def test_a_missing_directory_is_named(self, tmp_path):
        with pytest.raises(ModelDirectoryError, match=f"model directory not found: {tmp_path / 'nope'}"):
            ModelSpec.resolve(tmp_path / "nope")

    def test_an_onnx_backend_the_directory_cannot_run_is_refused_at_resolve(self, fp32_dir):
        fp32 = fp32_dir
        assert ModelSpec.resolve(fp32).backend == "onnx"  # an ONNX-only directory runs on ONNX Runtime
        with pytest.raises(ModelDirectoryError, match=f"the ONNX model in {fp32} is not int8"):
            ModelSpec.resolve(fp32, backend="onnx-int8")

    def test_prepare_makes_the_export_once_and_workers_build_from_it(self, student_dir):
        spec = ModelSpec.resolve(student_dir, backend="onnx-int8", threads=1)
        prepared = spec.prepare()
        assert prepared.prepared is not None and prepared.prepared.parent.name == "onnx"
        assert prepared.prepare() is prepared and prepared.path == student_dir
        worker = pickle.loads(pickle.dumps(prepared)).build()
        assert worker.classifier.folder == prepared.prepared and worker.classifier.backend == "onnx-int8"
        assert worker.source == str(student_dir)
        assert spans(worker(TEXTS)) == spans(spec.build()(TEXTS))


def test_qa_and_classify_do_not_drop_an_onnx_backend(tiny_model_dir):
    for task in ("qa", "classify"):
        with pytest.raises(ValueError, match=f"task '{task}' runs on torch only: backend='onnx'"):
            polyner.load(tiny_model_dir, task=task, backend="onnx")
        with pytest.raises(ValueError, match="threads must be an int"):
            polyner.load(tiny_model_dir, task=task, threads=0)


def test_load_takes_threads_and_names_unknown_options(tiny_model_dir):
    """``threads=`` is the keyword users try first (it used to collide with the spec's own: a bare TypeError)."""
    assert polyner.load(tiny_model_dir, threads=1)(["Angela Merkel visited Paris."])
    with pytest.raises(TypeError, match=r"unknown tagger option\(s\) \['max_lenght'\]: expected threads or max_length"):
        polyner.load(tiny_model_dir, max_lenght=64)
    with pytest.warns(DeprecationWarning, match="use threads"):
        polyner.load(tiny_model_dir, onnx_threads=1)
    with pytest.raises(ValueError, match="disagree"):
        polyner.load(tiny_model_dir, threads=1, onnx_threads=2)


class TestTokenClassifier:
    def test_torch_and_onnx_adapters_give_the_same_logits(self, student_dir, fp32_dir):
        out = fp32_dir
        torch_tagger, onnx_tagger = polyner.load(student_dir), polyner.load(out)
        for tagger in (torch_tagger, onnx_tagger):
            assert isinstance(tagger.classifier, TokenClassifier)
            assert tagger.classifier.id2label == {int(k): v for k, v in
                                                  json.loads((student_dir / "config.json").read_text())["id2label"].items()}
        torch_side, onnx_side = torch_tagger.classifier, onnx_tagger.classifier
        assert isinstance(torch_side, TorchClassifier) and torch_side.module is torch_tagger.model
        assert (torch_side.backend, onnx_side.backend) == ("torch", "onnx")
        assert torch_side.folder == student_dir and onnx_side.folder == out
        assert torch_side.parameters_count() > 0 and onnx_side.parameters_count() == 0
        ids = np.array([[0, 10, 11, 12, 2], [0, 13, 2, 1, 1]], dtype=np.int64)
        mask = (ids != 1).astype(np.int64)
        assert np.allclose(torch_side.logits(ids, mask), onnx_side.logits(ids, mask), atol=1e-4)

    def test_a_classifier_is_taken_as_is_and_a_module_is_wrapped(self, student_dir, tokenizer):
        from conftest import CapitalRuleModel

        onnx_classifier = polyner.load(student_dir, backend="onnx").classifier
        assert as_token_classifier(onnx_classifier) is onnx_classifier
        wrapped = as_token_classifier(CapitalRuleModel(tokenizer), source="somewhere")
        assert isinstance(wrapped, TorchClassifier) and wrapped.folder == Path("somewhere")
        assert wrapped.window() == 128 and wrapped.backend == "torch"  # no config: polyner's labels, window 128


def test_every_verb_that_tags_has_the_shared_model_options():
    import typer

    from polyner.cli import app

    verbs = typer.main.get_command(app).commands
    for verb in ("tag", "tag-corpus", "serve", "evaluate", "agreement"):
        flags = {o for param in verbs[verb].params for o in param.opts}
        backend = "--backend" if verb != "agreement" else "--backend-a"  # agreement: one backend per model
        for option in (backend, "--threads", "--max-length", "--decoding"):
            assert option in flags, f"polyner {verb} has no {option}"
        assert verb in ("evaluate", "agreement") or "--model" in flags  # those two take their models as arguments


def test_tag_corpus_onnx_int8_gives_the_entities_of_tag_onnx_int8(tmp_path, student_dir):
    """The two verbs on the same model with --backend onnx-int8, from the command line, find the same entities."""
    from polyner.cli import app

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(TEXTS)), encoding="utf-8")
    # one thread for both: dynamic int8 is compared on the same batches and the same kernels
    common = ["--model", str(student_dir), "--backend", "onnx-int8", "--max-length", "24", "--threads", "1"]
    tagged = CliRunner().invoke(app, ["tag", *common, *TEXTS])
    assert tagged.exit_code == 0, tagged.output
    by_tag = [json.loads(line)["entities"] for line in tagged.stdout.splitlines()]
    run = CliRunner().invoke(app, ["tag-corpus", str(corpus), "--out", str(tmp_path / "out"), *common,
                                   "--no-progress"])
    assert run.exit_code == 0, run.output
    rows = [json.loads(line) for f in sorted((tmp_path / "out").glob("part-*.jsonl")) for line in f.open()]
    assert [r["id"] for r in rows] == list(range(len(TEXTS)))
    assert sum(map(len, by_tag)) > 0
    assert spans(r["entities"] for r in rows) == spans(by_tag)
    settings = json.loads((tmp_path / "out" / "manifest.json").read_text())["settings"]
    assert (settings["backend"], settings["max_length"], settings["model"]) == ("onnx-int8", 24, str(student_dir))
