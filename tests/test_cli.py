"""The ``polyner`` command line through typer's CliRunner."""
from __future__ import annotations

import json
from pathlib import Path

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
    from polyner.spec import ModelSpec

    seen = {}

    def fake_build(spec):
        seen.update(model=spec.path, batch_size=spec.tagger.batch_size, decoding=spec.tagger.decoding)
        return rule_tagger

    monkeypatch.setattr(ModelSpec, "build", fake_build)
    result = runner.invoke(app, ["tag", "Angela Merkel visited Paris.", "nothing here", "--model", str(tiny_model_dir),
                                 "--batch-size", "5", "--decoding", "argmax"])
    assert result.exit_code == 0, result.output
    assert seen == {"model": tiny_model_dir, "batch_size": 5, "decoding": "argmax"}
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


def test_tag_refuses_texts_and_a_file_together(runner, tiny_model_dir, tmp_path):
    """Both given, one would be ignored: the file's texts would be lost without a word."""
    (tmp_path / "in.txt").write_text("Angela Merkel\n", encoding="utf-8")
    result = runner.invoke(app, ["tag", "--file", str(tmp_path / "in.txt"), "Paris", "--model", str(tiny_model_dir)])
    assert result.exit_code == 2 and "give texts or --file, not both" in result.stderr and result.stdout == ""


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


def _verbs(command, path=()):
    """Every (name path, click command) of the app, sub-groups walked."""
    if hasattr(command, "commands"):  # a group (typer's click)
        for name, sub in command.commands.items():
            yield from _verbs(sub, (*path, name))
    else:
        yield path, command


def test_every_verb_uses_one_vocabulary():
    """One flag for one idea in every verb: --languages, --gold, --out, --model, --verbose/--quiet; an older
    spelling may only appear as an alias of the new one, and no option names a file to write by default."""
    import typer

    verbs = dict(_verbs(typer.main.get_command(app)))
    assert {("tag",), ("evaluate",), ("bench",), ("tag-corpus",), ("serve",), ("distill",), ("export",),
            ("finetune", "glue"), ("teacher", "build")} <= set(verbs)
    for path, command in verbs.items():
        for param in command.params:
            opts = set(param.opts) | set(param.secondary_opts)
            where = f"polyner {' '.join(path)} {sorted(opts)}"
            if opts & {"--langs", "--languages"}:
                assert param.opts[0] == "--languages", where
            if opts & {"--output", "-o"}:
                assert param.opts[0] == "--out", where
            if "--data" in opts and path[0] != "finetune":  # finetune's --data is a GLUE/SQuAD directory
                assert param.opts[0] == "--gold", where
            if "--verbose" in opts or "-v" in opts:
                assert param.opts[0] == "--verbose" and "--quiet" in param.secondary_opts, where
            if "--student" in opts:
                assert param.opts[0] == "--model", where
            if "--results" in opts and path[0] not in ("pack", "card"):  # there --results is a file to read
                assert param.opts[0] == "--write", where
            assert "--log-level" not in opts or path == ("serve",), where
            assert not isinstance(param.default, Path), f"{where} defaults to the path {param.default}"
        names = {o for param in command.params for o in param.opts}
        if path not in (("models",), ("card",), ("teacher", "build")) and path[0] != "serve":
            assert "--verbose" in names, f"polyner {' '.join(path)} has no --verbose/--quiet"


def test_verbs_that_write_markdown_write_only_with_write(runner):
    import typer

    verbs = dict(_verbs(typer.main.get_command(app)))
    for verb in (("evaluate",), ("bench",), ("finetune", "glue"), ("finetune", "squad")):
        result = runner.invoke(app, [*verb, "--help"])
        assert result.exit_code == 0 and "--write" in result.stdout
        write = next(p for p in verbs[verb].params if "--write" in p.opts)
        assert write.default is None


def test_a_user_error_from_any_verb_is_one_line_and_exit_2(runner, tmp_path):
    """The one handler: a UserError raised by a verb (card: nothing to write; the model given twice) is printed
    as one error line, never a traceback."""
    _one_line_error(runner.invoke(app, ["card", "--model", str(tmp_path)]), "nothing to write")
    _one_line_error(runner.invoke(app, ["card", str(tmp_path), "--model", str(tmp_path / "other"),
                                        "--speed", str(tmp_path)]), "give the model once")
    _one_line_error(runner.invoke(app, ["card", "--speed", str(tmp_path / "speed.md")]), "missing --model")


def test_no_arguments_shows_help(runner):
    result = runner.invoke(app, [])
    assert "tag" in result.output and "evaluate" in result.output and "train-teacher" in result.output


# --- hostile input (issue 23, case 9): one line and exit 2, never a traceback or bytes that are not UTF-8 -----------

def _one_line_error(result, *words: str) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert result.stdout == ""
    return lines[0]


def test_tag_refuses_a_binary_or_directory_file(runner, tiny_model_dir, tmp_path):
    binary = tmp_path / "image.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    _one_line_error(runner.invoke(app, ["tag", "--file", str(binary), "-m", str(tiny_model_dir)]),
                    str(binary), "not UTF-8 text", "0x89", "line 1")
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes("Paris\n".encode("utf-16-le"))
    _one_line_error(runner.invoke(app, ["tag", "--file", str(utf16), "-m", str(tiny_model_dir)]), "NUL")
    utf16.write_bytes("Paris\n".encode("utf-16"))  # with its byte-order mark: not UTF-8 from the first byte
    _one_line_error(runner.invoke(app, ["tag", "--file", str(utf16), "-m", str(tiny_model_dir)]),
                    "0xff at line 1", "UTF-16 byte-order mark", "iconv")
    _one_line_error(runner.invoke(app, ["tag", "--file", str(tmp_path), "-m", str(tiny_model_dir)]),
                    "not a file", str(tmp_path))


def test_tag_refuses_binary_stdin_instead_of_writing_it_back(runner, tiny_model_dir):
    result = runner.invoke(app, ["tag", "-m", str(tiny_model_dir)], input=b"Paris\nBer\xfflin\n")
    _one_line_error(result, "standard input is not UTF-8 text", "0xff", "line 2")


def test_tag_refuses_an_argument_that_is_not_utf8(runner, tiny_model_dir):
    """Bytes that are not UTF-8 reach argv as lone surrogates (surrogateescape): refused, not echoed back."""
    result = runner.invoke(app, ["tag", "Paris", "Ber\udcfflin", "-m", str(tiny_model_dir)])
    _one_line_error(result, "text argument 2", "U+DCFF")


def test_tag_stdin_lines_split_at_newlines_only(runner, tiny_model_dir):
    """A line separator or a form feed inside a line does not make two texts; CRLF and a BOM are handled."""
    data = "\ufeffAngela\u2028Merkel\r\nParis\x0cBerlin\n".encode("utf-8")
    result = runner.invoke(app, ["tag", "-m", str(tiny_model_dir)], input=data)
    assert result.exit_code == 0, result.output
    assert [r["text"] for r in _json_lines(result.stdout)] == ["Angela\u2028Merkel", "Paris\x0cBerlin"]


@pytest.fixture()
def no_server(monkeypatch):
    """A refused setting must stop ``serve`` before it listens: fail (not hang on a port) if it would start."""
    from polyner.serve.server import PolynerServer

    def started(self):
        raise AssertionError("the server started despite a bad setting")

    monkeypatch.setattr(PolynerServer, "run", started)


@pytest.mark.parametrize("arguments, words", [
    (["--port", "99999"], ["--port", "99999"]),
    (["--max-texts-per-request", "-1"], ["max_texts_per_request", "-1"]),
    (["--request-timeout-s", "0"], ["request_timeout_s"]),
    (["--max-batch-size", "0"], ["max_batch_size"]),
    (["--graceful-shutdown-s", "-5"], ["graceful_shutdown_s"]),
    (["--max-connections", "0"], ["max_connections"]),
    (["--log-level", "loud"], ["--log-level"]),
    (["--host", "no such host.invalid"], ["--host"]),
])
def test_serve_refuses_bad_settings_in_one_line(runner, tiny_model_dir, arguments, words, no_server):
    _one_line_error(runner.invoke(app, ["serve", "--model", str(tiny_model_dir), *arguments]), *words)


def test_serve_refuses_a_bad_environment_variable_in_one_line(runner, tiny_model_dir, monkeypatch, no_server):
    monkeypatch.setenv("POLYNER_SERVE_MAX_BATCH_SIZE", "many")
    _one_line_error(runner.invoke(app, ["serve", "--model", str(tiny_model_dir)]),
                    "POLYNER_SERVE_MAX_BATCH_SIZE", "'many'")
    monkeypatch.setenv("POLYNER_SERVE_MAX_BATCH_SIZE", "4")
    monkeypatch.setenv("POLYNER_SERVE_REQUEST_TIMEOUT_S", "0")
    _one_line_error(runner.invoke(app, ["serve", "--model", str(tiny_model_dir)]), "POLYNER_SERVE_REQUEST_TIMEOUT_S")


def test_serve_refuses_a_model_that_does_not_load_in_one_line(runner, tiny_model_dir, tmp_path, no_server):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "layer_norm_eps": "x"}))
    _one_line_error(runner.invoke(app, ["serve", "--model", str(broken)]), "layer_norm_eps", "config.json")
