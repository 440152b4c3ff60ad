"""The inference bench (tables, ratios, agreement, cost curve, machine, docs) on tiny models; no real model here."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime", reason="the bench exports ONNX models: pip install 'polyner[export]'")
pytest.importorskip("onnx", reason="the bench exports ONNX models: pip install 'polyner[export]'")

from polyner.agreement import Agreement, entity_agreement, tag_keys  # noqa: E402
from polyner.bench.machine import cpu_model, describe_machine, physical_cores  # noqa: E402
from polyner.bench.report import Check, checks, is_linear, ratio, render, write_docs  # noqa: E402
from polyner.bench.runner import (SCALE, STUDENT_INT8, STUDENT_ONNX, STUDENT_TORCH, TEACHER,  # noqa: E402
                                  BenchConfig, contenders, prepare_texts, run_bench, run_contender)

from tiny_student import save_tiny_student  # noqa: E402

TINY_SCALE = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
              "max_position_embeddings": 256}


def test_entity_agreement_counts():
    a = [{(0, 2, "PER"), (5, 6, "LOC")}, set(), {(1, 3, "ORG")}]
    b = [{(0, 2, "PER"), (5, 6, "ORG")}, set(), {(1, 3, "ORG"), (4, 5, "LOC")}]
    agreement = entity_agreement(a, b)
    assert (agreement.matched, agreement.only_a, agreement.only_b, agreement.texts) == (2, 1, 2, 3)
    assert agreement.rate == pytest.approx(2 / 5) and agreement.recovered == pytest.approx(2 / 3)
    assert Agreement(0, 0, 0, 4).rate == 1.0
    with pytest.raises(ValueError, match="same texts"):
        entity_agreement(a, b[:2])
    assert tag_keys(["B-PER", "I-PER", "O", "I-LOC", "B-LOC"]) == {(0, 2, "PER"), (3, 4, "LOC"), (4, 5, "LOC")}


def test_ratio_linearity_and_checks():
    assert ratio(30.0, 3.0) == 10.0 and ratio(None, 3.0) is None and ratio(1.0, 0.0) is None
    assert is_linear({"10": 0.01, "1000": 0.5, "10000": 5.2}) == (pytest.approx(10.4), True)
    assert is_linear({"1000": 0.5, "10000": 20.0})[1] is False
    assert is_linear({"10": 0.1}) == (None, None)
    assert Check("x", 12.0, ">=", 10.0).met is True and Check("x", 600.0, "<", 500.0).met is False
    assert Check("x", None, "<", 1.0).met is None


def test_machine_description(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nphysical id\t: 0\ncore id\t: 0\n\n"
                    "processor\t: 1\nmodel name\t: Test CPU 9000\nphysical id\t: 0\ncore id\t: 1\n\n"
                    "processor\t: 2\nmodel name\t: Test CPU 9000\nphysical id\t: 0\ncore id\t: 0\n")
    assert cpu_model(info) == "Test CPU 9000" and physical_cores(info) == 2
    described = describe_machine(3)
    assert described["threads per model"] == "3" and described["CPU"] and "torch" in described


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, tokenizer, tiny_model_dir):
    from conftest import write_gold_tree

    root = tmp_path_factory.mktemp("bench")
    student = save_tiny_student(tokenizer, root / "student")
    config = BenchConfig(teacher=str(tiny_model_dir), gold=str(write_gold_tree(root / "gold")), student=str(student),
                         speed_sentences=4, cost_words=[5, 50], threads=1, repeats=1, scale_geometry=TINY_SCALE,
                         work=str(root / "work"), docs=str(root / "docs" / "benchmarks.md"), isolate=False)
    return run_bench(config)


def test_bench_measures_every_model(bench_run):
    names = [r.name for r in bench_run.results]
    assert names == [TEACHER, SCALE, STUDENT_TORCH, STUDENT_ONNX, STUDENT_INT8]
    found = {r.name: r for r in bench_run.results}
    for result in bench_run.results:
        assert result.error is None
        assert result.batch1_sps > 0 and result.batch32_sps > 0 and result.p50_ms > 0 and result.peak_rss_mb > 0
        assert set(result.cost_s) == {"5", "50"}
    assert found[SCALE].f1_macro is None and found[SCALE].load_s is None and found[SCALE].model_bytes is None
    assert found[STUDENT_INT8].quantization == "int8" and found[STUDENT_ONNX].backend == "onnx"
    assert found[STUDENT_INT8].model_bytes < found[STUDENT_ONNX].model_bytes
    assert set(found[STUDENT_TORCH].f1_by_lang) == {"de", "en", "ru"}
    assert len(found[STUDENT_TORCH].tags) == 4  # the gold tree's four test sentences, in file order


def test_report_tables_and_docs(bench_run, tmp_path):
    body = render(bench_run, "polyner bench --test")
    assert "`polyner bench --test`" in body and "not isolated" in body
    for name in (TEACHER, SCALE, STUDENT_TORCH, STUDENT_ONNX, STUDENT_INT8):
        assert f"| {name} |" in body
    assert "Test CPU" not in body and bench_run.machine["CPU"] in body
    assert "| **macro** |" in body and "Cost curve" in body and "Targets:" in body
    assert f"Entity agreement of {STUDENT_ONNX} with {STUDENT_TORCH}" in body
    found = {c.name.split(" (")[0]: c for c in checks(bench_run)}
    assert found["ONNX fp32 entities agreeing with torch fp32"].value == pytest.approx(100.0)
    teacher = next(r for r in bench_run.results if r.name == TEACHER)
    best = max((r for r in bench_run.results if r.name.startswith("student")), key=lambda r: r.batch32_sps)
    speedup = next(c for c in checks(bench_run) if c.name.startswith("fastest student"))
    assert speedup.value == pytest.approx(best.batch32_sps / teacher.batch32_sps)
    path = write_docs(tmp_path / "benchmarks.md", body)
    write_docs(path, body)  # a second run replaces the section
    text = path.read_text()
    assert text.startswith("# Benchmarks") and text.count("<!-- polyner:inference -->") == 1


def test_a_contender_in_a_fresh_process(bench_run):
    spec = next(s for s in contenders(bench_run.config, bench_run.exports) if s.name == STUDENT_INT8)
    config = BenchConfig(**{**bench_run.config.__dict__, "isolate": True, "timeout_s": 120})
    texts, _ = prepare_texts(config)
    texts_file = Path(config.work) / "texts-isolated.json"
    texts_file.write_text(json.dumps(texts), encoding="utf-8")
    result = run_contender(spec, texts_file, texts, config)
    assert result.error is None and result.isolated
    assert result.load_s > 0 and result.peak_rss_mb > 50 and result.f1_macro is not None


def test_only_torch_contenders_import_torch(bench_run):
    from polyner.bench.worker import runs_on_torch

    runs = {spec.name: runs_on_torch(spec) for spec in contenders(bench_run.config, bench_run.exports)}
    assert runs == {TEACHER: True, SCALE: True, STUDENT_TORCH: True, STUDENT_ONNX: False, STUDENT_INT8: False}


def test_contenders_take_turns_in_fresh_processes(bench_run, tmp_path):
    """Workers in turns mode: each measured in its own process; a broken one is reported, the others finish."""
    from polyner.bench.runner import run_in_turns
    from polyner.bench.worker import ContenderSpec

    specs = [s for s in contenders(bench_run.config, bench_run.exports) if s.name in (STUDENT_TORCH, STUDENT_INT8)]
    specs.insert(1, ContenderSpec("broken", str(tmp_path / "no-such-model"), backend="torch", repeats=2))
    config = BenchConfig(**{**bench_run.config.__dict__, "isolate": True, "repeats": 2, "timeout_s": 120})
    texts, _ = prepare_texts(config)
    texts_file = tmp_path / "texts.json"
    texts_file.write_text(json.dumps(texts), encoding="utf-8")
    results = run_in_turns(specs, texts_file, config)
    assert [r.name for r in results] == [STUDENT_TORCH, "broken", STUDENT_INT8]
    broken = results[1]
    assert broken.error and "no-such-model" in broken.error and broken.batch32_sps is None
    for result in (results[0], results[2]):
        assert result.error is None and result.isolated
        assert result.batch32_sps > 0 and result.batch1_sps > 0 and result.p50_ms > 0
        assert result.load_s > 0 and result.peak_rss_mb > 50 and result.f1_macro is not None
        assert set(result.cost_s) == {str(n) for n in config.cost_words}


def test_ratios_pair_the_rounds_when_models_take_turns():
    """A machine twice as fast in round 2: paired per-round ratios see a steady 10x; one-by-one runs use medians."""
    from polyner.bench.report import paired_ratios, speed_ratio
    from polyner.bench.runner import BenchRun
    from polyner.bench.worker import Measurement

    teacher = Measurement(TEACHER, "torch", batch32_sps=50.0, batch32_passes=[40.0, 80.0, 50.0],
                          batch1_sps=10.0, batch1_passes=[10.0, 20.0, 10.0])
    student = Measurement(STUDENT_INT8, "onnx", batch32_sps=800.0, batch32_passes=[400.0, 800.0, 500.0],
                          batch1_sps=100.0, batch1_passes=[100.0, 200.0, 100.0])
    turns = BenchRun(BenchConfig(teacher="t", gold="g", isolate=True, turns=True), [teacher, student], {}, {}, {})
    alone = BenchRun(BenchConfig(teacher="t", gold="g", isolate=True, turns=False), [teacher, student], {}, {}, {})
    assert speed_ratio(turns, student, teacher) == pytest.approx(10.0)
    assert paired_ratios(turns, student, teacher) == pytest.approx([10.0, 10.0, 10.0])
    assert speed_ratio(turns, student, teacher, batch=1) == pytest.approx(10.0)
    assert speed_ratio(alone, student, teacher) == pytest.approx(16.0)  # 800 / 50: the medians of other rounds
    assert paired_ratios(alone, student, teacher) == []
    assert speed_ratio(turns, student, None) is None


def test_torch_contender_on_an_onnx_only_directory(bench_run, tmp_path):
    """`polyner bench --model polyner/default` (the packed default ships model.onnx only): the torch row measures the
    weights read back from it instead of failing on a missing model.safetensors."""
    from polyner.bench.worker import ContenderSpec, measure
    from polyner.models.onnx_export import ExportConfig, export_onnx

    packed = tmp_path / "packed"
    export_onnx(ExportConfig(model=bench_run.config.student, out=str(packed), quantize="int8"))
    assert not (packed / "model.safetensors").exists()
    texts, _ = prepare_texts(bench_run.config)
    result = measure(ContenderSpec(STUDENT_TORCH, str(packed), backend="torch", repeats=1), texts, isolated=False)
    assert result.error is None and result.backend == "torch"
    assert result.model_bytes > 0 and result.parameters > 0


def test_per_batch_int8_is_measured_beside_but_never_called_the_fastest_student():
    """--per-batch-int8 adds onnxruntime's own int8 kind as a contender; the speed checks stay on the shipped kinds."""
    from polyner.bench.report import fastest_student
    from polyner.bench.runner import STUDENT_INT8_PER_BATCH, student_exports
    from polyner.bench.worker import Measurement

    plain = BenchConfig(teacher="t", gold="g")
    asked = BenchConfig(teacher="t", gold="g", per_batch_int8=True)
    assert [e[0] for e in student_exports(plain)] == [STUDENT_ONNX, STUDENT_INT8]
    assert [e[:3] for e in student_exports(asked)][-1] == (STUDENT_INT8_PER_BATCH, "int8", "per-batch")
    assert {e[2] for e in student_exports(asked)[:2]} == {"per-token"}
    exports = {name: {"path": f"/x/{folder}"} for name, _, _, folder in student_exports(asked)}
    assert [s.name for s in contenders(asked, exports)][-1] == STUDENT_INT8_PER_BATCH
    shipped = Measurement(STUDENT_INT8, "onnx", batch32_sps=300.0)
    per_batch = Measurement(STUDENT_INT8_PER_BATCH, "onnx", batch32_sps=400.0)
    assert fastest_student([shipped, per_batch]) is shipped

