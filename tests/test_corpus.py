"""``polyner tag-corpus``: streaming JSONL/Parquet input, ordered resumable shards, per-record errors, and the
local, multiprocessing and Ray engines giving identical output (tiny model, small corpora)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import SAMPLE_TEXTS
from polyner.corpus import CorpusInputError, CorpusOutputError, TagCorpusConfig, tag_corpus
from polyner.corpus.reader import plan_shards, read_shard
from polyner.corpus.tagging import ShardTagger, tag_records
from polyner.corpus.writer import ShardedOutput

TEXTS = SAMPLE_TEXTS[:16] + ["A short one.", "Berlin", "", "   "]  # 20 texts, empty ones included


@pytest.fixture(scope="module")
def expected(tiny_model_dir) -> list[list[dict]]:
    """What the Python API gives for TEXTS: every engine must write exactly this."""
    import polyner

    found = polyner.load(tiny_model_dir)(TEXTS)
    assert sum(map(len, found)) > 0, "the tiny model should find some entities, or the comparisons prove little"
    return found


def write_jsonl(path: Path, rows: list, raw_lines: dict[int, bytes] | None = None) -> Path:
    """Rows as JSON lines; ``raw_lines`` puts raw bytes at given line numbers instead."""
    lines = [json.dumps(row, ensure_ascii=False).encode() for row in rows]
    for at, raw in sorted((raw_lines or {}).items()):
        lines.insert(at, raw)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def corpus_rows(texts=TEXTS) -> list[dict]:
    return [{"id": f"doc-{i}", "lang": "xx", "text": text} for i, text in enumerate(texts)]


def read_output(folder: Path) -> list[dict]:
    records = []
    for part in sorted(folder.glob("part-*.jsonl")):
        records += [json.loads(line) for line in part.read_text(encoding="utf-8").splitlines()]
    return records


def run(tmp_path: Path, model: Path, source: Path, name: str = "out", **options):
    config = TagCorpusConfig(input=str(source), output=str(tmp_path / name), model=str(model), progress=False,
                             **{"shard_size": 6, **options})
    return tag_corpus(config), tmp_path / name


def assert_tagged(records: list[dict], expected: list[list[dict]], texts=TEXTS) -> None:
    assert [r["index"] for r in records] == list(range(len(texts)))
    assert [r["text"] for r in records] == texts
    assert [r["entities"] for r in records] == expected
    assert all(r["error"] is None for r in records)


# --- input, output, order ------------------------------------------------------------------------


def test_jsonl_corpus_in_input_order_with_ids_and_manifest(tmp_path, tiny_model_dir, expected):
    source = write_jsonl(tmp_path / "corpus.jsonl", corpus_rows())
    summary, out = run(tmp_path, tiny_model_dir, source)
    assert (summary.records, summary.errors, summary.shards, summary.shards_skipped) == (20, 0, 4, 0)
    assert sorted(p.name for p in out.glob("part-*")) == [f"part-0000{i}.jsonl" for i in range(4)]
    records = read_output(out)
    assert_tagged(records, expected)
    assert [r["id"] for r in records] == [f"doc-{i}" for i in range(20)]
    assert all("lang" not in r for r in records)  # only the kept fields (default: id) are carried over
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["records"] == 20 and manifest["settings"]["shard_size"] == 6
    assert not list(out.glob("*.tmp"))


def test_plan_shards_offsets_and_a_last_line_without_newline(tmp_path):
    source = tmp_path / "c.jsonl"
    source.write_bytes(b"".join(json.dumps({"text": t}).encode() + b"\n" for t in "abcdefg") + b'{"text": "h"}')
    specs = plan_shards(source, "jsonl", 3)
    assert [(s.shard, s.start, s.count) for s in specs] == [(0, 0, 3), (1, 3, 3), (2, 6, 2)]
    assert [[r.text for r in read_shard(s)] for s in specs] == [list("abc"), list("def"), list("gh")]
    assert [r.index for r in read_shard(specs[2])] == [6, 7]


def test_parquet_with_a_text_field_option_across_row_groups(tmp_path, tiny_model_dir, expected):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"doc_id": list(range(20)), "body": TEXTS})
    pq.write_table(table, tmp_path / "corpus.parquet", row_group_size=7)  # groups of 7 vs shards of 6
    summary, out = run(tmp_path, tiny_model_dir, tmp_path / "corpus.parquet", text_field="body",
                       keep_fields=("doc_id",))
    records = read_output(out)
    assert summary.records == 20
    assert [r["index"] for r in records] == list(range(20))
    assert [r["doc_id"] for r in records] == list(range(20))
    assert [r["body"] for r in records] == TEXTS and [r["entities"] for r in records] == expected
    assert all(set(r) == {"index", "doc_id", "body", "entities", "error"} for r in records)


# --- bad input ------------------------------------------------------------------------------------


def test_bad_records_get_an_error_and_no_other_record_is_lost(tmp_path, tiny_model_dir, expected):
    bad = {3: b"{not json", 7: b"", 9: b'{"id": "x", "text": 5}', 11: b'{"id": "y"}', 12: b'{"text": null}',
           15: b'["a list"]', 17: b'{"text": "caf\xe9"}'}
    source = write_jsonl(tmp_path / "corpus.jsonl", corpus_rows(), raw_lines=bad)
    summary, out = run(tmp_path, tiny_model_dir, source)
    records = read_output(out)
    assert len(records) == 27 and summary.records == 27 and summary.errors == 7
    assert [r["index"] for r in records] == list(range(27))
    errors = {r["index"]: r["error"] for r in records if r["error"] is not None}
    assert set(errors) == set(bad)
    assert "invalid JSON" in errors[3] and errors[7] == "blank line"
    assert errors[9] == "field 'text' is int, not a string" and errors[11] == "no 'text' field"
    assert errors[12] == "field 'text' is null, not a string" and "not an object" in errors[15]
    assert "UTF-8" in errors[17]
    assert all(records[i]["entities"] is None and records[i]["text"] is None for i in bad)
    assert records[9]["id"] == "x" and records[11]["id"] == "y"  # kept fields survive an error
    good = [r for r in records if r["error"] is None]
    assert_tagged([{**r, "index": i} for i, r in enumerate(good)], expected)  # empty texts: [] and no error


def test_a_record_the_tagger_refuses_fails_alone(tiny_model_dir):
    import polyner
    from polyner.corpus.reader import InputRecord

    tagger = polyner.load(tiny_model_dir, max_text_chars=40)
    texts = ["Angela Merkel visited Paris.", "x" * 41, "Berlin is big."]
    lines, errors = tag_records(tagger, [InputRecord(i, t) for i, t in enumerate(texts)], "text")
    rows = [json.loads(line) for line in lines]
    assert errors == 1 and "max_text_chars" in rows[1]["error"] and rows[1]["entities"] is None
    assert [rows[0]["entities"], rows[2]["entities"]] == tagger([texts[0], texts[2]])


def test_unreadable_inputs_give_clear_errors(tmp_path, tiny_model_dir):
    with pytest.raises(CorpusInputError, match="not found"):
        run(tmp_path, tiny_model_dir, tmp_path / "missing.jsonl")
    (tmp_path / "folder.jsonl").mkdir()
    with pytest.raises(CorpusInputError, match="not a file"):
        run(tmp_path, tiny_model_dir, tmp_path / "folder.jsonl")
    (tmp_path / "broken.parquet").write_bytes(b"this is no parquet file")
    with pytest.raises(CorpusInputError, match="as Parquet"):
        run(tmp_path, tiny_model_dir, tmp_path / "broken.parquet")
    (tmp_path / "corpus.txt").write_text("hello\n")
    with pytest.raises(CorpusInputError, match="--format"):
        run(tmp_path, tiny_model_dir, tmp_path / "corpus.txt")
    write_jsonl(tmp_path / "corpus.txt", corpus_rows()[:3])  # any name, with --format
    assert run(tmp_path, tiny_model_dir, tmp_path / "corpus.txt", format="jsonl")[0].records == 3
    with pytest.raises(CorpusInputError, match="collides"):
        run(tmp_path, tiny_model_dir, write_jsonl(tmp_path / "c.jsonl", corpus_rows()), keep_fields=("error",))


def test_parquet_without_the_text_column_or_with_non_strings(tmp_path, tiny_model_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["a", "b"]}), tmp_path / "c.parquet")
    with pytest.raises(CorpusInputError, match=r"no column 'text' \(columns: body\)"):
        run(tmp_path, tiny_model_dir, tmp_path / "c.parquet")
    pq.write_table(pa.table({"text": [1, None, 3]}), tmp_path / "n.parquet")
    summary, out = run(tmp_path, tiny_model_dir, tmp_path / "n.parquet", name="n")
    assert summary.errors == 3
    assert [r["error"] for r in read_output(out)] == ["field 'text' is int, not a string",
                                                     "field 'text' is null, not a string",
                                                     "field 'text' is int, not a string"]


def test_records_that_cannot_be_written_get_an_error_and_the_run_completes(tmp_path, tiny_model_dir, expected):
    """A lone surrogate (valid JSON ``"\\ud800"``, invalid Unicode) stopped the whole run with a leftover
    ``part-*.jsonl.tmp``, on every resume. Now that record carries an error naming the field and the character (the
    text field's is found when the record is read: the tagger refuses such text)."""
    rows = corpus_rows()
    rows.insert(4, {"id": "surrogate-text", "text": "Angela\ud800Merkel besuchte Paris."})
    rows.insert(9, {"id": "caf\udce9", "text": "Berlin"})  # in a kept field: that field is dropped, not the record
    rows.insert(13, {"id": float("nan"), "text": "Paris"})  # NaN is not JSON
    source = tmp_path / "corpus.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="ascii")  # \u escapes
    summary, out = run(tmp_path, tiny_model_dir, source)
    assert summary.records == 23 and summary.errors == 3
    assert not list(out.glob("*.tmp")) and json.loads((out / "manifest.json").read_text())["complete"]
    records = read_output(out)
    assert [r["index"] for r in records] == list(range(23))
    bad = {4: "field 'text' is not valid Unicode", 9: "field 'id' cannot be written", 13: "field 'id' cannot be written"}
    for index, start in bad.items():
        assert records[index]["error"].startswith(start) and records[index]["entities"] is None
    assert records[4]["error"] == "field 'text' is not valid Unicode: a lone surrogate U+D800 at character 6"
    assert records[4]["text"] is None
    assert records[4]["id"] == "surrogate-text"
    assert "U+DCE9" in records[9]["error"] and records[9]["id"] is None and records[9]["text"] == "Berlin"
    assert "not JSON compliant" in records[13]["error"]
    good = [r for i, r in enumerate(records) if i not in bad]
    assert_tagged([{**r, "index": i} for i, r in enumerate(good)], expected)
    assert run(tmp_path, tiny_model_dir, source)[0].shards_skipped == summary.shards  # a rerun has nothing to do


def test_a_failed_write_leaves_no_temporary_file_and_the_run_resumes(tmp_path, tiny_model_dir, monkeypatch):
    import os

    source = write_jsonl(tmp_path / "corpus.jsonl", corpus_rows())
    _, reference = run(tmp_path, tiny_model_dir, source, name="reference")
    calls = []
    real_fsync = os.fsync

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 4:  # the second shard's file
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", failing_fsync)
        with pytest.raises(OSError, match="No space left"):
            run(tmp_path, tiny_model_dir, source)
    out = tmp_path / "out"
    assert not list(out.glob("*.tmp"))
    (out / "part-00002.jsonl.tmp").write_text("torn")  # as left by a run killed mid-write
    summary, _ = run(tmp_path, tiny_model_dir, source)
    assert not list(out.glob("*.tmp")) and summary.shards_skipped >= 1
    assert read_output(out) == read_output(reference)


# --- resume ---------------------------------------------------------------------------------------


def test_interrupted_run_resumes_and_skips_written_shards(tmp_path, tiny_model_dir, monkeypatch):
    source = write_jsonl(tmp_path / "corpus.jsonl", corpus_rows())
    _, reference = run(tmp_path, tiny_model_dir, source, name="reference")
    written = []
    original_write = ShardedOutput.write

    def interrupted_write(self, shard, lines, errors):
        if len(written) == 2:
            raise KeyboardInterrupt("simulated interruption")
        written.append(shard)
        original_write(self, shard, lines, errors)

    with monkeypatch.context() as patch:
        patch.setattr(ShardedOutput, "write", interrupted_write)
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path, tiny_model_dir, source)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("part-*.jsonl")) == ["part-00000.jsonl", "part-00001.jsonl"]
    assert not json.loads((out / "manifest.json").read_text())["complete"]
    first_shards = {p.name: p.read_bytes() for p in out.glob("part-*.jsonl")}

    tagged = []
    original_call = ShardTagger.__call__
    monkeypatch.setattr(ShardTagger, "__call__", lambda self, spec: tagged.append(spec.shard) or original_call(self, spec))
    summary, _ = run(tmp_path, tiny_model_dir, source)
    assert tagged == [2, 3] and summary.shards_skipped == 2 and summary.records_tagged == 8
    assert all((out / name).read_bytes() == data for name, data in first_shards.items())  # kept, not rewritten
    assert read_output(out) == read_output(reference)
    assert json.loads((out / "manifest.json").read_text())["complete"]

    tagged.clear()  # a complete run: nothing to do
    assert run(tmp_path, tiny_model_dir, source)[0].shards_skipped == 4 and tagged == []


def test_output_of_another_run_is_refused_unless_overwritten(tmp_path, tiny_model_dir):
    source = write_jsonl(tmp_path / "corpus.jsonl", corpus_rows())
    run(tmp_path, tiny_model_dir, source)
    with pytest.raises(CorpusOutputError, match="changed: shard_size"):
        run(tmp_path, tiny_model_dir, source, shard_size=5)
    summary, out = run(tmp_path, tiny_model_dir, source, shard_size=5, overwrite=True)
    assert summary.shards == 4 and len(list(out.glob("part-*.jsonl"))) == 4 and len(read_output(out)) == 20


# --- engines --------------------------------------------------------------------------------------


def test_process_engine_equals_local(tmp_path, tiny_model_dir):
    source = write_jsonl(tmp_path / "corpus.jsonl", corpus_rows(), raw_lines={5: b"{bad"})
    _, local = run(tmp_path, tiny_model_dir, source, name="local")
    summary, process = run(tmp_path, tiny_model_dir, source, name="process", engine="process", workers=2)
    assert summary.records == 21 and summary.errors == 1
    assert [p.read_bytes() for p in sorted(process.glob("part-*"))] == [
        p.read_bytes() for p in sorted(local.glob("part-*"))]


def test_ray_engine_equals_local_on_a_local_two_worker_ray(tmp_path, tiny_model_dir):
    pytest.importorskip("ray.data", reason="Ray is an optional extra: pip install '.[ray]' to run this test")
    source = write_jsonl(tmp_path / "corpus.jsonl", corpus_rows(), raw_lines={5: b"{bad"})
    _, local = run(tmp_path, tiny_model_dir, source, name="local")
    summary, on_ray = run(tmp_path, tiny_model_dir, source, name="ray", engine="ray", workers=2)
    assert summary.records == 21 and summary.errors == 1 and summary.shards == 4
    assert [p.read_bytes() for p in sorted(on_ray.glob("part-*"))] == [
        p.read_bytes() for p in sorted(local.glob("part-*"))]


def test_engine_and_worker_settings_are_checked(tmp_path, tiny_model_dir):
    source = write_jsonl(tmp_path / "corpus.jsonl", corpus_rows())
    with pytest.raises(ValueError, match="unknown engine"):
        run(tmp_path, tiny_model_dir, source, engine="spark")
    with pytest.raises(ValueError, match="--engine process or ray"):
        run(tmp_path, tiny_model_dir, source, workers=2)
    for name in ("threads", "batch_size", "shard_size", "workers"):
        with pytest.raises(ValueError, match=f"--{name.replace('_', '-')} must be at least 1, not 0"):
            run(tmp_path, tiny_model_dir, source, **{name: 0})


# --- command line -------------------------------------------------------------------------------


def test_cli_tag_corpus(tmp_path, tiny_model_dir, expected):
    from polyner.cli import app

    source = write_jsonl(tmp_path / "corpus.jsonl", [{"key": i, "content": t} for i, t in enumerate(TEXTS)])
    out = tmp_path / "cli-out"
    result = CliRunner().invoke(app, ["tag-corpus", str(source), "--out", str(out), "--model", str(tiny_model_dir),
                                      "--text-field", "content", "--keep", "key", "--shard-size", "8",
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["records"], summary["errors"], summary["shards"]) == (20, 0, 3)
    records = read_output(out)
    assert [r["key"] for r in records] == list(range(20)) and [r["entities"] for r in records] == expected

    missing = CliRunner().invoke(app, ["tag-corpus", str(tmp_path / "nope.jsonl"), "-o", str(out)])
    assert missing.exit_code == 2 and "input file not found" in missing.output
    bad_model = CliRunner().invoke(app, ["tag-corpus", str(source), "-o", str(tmp_path / "x"), "-m",
                                         str(tmp_path / "no-model")])
    assert bad_model.exit_code == 2 and "model directory not found" in bad_model.output


def test_backend_onnx_int8_is_exported_once_and_tags_as_polyner_tag(tmp_path, tiny_model_dir, monkeypatch):
    """tag-corpus --backend onnx-int8 gives the entities `polyner tag --backend onnx-int8` gives; the export is made
    once by the run, before its workers start, and the manifest records the backend."""
    import polyner
    from polyner.models import backend as backend_module

    texts = TEXTS[:8]
    source = write_jsonl(tmp_path / "corpus.jsonl", [{"id": i, "text": t} for i, t in enumerate(texts)])
    prepared = []
    real_prepare = backend_module.prepare_backend

    def counting(path, backend):
        prepared.append(backend)
        return real_prepare(path, backend)

    monkeypatch.setattr(backend_module, "prepare_backend", counting)
    shard = 6
    summary, out = run(tmp_path, tiny_model_dir, source, backend="onnx-int8", engine="process", workers=2,
                       shard_size=shard)
    assert summary.records == 8 and summary.errors == 0 and prepared == ["onnx-int8"]
    records = read_output(out)
    # one tagger call per shard in the run, one call here: int8 activations are quantized per token, so the
    # batches do not matter
    direct = polyner.load(tiny_model_dir, backend="onnx-int8", threads=1)(texts)

    def spans(results):
        return [[(e["text"], e["label"], e["start"], e["end"]) for e in entities] for entities in results]

    assert spans(r["entities"] for r in records) == spans(direct)
    assert [e["score"] for r in records for e in r["entities"]] == pytest.approx(
        [e["score"] for entities in direct for e in entities], abs=1e-5)
    assert json.loads((out / "manifest.json").read_text())["settings"]["backend"] == "onnx-int8"
    with pytest.raises(ValueError, match="backend"):
        run(tmp_path, tiny_model_dir, source, name="bad", backend="tensorflow")
