"""The ``polyner`` command line (typer). Each verb calls one library function."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from polyner.cli_common import fail as _fail, needs as _needs, setup_logging as _logging, text_lines
from polyner.textcheck import lone_surrogate, one_json_line

app = typer.Typer(add_completion=False, no_args_is_help=True, help="polyner: multilingual NER, small and fast.")
teacher_app = typer.Typer(no_args_is_help=True, help="Build the multilingual teacher encoder.")
app.add_typer(teacher_app, name="teacher")


def _print_version(value: bool) -> None:
    if value:
        from polyner import __version__

        typer.echo(f"polyner {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """polyner: multilingual NER, small and fast."""


@app.command()
def tag(texts: List[str] = typer.Argument(None, help="Texts to tag; none: read --file or standard input."),
        file: Optional[Path] = typer.Option(None, "--file", "-f", help="A text file, one text per line."),
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Model directory or name (default: shipped)."),
        batch_size: int = typer.Option(32, help="Windows per forward pass."),
        backend: Optional[str] = typer.Option(None, help="torch, onnx or onnx-int8 (exported once on first use; "
                                              "the fastest on a CPU); default: from the model directory."),
        verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Tag texts and write one JSON line per text: {"text": ..., "entities": [...]}."""
    import polyner
    from polyner.models.io import ModelDirectoryError

    _logging(verbose)
    if texts:
        lines = list(texts)
        for i, text in enumerate(lines, 1):
            problem = lone_surrogate(text)  # bytes that are not UTF-8 reach argv as lone surrogates
            if problem:
                _fail(f"text argument {i} is not valid UTF-8 ({problem})")
    elif file is not None:
        if not file.exists():
            _fail(f"input file not found: {file}")
        if not file.is_file():
            _fail(f"--file is not a file: {file}")
        try:
            data = file.read_bytes()
        except OSError as exc:
            _fail(f"cannot read {file}: {exc.strerror or exc}")
        lines = text_lines(data, str(file))
    else:
        lines = text_lines(sys.stdin.buffer.read(), "standard input")
    try:
        tagger = polyner.load(model, backend=backend, batch_size=batch_size)
    except (ModelDirectoryError, ImportError, ValueError) as exc:
        _fail(str(exc))
    for text, entities in zip(lines, tagger(lines)):
        line = json.dumps({"text": text, "entities": entities}, ensure_ascii=False)
        sys.stdout.write(one_json_line(line) + "\n")


@app.command()
def models() -> None:
    """List the models on this machine that --model takes by name: the shipped default, built teachers and models
    in $POLYNER_HOME, cached ONNX exports and torch rebuilds, hub repositories in the local cache."""
    from polyner.loading import local_models

    found = local_models()
    if not found:
        typer.echo("no local models")
        return
    width = max(len(m.name) for m in found)
    kinds = max(len(m.kind) for m in found)
    for m in found:
        where = "" if m.name == str(m.path) else f"  {m.path}"
        typer.echo(f"{m.name:<{width}}  {m.kind:<{kinds}}  {m.backend:<9}  {m.size_mb:7.1f} MB{where}")


@teacher_app.command("build")
def teacher_build(name: str = typer.Option("multilingual-e5-small", help="multilingual-e5-small (offline, from "
                                           "PyPI assets), or a hub name / directory such as xlm-roberta-base."),
                  out: Optional[Path] = typer.Option(None, help="Output directory (default: $POLYNER_HOME/teachers/NAME)."),
                  force: bool = typer.Option(False, help="Rebuild even if it exists."),
                  verbose: bool = typer.Option(True, "--verbose/--quiet")) -> None:
    """Build the teacher encoder in Hugging Face layout and print its directory."""
    _needs("teacher build", "train")
    from polyner.models.teacher import build_teacher

    _logging(verbose)
    typer.echo(str(build_teacher(name, out, force=force)))


@app.command("train-teacher")
def train_teacher_cmd(
        gold: Path = typer.Option(..., help="Gold root: SOURCE/LANG/{train,dev,test}.iob2"),
        out: Path = typer.Option(..., help="Output directory (HF layout; resumes if a checkpoint is there)."),
        teacher: Optional[str] = typer.Option(None, help="Encoder directory or hub name (default: the built offline teacher)."),
        langs: Optional[str] = typer.Option(None, help="Comma-separated languages (default: all found)."),
        exclude_source: List[str] = typer.Option([], help="Gold or silver sources to leave out (e.g. for licences)."),
        silver: Optional[Path] = typer.Option(None, help="Silver root (same layout): trains, never selects."),
        silver_weight: float = typer.Option(0.5, help="Sampling pull of a silver file against a gold one."),
        max_steps: int = typer.Option(2000), batch_size: int = typer.Option(16), max_length: int = typer.Option(64),
        lr: float = typer.Option(1e-4), eval_every: int = typer.Option(400), save_every: int = typer.Option(100),
        dev_per_lang: int = typer.Option(100),
        bucket: int = typer.Option(1, help="Draw this many batches together and cut them by length (less padding)."),
        bf16: bool = typer.Option(False, "--bf16/--fp32", help="bfloat16 autocast (fast on AMX / AVX-512 BF16 CPUs)."),
        seed: int = typer.Option(13), threads: int = typer.Option(2),
        verbose: bool = typer.Option(True, "--verbose/--quiet")) -> None:
    """Fine-tune the teacher for NER on gold (and silver) train splits; the checkpoint is chosen on gold dev."""
    _needs("train-teacher", "train")
    from polyner.languages import parse_languages
    from polyner.models.teacher import build_teacher
    from polyner.training.teacher import TeacherTrainingConfig, train_teacher

    _logging(verbose)
    config = TeacherTrainingConfig(
        teacher=teacher or str(build_teacher()), gold=str(gold), out=str(out),
        langs=parse_languages(langs) if langs else None, exclude_sources=list(exclude_source),
        silver=str(silver) if silver else None, silver_weight=silver_weight,
        max_steps=max_steps, batch_size=batch_size, max_length=max_length, lr=lr, eval_every=eval_every,
        save_every=save_every, dev_per_lang=dev_per_lang, bucket=bucket, bf16=bf16, seed=seed, threads=threads)
    typer.echo(str(train_teacher(config)))


@app.command()
def evaluate(models: List[str] = typer.Argument(..., help="Model directories (several: side by side)."),
             data: str = typer.Option(..., help="Gold root, one .iob2 file, or 'wikiann'."),
             split: str = typer.Option("test", help="Comma-separated splits, e.g. dev,test."),
             langs: Optional[str] = typer.Option(None, help="Comma-separated languages (default: all found)."),
             names: Optional[str] = typer.Option(None, help="Comma-separated column names for the models."),
             max_sentences: Optional[int] = typer.Option(None, help="At most this many sentences per file."),
             wikiann_path: str = typer.Option("unimelb-nlp/wikiann", help="Hub name or local copy of WikiAnn."),
             results: Path = typer.Option(Path("docs/results.md"), help="Markdown file to write the tables to."),
             section: Optional[str] = typer.Option(None, help="Section name in the results file."),
             batch_size: int = typer.Option(64),
             decoding: str = typer.Option("viterbi", help="Word labels: viterbi (IOB2-constrained, the "
                                          "Tagger's default) or argmax (each word on its own)."),
             max_length: Optional[int] = typer.Option(None, help="Pieces per window (default: each model's own, "
                                                      "ner_max_length in its config.json, else 128)."),
             silver: Optional[Path] = typer.Option(None, help="Silver root: a separate table on its test files "
                                                   "(dev where a source has train but no test)."),
             coverage: bool = typer.Option(False, "--coverage", help="Add the 41-language table: training data "
                                           "kind (from --data/--silver) and test F1s."),
             verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Word-level seqeval (strict IOB2) per language and macro average; prints and writes docs/results.md."""
    _needs("evaluate", "train")
    from polyner.evaluation_run import EvaluationRequest, run_evaluation
    from polyner.models.io import ModelDirectoryError

    _logging(verbose)
    request = EvaluationRequest(
        models=models, data=data, splits=[s.strip() for s in split.split(",") if s.strip()],
        langs=[s.strip() for s in langs.split(",")] if langs else None,
        names=[s.strip() for s in names.split(",")] if names else None, max_sentences=max_sentences,
        wikiann_path=wikiann_path, results=str(results), section=section, batch_size=batch_size,
        decoding=decoding, max_length=max_length, silver=str(silver) if silver else None, coverage=coverage)
    try:
        typer.echo(run_evaluation(request))
    except (ModelDirectoryError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))


@app.command()
def distill(
        teacher: Optional[str] = typer.Option(None, help="Fine-tuned teacher directory (polyner train-teacher)."),
        out: Optional[Path] = typer.Option(None, help="Output directory of the student (resumes if present)."),
        languages: Optional[str] = typer.Option(None, help="Comma-separated languages, e.g. de,fr,sw (default: all 41)."),
        unlabeled: List[str] = typer.Option([], help="Unlabeled text: LANG.txt files, folders of them, or LANG=PATH."),
        gold: Optional[Path] = typer.Option(None, help="Gold root SOURCE/LANG/SPLIT.iob2 (train text, dev, labels)."),
        silver: Optional[Path] = typer.Option(None, help="Silver root, same layout (text and labels; never dev)."),
        preset: Optional[str] = typer.Option(None, help="Student size: xs, s or m."),
        config: Optional[Path] = typer.Option(None, help="A YAML or JSON DistillConfig; options given here win."),
        exclude_source: List[str] = typer.Option([], help="Gold sources to leave out (e.g. NonCommercial ones)."),
        representation_steps: Optional[int] = typer.Option(None, help="Stage-1 steps."),
        logit_steps: Optional[int] = typer.Option(None, help="Steps of each logit sub-stage (2, 3.x)."),
        gold_steps: Optional[int] = typer.Option(None, help="Steps of each gold sub-stage (4.x)."),
        stage1: bool = typer.Option(True, "--stage1/--no-stage1", help="Representation transfer (ablation: off)."),
        factorize: bool = typer.Option(True, "--factorize/--random-embeddings", help="PCA embeddings (ablation: random)."),
        augment: bool = typer.Option(True, "--augment/--no-augment", help="Augmented transfer text (ablation: off)."),
        gold_languages: Optional[bool] = typer.Option(None, "--gold-languages/--only-languages",
                                                      help="Also every language with gold training data."),
        reuse_cache: Optional[Path] = typer.Option(None, help="work/teacher_cache of an earlier run with the same "
                                                    "teacher and vocabulary: copy its outputs, skip the teacher."),
        seed: Optional[int] = typer.Option(None), threads: Optional[int] = typer.Option(None),
        evaluate_test: bool = typer.Option(True, "--evaluate/--no-evaluate", help="Closing table on gold test."),
        verbose: bool = typer.Option(True, "--verbose/--quiet")) -> None:
    """Distil a compact student from the fine-tuned teacher for any set of languages."""
    _needs("distill", "train")
    from polyner.distill.config import DistillConfig, StageBudget
    from polyner.distill.trainer import distill as run_distill, with_gold_languages
    from polyner.distill.transfer import MissingLanguageError
    from polyner.languages import parse_languages

    _logging(verbose)
    overrides: dict = {"teacher": teacher, "out": str(out) if out else None, "preset": preset,
                       "gold": str(gold) if gold else None, "silver": str(silver) if silver else None,
                       "seed": seed, "threads": threads,
                       "languages": parse_languages(languages) if languages else None,
                       "unlabeled": list(unlabeled) or None, "exclude_sources": list(exclude_source) or None,
                       "reuse_teacher_cache": str(reuse_cache) if reuse_cache else None,
                       "include_gold_languages": gold_languages}
    if not stage1:
        overrides["use_representation_stage"] = False
    if not factorize:
        overrides["factorize_embeddings"] = False
    if not augment:
        overrides["use_augmented"] = False
    try:
        if config is not None:
            settings = DistillConfig.from_file(config, **overrides)
        else:
            if not teacher or not out:
                _fail("--teacher and --out are required (or give them in --config)")
            settings = DistillConfig(**{k: v for k, v in overrides.items() if v is not None})
        for name, steps in (("representation", representation_steps), ("logits", logit_steps),
                            ("gold_labels", gold_steps)):
            if steps is not None:
                budget: StageBudget = getattr(settings, name)
                budget.steps = steps
                budget.eval_every = min(budget.eval_every, steps)
        folder = run_distill(settings)
    except (MissingLanguageError, ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    typer.echo(f"student saved to {folder}")
    if evaluate_test and settings.gold and os.environ.get("RANK", "0") == "0":  # under torchrun: rank 0 only
        from polyner.evaluation_run import EvaluationRequest, run_evaluation

        typer.echo(run_evaluation(EvaluationRequest(
            models=[str(folder)], data=settings.gold, splits=["test"], langs=with_gold_languages(settings).languages,
            results=str(folder / "results.md"), section="closing-evaluation")))


@app.command()
def pack(source: Path = typer.Argument(..., help="A trained student directory (polyner distill --out)."),
         out: Path = typer.Option(..., help="Where to write the shipped copy (e.g. polyner/default)."),
         onnx: str = typer.Option("int8", help="The shipped ONNX model: int8 (dynamic int8, the default) or fp32."),
         title: str = typer.Option("polyner student", help="Title of the model card."),
         results: Optional[Path] = typer.Option(None, help="A markdown file with the quality table for the card."),
         speed: Optional[Path] = typer.Option(None, help="A markdown file with the speed table for the card (the "
                                              "<!-- polyner:speed --> part of benchmarks/distill_report.py --out)."),
         verbose: bool = typer.Option(True, "--verbose/--quiet")) -> None:
    """Pack a student for shipping: its ONNX model (int8; torch weights are read back from it when needed),
    config, tokenizer and a model card; no training files."""
    _needs("pack", "train")
    from polyner.distill.package import ONNX_KINDS, card_for_student, directory_size_mb, marked_section, pack_model
    from polyner.models.io import ModelDirectoryError

    _logging(verbose)
    if onnx not in ONNX_KINDS:
        _fail(f"--onnx must be one of {', '.join(ONNX_KINDS)}, not {onnx}")
    try:
        folder = pack_model(source, out, onnx)
    except (ModelDirectoryError, RuntimeError) as exc:
        _fail(str(exc))
    if (source / "training_log.json").exists():
        card_for_student(source, folder, title, results.read_text(encoding="utf-8") if results else "",
                         speed_markdown=marked_section(speed.read_text(encoding="utf-8"), "speed") if speed else "")
    typer.echo(f"{folder} ({directory_size_mb(folder):.1f} MB)")


@app.command()
def card(model: Path = typer.Argument(..., help="A model directory with a card (README.md), e.g. polyner/default."),
         results: Optional[Path] = typer.Option(None, help="A markdown file with the quality table (e.g. docs/results.md)."),
         section: Optional[str] = typer.Option(None, help="The <!-- polyner:NAME --> section of --results to use "
                                               "(default: the whole file)."),
         speed: Optional[Path] = typer.Option(None, help="A markdown file with the speed table (the "
                                              "<!-- polyner:speed --> part of benchmarks/distill_report.py --out).")) -> None:
    """Rewrite the quality and speed sections of a model card from fresh figures, keeping the rest."""
    from polyner.distill.model_card import refresh_model_card
    from polyner.distill.package import marked_section

    if results is None and speed is None:
        _fail("nothing to write: give --results and/or --speed")
    for given in (results, speed):
        if given is not None and not given.is_file():
            _fail(f"file not found: {given}")
    quality = ""
    if results is not None:
        text = results.read_text(encoding="utf-8")
        if section and f"<!-- polyner:{section} -->" not in text:
            _fail(f"no section {section!r} in {results}")
        quality = marked_section(text, section) if section else text
    try:
        path = refresh_model_card(model, quality,
                                  marked_section(speed.read_text(encoding="utf-8"), "speed") if speed else "")
    except FileNotFoundError as exc:
        _fail(str(exc))
    typer.echo(str(path))


@app.command()
def serve(model: Optional[str] = typer.Option(None, help="Model directory or name (default: the shipped student)."),
          backend: Optional[str] = typer.Option(None, help="torch, onnx or onnx-int8 (default: from the directory)."),
          host: str = typer.Option("127.0.0.1"), port: int = typer.Option(8080),
          max_batch_size: Optional[int] = typer.Option(None, help="Texts per model call across requests."),
          batch_wait_ms: Optional[float] = typer.Option(None, help="How long to gather a batch."),
          max_texts_per_request: Optional[int] = typer.Option(None),
          max_chars_per_text: Optional[int] = typer.Option(None),
          max_chars_per_request: Optional[int] = typer.Option(None),
          max_body_bytes: Optional[int] = typer.Option(None, help="Request body cap, checked before parsing."),
          max_queue_chars: Optional[int] = typer.Option(None, help="Characters queued or tagged; more: 503."),
          request_timeout_s: Optional[float] = typer.Option(None),
          body_timeout_s: Optional[float] = typer.Option(None, help="The whole body must arrive within this."),
          header_timeout_s: Optional[float] = typer.Option(None, help="The headers must arrive within this."),
          keep_alive_s: Optional[float] = typer.Option(None, help="Idle keep-alive connections close after this."),
          max_header_bytes: Optional[int] = typer.Option(None, help="Request line and headers cap."),
          max_connections: Optional[int] = typer.Option(None, help="Open connections; more are refused (503)."),
          graceful_shutdown_s: Optional[float] = typer.Option(None, help="Drain window after SIGTERM/SIGINT."),
          api_key: Optional[str] = typer.Option(None, envvar="POLYNER_API_KEY", help="Require X-API-Key."),
          log_level: str = typer.Option("info", help="critical, error, warning, info, debug or trace.")) -> None:
    """Serve NER over HTTP (FastAPI + uvicorn): POST /v1/ner, GET /health, /ready, /v1/model, /docs, a demo at /.

    Every limit is also a POLYNER_SERVE_<NAME> environment variable (a flag wins); see docs/serving.md.
    """
    _needs("serve", "serve")
    from polyner.serve.app import create_app
    from polyner.serve.server import build_server
    from polyner.serve.settings import ServeSettings
    from polyner.loading import resolve_model
    from polyner.models.io import ModelDirectoryError, check_model_dir

    if not 0 <= port <= 65535:
        _fail(f"--port must be between 0 and 65535, not {port}")
    if log_level.lower() not in ("critical", "error", "warning", "info", "debug", "trace"):
        _fail(f"unknown --log-level {log_level!r}: expected critical, error, warning, info, debug or trace")
    try:
        import socket

        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        _fail(f"cannot use --host {host!r}: {exc}")
    try:
        settings = ServeSettings.from_env(
            model=model, backend=backend, max_batch_size=max_batch_size, batch_wait_ms=batch_wait_ms,
            max_texts_per_request=max_texts_per_request, max_chars_per_text=max_chars_per_text,
            max_chars_per_request=max_chars_per_request, max_body_bytes=max_body_bytes,
            max_queue_chars=max_queue_chars, request_timeout_s=request_timeout_s, body_timeout_s=body_timeout_s,
            header_timeout_s=header_timeout_s, keep_alive_s=keep_alive_s, max_header_bytes=max_header_bytes,
            max_connections=max_connections, graceful_shutdown_s=graceful_shutdown_s, api_key=api_key)
        target = resolve_model(settings.model)
        if isinstance(target, Path):
            check_model_dir(target)  # fail now, with the path, not inside the server
        import polyner

        tagger = polyner.load(settings.model, backend=settings.backend)  # a model that does not load: one line
    except (ValueError, ImportError, ModelDirectoryError) as exc:
        _fail(str(exc))
    server = build_server(create_app(settings, tagger=tagger), settings, host, port, log_level.lower())
    server.run()
    if not server.started:  # could not start (uvicorn logged why; it exits with 3 itself when it cannot bind)
        raise typer.Exit(3)


from polyner.cli_corpus import register as _register_corpus  # noqa: E402

_register_corpus(app)
from polyner.cli_finetune import register as _register_finetune  # noqa: E402  (GLUE / SQuAD 2.0)
_register_finetune(app)


from polyner.cli_inference import register as _register_inference  # noqa: E402  (export, agreement, bench)

_register_inference(app)


def main() -> None:
    """Entry point of the ``polyner`` console script."""
    app()


if __name__ == "__main__":
    main()
