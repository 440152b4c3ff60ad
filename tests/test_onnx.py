"""ONNX export and the ONNX Runtime backend, on tiny models built from config (student and BERT teacher)."""
from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("onnxruntime", reason="the ONNX tests need onnxruntime (pip install 'polyner[export]')")
onnx = pytest.importorskip("onnx", reason="the ONNX tests need onnx (pip install 'polyner[export]')")

import polyner  # noqa: E402
from polyner.agreement import entity_agreement, entity_keys  # noqa: E402
from polyner.cli import app  # noqa: E402
from polyner.models.io import ModelDirectoryError  # noqa: E402
from polyner.models.onnx_backend import EXPORT_INFO_FILE, ONNX_FILE, OnnxTokenClassifier  # noqa: E402
from polyner.models.onnx_export import ExportConfig, export_onnx, random_batch  # noqa: E402

from conftest import SAMPLE_TEXTS  # noqa: E402
from tiny_student import save_tiny_student  # noqa: E402

TEXTS = SAMPLE_TEXTS[:16]


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory, tokenizer):
    return save_tiny_student(tokenizer, tmp_path_factory.mktemp("student"))


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory, student_dir):
    out = tmp_path_factory.mktemp("student-onnx")
    export_onnx(ExportConfig(model=str(student_dir), out=str(out)))
    return out


@pytest.fixture(scope="module")
def int8_dir(tmp_path_factory, student_dir):
    out = tmp_path_factory.mktemp("student-int8")
    export_onnx(ExportConfig(model=str(student_dir), out=str(out), quantize="int8"))
    return out


def _keys(tagger, texts=TEXTS):
    return [entity_keys(e) for e in tagger(texts)]


class TestExport:
    def test_writes_a_model_directory(self, onnx_dir):
        names = {p.name for p in onnx_dir.iterdir()}
        assert {"config.json", "tokenizer.json", ONNX_FILE, EXPORT_INFO_FILE} <= names
        assert "model.safetensors" not in names
        config = json.loads((onnx_dir / "config.json").read_text())
        assert config["id2label"]["0"] == "O" and config["model_type"] == "polyner_student"
        info = json.loads((onnx_dir / EXPORT_INFO_FILE).read_text())
        assert info["backend"] == "onnx" and info["quantization"] is None and info["opset"] >= 14
        assert info["fp32_max_abs_diff"] < 1e-4 and info["argmax_agreement"] == 1.0

    def test_graph_is_valid_with_dynamic_batch_and_sequence(self, onnx_dir):
        model = onnx.load(str(onnx_dir / ONNX_FILE))
        onnx.checker.check_model(model)
        inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
        outputs = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output}
        assert inputs == {"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"]}
        assert outputs["logits"][:2] == ["batch", "sequence"] and outputs["logits"][2] == 7

    @pytest.mark.parametrize("batch,length", [(1, 4), (3, 9), (3, 40), (1, 200)])
    def test_logits_match_torch_at_any_shape(self, student_dir, onnx_dir, batch, length):
        torch_model = polyner.load(student_dir, backend="torch").model
        onnx_model = polyner.load(onnx_dir, threads=1).model
        ids, mask = random_batch(torch_model.config.vocab_size, batch, length, torch.Generator().manual_seed(length), 1)
        with torch.no_grad():
            expected = torch_model(input_ids=ids, attention_mask=mask).logits
        got = onnx_model(input_ids=ids, attention_mask=mask).logits
        assert isinstance(got, torch.Tensor) and got.dtype == torch.float32 and got.shape == expected.shape
        keep = mask.bool()
        assert torch.allclose(got[keep], expected[keep], atol=1e-4)

    def test_bert_teacher_exports_and_agrees(self, tiny_model_dir, tmp_path):
        result = export_onnx(ExportConfig(model=str(tiny_model_dir), out=str(tmp_path / "teacher-onnx")))
        assert result.fp32_max_abs_diff < 1e-4
        config = json.loads((tmp_path / "teacher-onnx" / "config.json").read_text())
        assert config["model_type"] == "bert"
        reference, exported = polyner.load(tiny_model_dir), polyner.load(tmp_path / "teacher-onnx")
        assert isinstance(exported.model, OnnxTokenClassifier)
        left, right = _keys(reference), _keys(exported)
        assert sum(map(len, left)) > 0
        assert entity_agreement(left, right).rate == 1.0

    def test_int8_export_runs_and_loads(self, onnx_dir, int8_dir):
        info = json.loads((int8_dir / EXPORT_INFO_FILE).read_text())
        assert info["quantization"] == "int8" and 0.0 <= info["argmax_agreement"] <= 1.0
        assert (int8_dir / ONNX_FILE).stat().st_size < (onnx_dir / ONNX_FILE).stat().st_size
        graph = onnx.load(str(int8_dir / ONNX_FILE)).graph
        assert any(node.op_type == "MatMulIntegerToFloat" for node in graph.node)
        assert not any(node.op_type == "DynamicQuantizeLinear" for node in graph.node)  # nothing left per call
        tagger = polyner.load(int8_dir)
        assert isinstance(tagger.model, OnnxTokenClassifier)
        for text, entities in zip(TEXTS, tagger(TEXTS)):
            assert all(text[e["start"]:e["end"]] == e["text"] for e in entities)

    def test_int8_with_fp32_embeddings(self, student_dir, int8_dir, tmp_path):
        result = export_onnx(ExportConfig(model=str(student_dir), out=str(tmp_path / "ng"), quantize="int8",
                                          per_channel=False, quantize_embeddings=False))
        assert result.per_channel is False and result.quantize_embeddings is False
        assert result.size_bytes > (int8_dir / ONNX_FILE).stat().st_size
        graph = onnx.load(str(tmp_path / "ng" / ONNX_FILE)).graph
        gathers = [n for n in graph.node if n.op_type == "Gather" and "word" in n.name]
        assert gathers and not any(i.endswith("_quantized") for n in gathers for i in n.input)
        assert len(polyner.load(tmp_path / "ng")(TEXTS)) == len(TEXTS)

    def test_export_next_to_the_torch_weights(self, student_dir, tmp_path):
        both = tmp_path / "both"
        shutil.copytree(student_dir, both)
        export_onnx(ExportConfig(model=str(both), out=str(both)))
        assert (both / "model.safetensors").exists() and (both / ONNX_FILE).exists()
        assert not isinstance(polyner.load(both).model, OnnxTokenClassifier)  # torch weights win by default
        assert isinstance(polyner.load(both, backend="onnx").model, OnnxTokenClassifier)

    def test_bad_requests(self, student_dir, onnx_dir, tmp_path):
        with pytest.raises(ValueError, match="int4"):
            export_onnx(ExportConfig(model=str(student_dir), out=str(tmp_path / "x"), quantize="int4"))
        no_map = tmp_path / "no-map"
        shutil.copytree(onnx_dir, no_map)
        info = json.loads((no_map / EXPORT_INFO_FILE).read_text())
        del info["weights"]
        (no_map / EXPORT_INFO_FILE).write_text(json.dumps(info))
        with pytest.raises(ModelDirectoryError, match="no torch weights"):
            export_onnx(ExportConfig(model=str(no_map), out=str(tmp_path / "y")))
        with pytest.raises(ModelDirectoryError, match="not found"):
            export_onnx(ExportConfig(model=str(tmp_path / "missing"), out=str(tmp_path / "z")))


class TestInt8ActivationScales:
    """int8 activations quantized per token: a sentence's logits do not depend on what else is in its batch."""

    @pytest.fixture(scope="class")
    def per_batch_dir(self, tmp_path_factory, student_dir):
        out = tmp_path_factory.mktemp("student-int8-per-batch")
        export_onnx(ExportConfig(model=str(student_dir), out=str(out), quantize="int8", activation_scales="per-batch"))
        return out

    @staticmethod
    def _alone_and_in_a_batch(folder) -> tuple[np.ndarray, np.ndarray]:
        """Row 0's logits alone (7 pieces) and padded in a batch of 4 with longer, different rows."""
        model = polyner.load(folder, threads=1).model
        ids, mask = random_batch(model.config.vocab_size, 4, 15, torch.Generator().manual_seed(3), 1)
        ids[0, 7:], mask[0, 7:] = 1, 0
        alone = model(input_ids=ids[:1, :7], attention_mask=mask[:1, :7]).logits[0].numpy()
        batched = model(input_ids=ids, attention_mask=mask).logits[0, :7].numpy()
        return alone, batched

    def test_per_token_logits_are_the_same_alone_and_in_a_batch(self, int8_dir):
        info = json.loads((int8_dir / EXPORT_INFO_FILE).read_text())
        assert info["activation_scales"] == "per-token"
        alone, batched = self._alone_and_in_a_batch(int8_dir)
        assert np.abs(alone - batched).max() < 1e-4

    def test_per_batch_scales_depend_on_the_batch(self, per_batch_dir):
        graph = onnx.load(str(per_batch_dir / ONNX_FILE)).graph
        assert any(node.op_type == "DynamicQuantizeLinear" for node in graph.node)
        alone, batched = self._alone_and_in_a_batch(per_batch_dir)
        assert np.abs(alone - batched).max() > 1e-3  # what the per-token graph removes

    def test_entities_of_a_text_do_not_depend_on_the_others(self, int8_dir):
        tagger = polyner.load(int8_dir, threads=1)
        together = tagger(TEXTS)
        for text, entities in zip(TEXTS, together):
            (alone,) = tagger([text])
            assert [(e["start"], e["end"], e["label"]) for e in alone] == \
                [(e["start"], e["end"], e["label"]) for e in entities]
            assert [e["score"] for e in alone] == pytest.approx([e["score"] for e in entities], abs=1e-4)

    def test_an_unexpected_graph_is_refused_and_left_unchanged(self):
        from onnx import TensorProto, helper

        from polyner.models.onnx_quantize import per_token_activations

        nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"], name="dq"),
                 helper.make_node("Add", ["s", "s"], ["y"], name="odd")]
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])])
        model = helper.make_model(graph)
        with pytest.raises(ValueError, match="not used as quantize_dynamic writes it"):
            per_token_activations(model)
        assert [n.op_type for n in model.graph.node] == ["DynamicQuantizeLinear", "Add"]
        assert not model.graph.initializer

    @staticmethod
    def _quantized_matmul(tmp_path, opset: int, clash: bool = False):
        """A two-matrix graph (one input, two weights) through onnxruntime's dynamic quantization at ``opset``."""
        from onnx import TensorProto, helper, numpy_helper
        from onnxruntime.quantization import QuantType, quantize_dynamic

        rng = np.random.default_rng(0)
        weights = [numpy_helper.from_array(rng.normal(size=(8, 5)).astype(np.float32), f"w{i}") for i in (1, 2)]
        nodes = [helper.make_node("MatMul", ["x", "w1"], ["y1"], name="m1"),
                 helper.make_node("MatMul", ["x", "w2"], ["y2"], name="m2"),
                 helper.make_node("Add", ["y1", "y2"], ["y"], name="sum")]
        if clash:  # a tensor already named as the rewrite would name its own
            nodes.append(helper.make_node("Identity", ["y"], ["x_QuantizeLinear_max"], name="x_QuantizeLinear_max"))
        out = "x_QuantizeLinear_max" if clash else "y"
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", 8])],
                                  [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["b", "t", 5])], weights)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 8
        onnx.save(model, str(tmp_path / "fp32.onnx"))
        quantize_dynamic(str(tmp_path / "fp32.onnx"), str(tmp_path / "int8.onnx"), weight_type=QuantType.QInt8,
                         per_channel=True)
        return onnx.load(str(tmp_path / "int8.onnx")), out

    @pytest.mark.parametrize("opset,clash", [(17, False), (18, False), (17, True)])
    def test_rewrite_at_any_opset_keeps_rows_apart(self, tmp_path, opset, clash):
        import onnxruntime as ort

        from polyner.models.onnx_quantize import per_token_activations

        model, out = self._quantized_matmul(tmp_path, opset, clash)
        assert per_token_activations(model) == 1  # both products share one quantized input
        onnx.checker.check_model(model)
        assert not [n for n in model.graph.node if n.op_type in ("DynamicQuantizeLinear", "MatMulInteger")]
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        rows = np.random.default_rng(1).normal(size=(3, 4, 8)).astype(np.float32)
        rows[1] *= 100.0  # an outlier row: with one scale per call it would coarsen the others
        batch = session.run([out], {"x": rows})[0]
        alone = session.run([out], {"x": rows[:1]})[0]
        assert np.abs(batch[0] - alone[0]).max() < 1e-5
        fp32 = onnx.load(str(tmp_path / "fp32.onnx"))
        weights = {i.name: onnx.numpy_helper.to_array(i) for i in fp32.graph.initializer}
        exact = rows[0] @ (weights["w1"] + weights["w2"])
        assert np.abs(batch[0] - exact).max() < 0.05 * np.abs(exact).max()  # int8 close to fp32 despite the outlier

    def test_a_quantized_input_read_elsewhere_is_refused(self, tmp_path):
        from onnx import helper

        from polyner.models.onnx_quantize import per_token_activations

        model, _ = self._quantized_matmul(tmp_path, 17)
        quantized = next(n for n in model.graph.node if n.op_type == "DynamicQuantizeLinear").output[0]
        model.graph.node.append(helper.make_node("Cast", [quantized], ["peek"], name="peek", to=1))
        count = len(model.graph.node)
        with pytest.raises(ValueError, match="feeds something other than a rewritten MatMulInteger"):
            per_token_activations(model)
        assert len(model.graph.node) == count and not any(i.name.startswith("per_token") for i in
                                                          model.graph.initializer)

    def test_unknown_scales_are_refused(self, student_dir, tmp_path):
        with pytest.raises(ValueError, match="per-token"):
            export_onnx(ExportConfig(model=str(student_dir), out=str(tmp_path / "x"), quantize="int8",
                                     activation_scales="per-row"))


class TestBackend:
    def test_chosen_from_the_directory(self, student_dir, onnx_dir):
        assert isinstance(polyner.load(onnx_dir).model, OnnxTokenClassifier)
        assert isinstance(polyner.load(student_dir).model, torch.nn.Module)

    def test_same_entities_as_torch(self, student_dir, onnx_dir):
        reference, exported = polyner.load(student_dir), polyner.load(onnx_dir, backend="onnx")
        left, right = reference(TEXTS), exported(TEXTS)
        assert sum(map(len, left)) > 0
        assert entity_agreement([entity_keys(e) for e in left], [entity_keys(e) for e in right]).rate == 1.0
        for a, b in zip(left, right):
            assert [e["score"] for e in a] == pytest.approx([e["score"] for e in b], abs=1e-3)

    def test_batches_and_windows_give_the_same_entities(self, onnx_dir):
        tagger = polyner.load(onnx_dir, max_length=16, stride=4)
        one_by_one = [tagger(text, batch_size=1) for text in TEXTS]
        assert tagger(TEXTS, batch_size=3) == one_by_one

    def test_a_config_that_does_not_describe_the_graph_is_refused(self, onnx_dir, tmp_path):
        """config.json's labels must match the graph's output, and its values are range-checked (issue 23)."""
        folder = tmp_path / "relabelled"
        shutil.copytree(onnx_dir, folder)
        config = json.loads((folder / "config.json").read_text())
        config["id2label"] = {str(i): label for i, label in enumerate(["O", "B-PER", "I-PER"])}
        (folder / "config.json").write_text(json.dumps(config))
        with pytest.raises(ModelDirectoryError, match=rf"{folder / ONNX_FILE} gives 7 labels.*names 3"):
            polyner.load(folder)
        (folder / "config.json").write_text(json.dumps({**config, "layer_norm_eps": "x"}))
        with pytest.raises(ModelDirectoryError, match="config.json: layer_norm_eps"):
            polyner.load(folder)

    def test_threads_option(self, onnx_dir):
        model = polyner.load(onnx_dir, threads=1).model
        assert model.session.get_session_options().intra_op_num_threads == 1

    def test_errors(self, student_dir, onnx_dir, tmp_path):
        with pytest.raises(ModelDirectoryError, match="not found"):
            polyner.load(tmp_path / "missing", backend="onnx")
        with pytest.raises(ModelDirectoryError, match="not int8"):
            polyner.load(onnx_dir, backend="onnx-int8")  # an fp32 graph and no torch weights to quantize
        empty = tmp_path / "config-only"
        empty.mkdir()
        shutil.copy2(onnx_dir / "config.json", empty / "config.json")
        with pytest.raises(ModelDirectoryError, match="no model weights"):
            polyner.load(empty, backend="onnx")
        no_map = tmp_path / "no-map"
        shutil.copytree(onnx_dir, no_map)
        info = json.loads((no_map / EXPORT_INFO_FILE).read_text())
        del info["weights"]
        (no_map / EXPORT_INFO_FILE).write_text(json.dumps(info))
        with pytest.raises(ModelDirectoryError, match="backend='onnx'"):
            polyner.load(no_map, backend="torch")  # an ONNX export without the map of its torch weights
        with pytest.raises(ValueError, match="unknown backend"):
            polyner.load(onnx_dir, backend="tensorrt")

    @pytest.mark.parametrize("backend,quantization", [("onnx", None), ("onnx-int8", "int8")])
    def test_torch_directory_exported_once_on_first_use(self, student_dir, backend, quantization, monkeypatch):
        from polyner.models import onnx_export
        from polyner.models.onnx_backend import export_info

        tagger = polyner.load(student_dir, backend=backend)
        folder = tagger.model.model_file.parent
        assert isinstance(tagger.model, OnnxTokenClassifier) and folder.parent.name == "onnx"
        assert export_info(folder)["quantization"] == quantization
        assert not list(folder.parent.glob(".*partial"))  # the export was renamed into place whole
        reference = polyner.load(student_dir, backend="torch")(TEXTS)
        agreement = entity_agreement([entity_keys(e) for e in reference],
                                     [entity_keys(e) for e in tagger(TEXTS)]).rate
        assert agreement == 1.0 if quantization is None else agreement > 0.8
        monkeypatch.setattr(onnx_export, "export_onnx", lambda *a, **k: pytest.fail("exported a second time"))
        assert polyner.load(student_dir, backend=backend).model.model_file == tagger.model.model_file

    def test_incomplete_cached_export_is_redone(self, student_dir):
        first = polyner.load(student_dir, backend="onnx").model.model_file
        first.unlink()  # as if deleted by hand
        again = polyner.load(student_dir, backend="onnx").model.model_file
        assert again == first and again.exists()

    def test_changed_weights_get_a_new_export(self, student_dir, tmp_path):
        """Weights trained further in the same folder are exported again, never read from the stale export."""
        from safetensors.torch import load_file, save_file

        copy = tmp_path / "student-copy"
        shutil.copytree(student_dir, copy)
        before = polyner.load(copy, backend="onnx")
        weights = load_file(str(copy / "model.safetensors"))
        head = next(name for name in weights if name.endswith("classifier.bias"))
        weights[head] = weights[head] + torch.arange(weights[head].numel(), dtype=weights[head].dtype)
        save_file(weights, str(copy / "model.safetensors"))
        after = polyner.load(copy, backend="onnx")
        assert after.model.model_file.parent != before.model.model_file.parent
        ids = np.array([[0, 5, 6, 7, 2]], dtype=np.int64)
        shift = after.model.logits(ids, np.ones_like(ids)) - before.model.logits(ids, np.ones_like(ids))
        assert np.allclose(shift, np.arange(shift.shape[-1]), atol=1e-4)  # the new bias, at every position

    def test_corrupt_model_file(self, onnx_dir, tmp_path):
        broken = tmp_path / "broken"
        shutil.copytree(onnx_dir, broken)
        (broken / ONNX_FILE).write_bytes(b"this is not a protobuf")
        with pytest.raises(ModelDirectoryError, match="cannot load the ONNX model"):
            polyner.load(broken)

    @pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"id2label": {"zero": "O"}}'])
    def test_corrupt_config_names_the_directory(self, onnx_dir, tmp_path, content):
        broken = tmp_path / "broken-config"
        shutil.copytree(onnx_dir, broken)
        (broken / "config.json").write_text(content)
        with pytest.raises(ModelDirectoryError, match="(corrupt|cannot read) config.json in .*broken-config"):
            polyner.load(broken)

    def test_labels_come_from_config_without_transformers_config(self, onnx_dir):
        config = polyner.load(onnx_dir).model.config
        assert config.id2label[0] == "O" and config.label2id["O"] == 0 and config.num_labels == len(config.id2label)

    def test_missing_onnxruntime_is_named(self, onnx_dir, monkeypatch):
        monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
        with pytest.raises(ImportError, match=r"needs onnxruntime, part of polyner's core install"):
            polyner.load(onnx_dir)

    def test_spacy_component_runs_onnx(self, onnx_dir):
        spacy = pytest.importorskip("spacy")
        nlp = spacy.blank("en")
        nlp.add_pipe("polyner", config={"model": str(onnx_dir), "detect_language": False})
        doc = nlp(TEXTS[0])
        expected = polyner.load(onnx_dir)(TEXTS[0])
        assert [(e.start_char, e.end_char, e.label_) for e in doc.ents] == [
            (e["start"], e["end"], e["label"]) for e in expected]

    def test_http_service_runs_onnx(self, onnx_dir):
        pytest.importorskip("fastapi")
        from fastapi.testclient import TestClient

        from polyner.serve.app import create_app
        from polyner.serve.settings import ServeSettings

        expected = polyner.load(onnx_dir)(TEXTS[:3])
        with TestClient(create_app(ServeSettings(model=str(onnx_dir)))) as client:
            assert client.get("/v1/model").json()["size_bytes"] > 0
            response = client.post("/v1/ner", json={"texts": TEXTS[:3]})
        assert response.status_code == 200, response.text
        got = [[(e["start"], e["end"], e["label"]) for e in r["entities"]] for r in response.json()["results"]]
        assert got == [[(e["start"], e["end"], e["label"]) for e in entities] for entities in expected]


    def test_surfaces_take_a_backend_for_a_torch_directory(self, student_dir):
        """polyner tag, the HTTP service and the spaCy pipe run a torch directory as int8 ONNX on request."""
        spacy = pytest.importorskip("spacy")
        pytest.importorskip("fastapi")
        from fastapi.testclient import TestClient

        from polyner.serve.app import create_app
        from polyner.serve.settings import ServeSettings

        tagger = polyner.load(student_dir, backend="onnx-int8")
        expected = tagger(TEXTS[:3])
        keys = [[(e["start"], e["end"], e["label"]) for e in entities] for entities in expected]
        result = CliRunner().invoke(app, ["tag", "--model", str(student_dir), "--backend", "onnx-int8", *TEXTS[:3]])
        assert result.exit_code == 0, result.output
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert [[(e["start"], e["end"], e["label"]) for e in line["entities"]] for line in lines] == keys
        with TestClient(create_app(ServeSettings(model=str(student_dir), backend="onnx-int8"))) as client:
            info = client.get("/v1/model").json()
            response = client.post("/v1/ner", json={"texts": TEXTS[:3]})
        assert info["backend"] == "onnx-int8" and info["size_bytes"] > 0
        assert [[(e["start"], e["end"], e["label"]) for e in r["entities"]] for r in response.json()["results"]] == keys
        nlp = spacy.blank("en")
        pipe = nlp.add_pipe("polyner", config={"model": str(student_dir), "backend": "onnx-int8",
                                               "detect_language": False})
        doc = nlp(TEXTS[0])
        assert isinstance(pipe.tagger.model, OnnxTokenClassifier)
        # one doc is a batch of one text: int8 activations are quantized per token, so it matches the batch of three
        assert [(e.start_char, e.end_char, e.label_) for e in doc.ents] == keys[0]

    def test_surfaces_refuse_an_unknown_backend(self, student_dir):
        spacy = pytest.importorskip("spacy")
        result = CliRunner().invoke(app, ["tag", "--model", str(student_dir), "--backend", "tensorrt", "x"])
        assert result.exit_code == 2 and "unknown backend" in result.output
        with pytest.raises(ValueError, match="unknown backend"):
            spacy.blank("en").add_pipe("polyner", config={"model": str(student_dir), "backend": "tensorrt"})


class TestCommands:
    def test_export_command(self, student_dir, tmp_path):
        runner = CliRunner()
        result = runner.invoke(app, ["export", str(student_dir), "--format", "onnx", "--quantize", "int8",
                                     "--out", str(tmp_path / "cli-int8")])
        assert result.exit_code == 0, result.output
        assert "model.onnx (int8" in result.stdout
        assert json.loads((tmp_path / "cli-int8" / EXPORT_INFO_FILE).read_text())["quantization"] == "int8"

    @pytest.mark.parametrize("args,message", [
        (["--format", "tflite"], "unknown --format"),
        (["--quantize", "int4"], "unknown --quantize"),
        (["--opset", "11"], "--opset"),
        (["--quantize", "int8", "--activation-scales", "per-row"], "unknown --activation-scales"),
        (["--activation-scales", "per-batch"], "applies to --quantize int8 only"),
    ])
    def test_export_command_rejects(self, student_dir, tmp_path, args, message):
        result = CliRunner().invoke(app, ["export", str(student_dir), "--out", str(tmp_path / "o"), *args])
        assert result.exit_code == 2 and message in result.output
        assert not (tmp_path / "o" / ONNX_FILE).exists()

    def test_export_command_missing_model(self, tmp_path):
        result = CliRunner().invoke(app, ["export", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
        assert result.exit_code == 2 and "not found" in result.output

    def test_agreement_command(self, student_dir, onnx_dir, gold_tree):
        result = CliRunner().invoke(app, ["agreement", str(student_dir), str(onnx_dir), "--data", str(gold_tree)])
        assert result.exit_code == 0, result.output
        assert "100.00% of entities agree" in result.stdout and "0 only in A, 0 only in B" in result.stdout


class TestTorchWeightsFromOnnx:
    """An ONNX-only directory (the packed default) gives its torch weights back: fine-tuning, distilling, transformers."""

    def test_fp32_export_gives_the_weights_back_exactly(self, student_dir, onnx_dir):
        from safetensors.numpy import load_file

        from polyner.models.onnx_weights import read_weights

        expected, got = load_file(str(student_dir / "model.safetensors")), read_weights(onnx_dir)
        assert set(got) == set(expected)
        assert all(np.array_equal(got[k], expected[k].astype(np.float32)) for k in expected)

    def test_int8_export_gives_them_back_within_a_quantization_step(self, student_dir, int8_dir):
        from safetensors.numpy import load_file

        from polyner.models.onnx_weights import read_weights

        expected, got = load_file(str(student_dir / "model.safetensors")), read_weights(int8_dir)
        assert set(got) == set(expected)
        quantized = 0
        for name, weight in expected.items():
            error = np.abs(got[name] - weight).max()
            if weight.ndim == 2:  # int8: at most half a step of the (per-channel or whole-tensor) scale
                assert error <= np.abs(weight).max() / 127 + 1e-6, name
                quantized += error > 0
            else:  # biases and norms stay fp32
                assert error == 0, name
        assert quantized >= 5

    def test_torch_backend_on_an_onnx_only_directory(self, int8_dir, monkeypatch):
        from polyner.models import onnx_weights

        tagger = polyner.load(int8_dir, backend="torch")
        assert not isinstance(tagger.model, OnnxTokenClassifier)
        rebuilt = __import__("pathlib").Path(tagger.source)
        assert tagger.source == str(int8_dir)
        agreement = entity_agreement(_keys(polyner.load(int8_dir)), _keys(tagger)).rate
        assert agreement > 0.8  # int8 weights, fp32 activations against int8 activations
        monkeypatch.setattr(onnx_weights, "write_torch_directory", lambda *a: pytest.fail("rebuilt a second time"))
        polyner.load(rebuilt, backend="torch")

    def test_export_format_torch(self, int8_dir, tmp_path):
        out = tmp_path / "torch"
        result = CliRunner().invoke(app, ["export", str(int8_dir), "--format", "torch", "--out", str(out)])
        assert result.exit_code == 0, result.output
        config = json.loads((out / "config.json").read_text())
        assert config["auto_map"]["AutoModelForTokenClassification"].startswith("polyner_student.")
        assert (out / "polyner_student.py").exists() and (out / "tokenizer.json").exists()
        reference = polyner.load(int8_dir, backend="torch")
        assert _keys(polyner.load(out)) == _keys(reference)  # the same weights as the cached rebuild

    def test_no_weight_map_is_a_clear_error(self, onnx_dir, tmp_path):
        copy = tmp_path / "old-export"
        shutil.copytree(onnx_dir, copy)
        info = json.loads((copy / EXPORT_INFO_FILE).read_text())
        del info["weights"]
        (copy / EXPORT_INFO_FILE).write_text(json.dumps(info))
        with pytest.raises(ModelDirectoryError, match="no torch weights"):
            polyner.load(copy, backend="torch")
        result = CliRunner().invoke(app, ["export", str(copy), "--format", "torch", "--out", str(tmp_path / "t")])
        assert result.exit_code == 2 and "no map of its torch weights" in result.output


def test_onnx_directory_runs_with_onnxruntime_alone(int8_dir):
    """The README's recipe: tokenizers + onnxruntime + config.json, polyner and torch not importable."""
    import subprocess

    code = f"""
import sys
for name in ("polyner", "torch", "transformers"):
    sys.modules[name] = None
import json, numpy as np, onnxruntime as ort
from tokenizers import Tokenizer
folder = {str(int8_dir)!r}
tok = Tokenizer.from_file(folder + "/tokenizer.json")
enc = tok.encode("Angela Merkel visited Paris.")
ids = np.array([enc.ids], dtype=np.int64)
session = ort.InferenceSession(folder + "/model.onnx", providers=["CPUExecutionProvider"])
logits = session.run(["logits"], {{"input_ids": ids, "attention_mask": np.ones_like(ids)}})[0]
labels = json.load(open(folder + "/config.json"))["id2label"]
print(json.dumps({{"ids": enc.ids, "logits": logits.tolist(), "labels": [labels[str(i)] for i in logits[0].argmax(-1)]}}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    model = polyner.load(int8_dir).model
    expected = model.logits(np.array([out["ids"]]), np.ones((1, len(out["ids"])), dtype=np.int64))
    assert np.allclose(np.array(out["logits"]), expected, atol=1e-5)
    assert len(out["labels"]) == len(out["ids"]) and set(out["labels"]) <= set(model.config.label2id)


def test_random_batch_pads_every_second_row():
    ids, mask = random_batch(50, 4, 10, torch.Generator().manual_seed(0), pad_id=1)
    assert mask[0].all() and mask[2].all() and not mask[1].all() and not mask[3].all()
    assert (ids[~mask.bool()] == 1).all() and np.all(mask.sum(1).numpy() >= 1)


def _build_in_worker(home: str, log: str, barrier) -> str:
    """A worker process asking for the same cached build as its siblings, at the same moment."""
    import os
    import time

    os.environ["POLYNER_HOME"] = home
    from polyner.models.onnx_cache import build_once

    def build(partial, step) -> None:
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(0.5)  # long enough for the others to arrive while it builds
        (partial / "model.bin").write_text("weights")
        (partial / "config.json").write_text("{}")

    barrier.wait()
    return str(build_once("torch", "shared-model", build, "building", complete=("model.bin", "config.json")))


def test_workers_asking_at_once_build_once(tmp_path):
    """spaCy's nlp.pipe(n_process=N) workers each resolve the model: one of them builds the conversion, the others
    wait for it and load the same folder (each built its own before, and all but one were thrown away)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    log = tmp_path / "builds.log"
    with context.Manager() as manager:
        barrier = manager.Barrier(3)
        with context.Pool(3) as pool:
            folders = pool.starmap(_build_in_worker, [(str(tmp_path / "home"), str(log), barrier)] * 3)
    assert len(set(folders)) == 1 and (tmp_path / "home" / "torch" / "shared-model" / "model.bin").exists()
    assert len(log.read_text().split()) == 1
