"""The ``polyner`` command line through typer's CliRunner."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from polyner.cli import app

TEXTS = ["Angela Merkel visited Paris with Emmanuel Macron on Monday.",
         "Владимир Путин встретился с делегацией в Москве.",
         "习近平在北京会见了联合国秘书长。"]


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def expected(tiny_model_dir):
    """What the Python API says for TEXTS with the tiny model: the CLI must print the same."""
    import polyner

    return polyner.load(tiny_model_dir)(TEXTS)


def _json_lines(stdout: str) -> list[dict]:
    lines = stdout.splitlines()
    records = [json.loads(line) for line in lines]
    for record in records:
        assert set(record) == {"text", "entities"}
        assert isinstance(record["entities"], list)
        for entity in record["entities"]:
            assert set(entity) == {"text", "label", "start", "end", "score"}
            assert record["text"][entity["start"]:entity["end"]] == entity["text"]
            assert entity["label"] in ("PER", "ORG", "LOC")
    return records


def test_tag_texts_as_arguments(runner, tiny_model_dir, expected):
    result = runner.invoke(app, ["tag", *TEXTS, "--model", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    records = _json_lines(result.stdout)
    assert [r["text"] for r in records] == TEXTS
    assert [r["entities"] for r in records] == expected
    assert "\\u" not in result.stdout  # non-ASCII written as is


def test_tag_file(runner, tiny_model_dir, expected, tmp_path):
    path = tmp_path / "input.txt"
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["tag", "--file", str(path), "--model", str(tiny_model_dir), "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    records = _json_lines(result.stdout)
    assert [r["text"] for r in records] == TEXTS
    assert [r["entities"] for r in records] == expected


def test_tag_stdin(runner, tiny_model_dir, expected):
    result = runner.invoke(app, ["tag", "-m", str(tiny_model_dir)], input="\n".join(TEXTS) + "\n")
    assert result.exit_code == 0, result.output
    records = _json_lines(result.stdout)
    assert [r["text"] for r in records] == TEXTS
    assert [r["entities"] for r in records] == expected


def test_tag_stdin_keeps_empty_lines(runner, tiny_model_dir):
    result = runner.invoke(app, ["tag", "--model", str(tiny_model_dir)], input="Paris\n\nBerlin\n")
    assert result.exit_code == 0, result.output
    assert [r["text"] for r in _json_lines(result.stdout)] == ["Paris", "", "Berlin"]


def test_tag_output_matches_the_tagger(runner, tiny_model_dir, rule_tagger, monkeypatch):
    """With a tagger that does find entities, the JSON lines carry exactly its entities."""
    import polyner

    seen = {}

    def fake_load(model, batch_size=32, backend=None):
        seen.update(model=model, batch_size=batch_size)
        return rule_tagger

    monkeypatch.setattr(polyner, "load", fake_load)
    result = runner.invoke(app, ["tag", "Angela Merkel visited Paris.", "nothing here", "--model", "somewhere",
                                 "--batch-size", "5"])
    assert result.exit_code == 0, result.output
    assert seen == {"model": "somewhere", "batch_size": 5}
    first, second = _json_lines(result.stdout)
    assert [(e["text"], e["label"]) for e in first["entities"]] == [("Angela Merkel", "PER"), ("Paris", "PER")]
    assert second == {"text": "nothing here", "entities": []}
    assert [first["entities"], second["entities"]] == rule_tagger(["Angela Merkel visited Paris.", "nothing here"])


def test_tag_missing_model_directory(runner, tmp_path):
    missing = tmp_path / "no-such-model"
    result = runner.invoke(app, ["tag", "Paris", "--model", str(missing)])
    assert result.exit_code == 2
    assert str(missing) in result.stderr
    assert "not found" in result.stderr
    assert result.stdout == ""


def test_tag_incomplete_model_directory(runner, tmp_path):
    folder = tmp_path / "half-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    result = runner.invoke(app, ["tag", "Paris", "--model", str(folder)])
    assert result.exit_code == 2
    assert str(folder) in result.stderr and "model.safetensors" in result.stderr


def test_tag_missing_file(runner, tiny_model_dir, tmp_path):
    missing = tmp_path / "nope.txt"
    result = runner.invoke(app, ["tag", "--file", str(missing), "--model", str(tiny_model_dir)])
    assert result.exit_code == 2
    assert str(missing) in result.stderr
    assert result.stdout == ""


def test_teacher_help(runner):
    result = runner.invoke(app, ["teacher", "--help"])
    assert result.exit_code == 0, result.output
    assert "build" in result.stdout
    build = runner.invoke(app, ["teacher", "build", "--help"])
    assert build.exit_code == 0, build.output
    assert "--out" in build.stdout and "--force" in build.stdout


def test_train_teacher_help(runner):
    result = runner.invoke(app, ["train-teacher", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--gold", "--out", "--teacher", "--max-steps", "--exclude-source"):
        assert option in result.stdout


def test_train_teacher_requires_gold_and_out(runner):
    result = runner.invoke(app, ["train-teacher"])
    assert result.exit_code == 2
    assert "--gold" in result.output or "--out" in result.output


def test_no_arguments_shows_help(runner):
    result = runner.invoke(app, [])
    assert "tag" in result.output and "evaluate" in result.output and "train-teacher" in result.output
