"""``polyner bench``: the teacher, an xlm-roberta-base-sized encoder and the student (torch fp32, ONNX fp32,
ONNX int8) measured side by side in one run on the same texts, each in a fresh process.

The student is exported to ONNX (fp32 and int8) into the work directory first. The texts are the gold
test sentences (at most ``max_sentences`` per file) for F1 and agreement, a seeded sample of
``speed_sentences`` of them for speed, and texts of 10 to 10,000 words built from their words for the
cost curve. See :mod:`polyner.bench.report` for the tables.
"""
from __future__ import annotations

import json
import logging
import os
import random
import selectors
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from polyner.bench.worker import REPLY, XLMR_BASE_GEOMETRY, ContenderSpec, Measurement, measure

logger = logging.getLogger(__name__)
TEACHER, SCALE = "teacher", "xlm-roberta-base-sized"
STUDENT_TORCH, STUDENT_ONNX, STUDENT_INT8 = "student torch fp32", "student ONNX fp32", "student ONNX int8"
#: The int8 student with onnxruntime's own activation scales (one per call), beside the shipped per-token kind.
STUDENT_INT8_PER_BATCH = "student ONNX int8 per-batch"


@dataclass
class BenchConfig:
    """Models, texts, repetitions and outputs of one benchmark run."""

    teacher: str
    gold: str
    student: str | None = None  # None: the shipped default
    max_sentences: int = 200  # per gold test file, for F1 and agreement
    speed_sentences: int = 256
    cost_words: list[int] = field(default_factory=lambda: [10, 100, 1000, 10000])
    threads: int = 2
    repeats: int = 3
    batch_size: int = 32
    scale: bool = True  # include the xlm-roberta-base-sized encoder
    int8_embeddings: bool = True  # the int8 student also has int8 word embeddings
    per_batch_int8: bool = False  # also the int8 student with per-batch activation scales (what per-token costs)
    scale_geometry: dict = field(default_factory=lambda: dict(XLMR_BASE_GEOMETRY))
    work: str | None = None  # where the ONNX exports go (default $POLYNER_HOME/bench)
    docs: str | None = None  # a markdown file for the report (its inference section); None: print only
    isolate: bool = True  # one fresh process per model (False: in this process, for tests)
    turns: bool = True  # isolated workers take turns pass by pass (False: each model measured alone, in order)
    timeout_s: float = 7200.0
    seed: int = 0


@dataclass
class BenchRun:
    """All measurements of a run, with the texts' description and the machine."""

    config: BenchConfig
    results: list[Measurement]
    machine: dict[str, str]
    texts: dict[str, object]
    exports: dict[str, dict]


def prepare_texts(config: BenchConfig) -> tuple[dict, dict]:
    """The shared texts (``speed``, ``f1``, ``cost``) and a description of them."""
    from polyner.data.iob2 import discover_gold, read_gold

    files = discover_gold(config.gold, splits=["test"])
    sentences = [s for s in read_gold(files, config.max_sentences) if s.words]
    if not sentences:
        raise FileNotFoundError(f"no gold test sentences under {config.gold}")
    sample = list(sentences)
    random.Random(config.seed).shuffle(sample)
    speed = [s.words for s in sample[:config.speed_sentences]]
    pool = [w for words in speed for w in words]
    cost = {}
    for n in config.cost_words:
        words = [pool[i % len(pool)] for i in range(n)]
        cost[str(n)] = " ".join(words)
    texts = {"speed": speed, "f1": [{"words": s.words, "tags": s.tags, "lang": s.lang} for s in sentences],
             "cost": cost}
    about = {"gold": str(config.gold), "f1_sentences": len(sentences), "languages": len({s.lang for s in sentences}),
             "files": len(files), "max_per_file": config.max_sentences, "speed_sentences": len(speed),
             "speed_words": sum(len(w) for w in speed), "cost_words": list(config.cost_words)}
    return texts, about


def student_directory(config: BenchConfig) -> Path:
    """The student's checked directory (``config.student`` located; None: the shipped default)."""
    from polyner.loading import locate_model

    return locate_model(config.student)


def export_students(config: BenchConfig, work: Path) -> dict[str, dict]:
    """Export the student to ONNX fp32 and int8 (and int8 with per-batch scales when asked) under ``work``; the
    export reports by contender name."""
    from polyner.models.backend import torch_directory
    from polyner.models.onnx_export import ExportConfig, export_onnx

    source = str(torch_directory(student_directory(config)))  # an ONNX-only student: its torch weights read back
    reports = {}
    for name, quantize, scales, folder in student_exports(config):
        result = export_onnx(ExportConfig(model=source, out=str(work / folder), quantize=quantize,
                                          quantize_embeddings=config.int8_embeddings, activation_scales=scales))
        reports[name] = asdict(result)
    return reports


def student_exports(config: BenchConfig) -> list[tuple[str, str | None, str, str]]:
    """(contender, quantization, activation scales, folder) of each ONNX student the run measures."""
    exports = [(STUDENT_ONNX, None, "per-token", "student-onnx-fp32"),
               (STUDENT_INT8, "int8", "per-token", "student-onnx-int8")]
    if config.per_batch_int8:
        exports.append((STUDENT_INT8_PER_BATCH, "int8", "per-batch", "student-onnx-int8-per-batch"))
    return exports


def contenders(config: BenchConfig, exports: dict[str, dict]) -> list[ContenderSpec]:
    """The models in table order: teacher, scale encoder, student torch fp32, ONNX fp32, ONNX int8 (and ONNX int8
    with per-batch scales when asked)."""
    common = {"threads": config.threads, "repeats": config.repeats, "batch_size": config.batch_size}
    specs = [ContenderSpec(TEACHER, str(config.teacher), backend="torch", **common)]
    if config.scale:
        specs.append(ContenderSpec(SCALE, str(config.teacher), kind="scale", trained=False,
                                   geometry=dict(config.scale_geometry), **common))
    specs.append(ContenderSpec(STUDENT_TORCH, str(student_directory(config)), backend="torch", **common))
    for name, *_ in student_exports(config):
        specs.append(ContenderSpec(name, exports[name]["path"], backend="onnx", **common))
    return specs


def _worker_env(spec: ContenderSpec) -> dict[str, str]:
    threads = str(spec.threads)
    # the Rust tokenizer gets the same threads as the model (its default when a process has not forked: parallel)
    return {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "true",
            "RAYON_NUM_THREADS": threads, "RAYON_RS_NUM_CPUS": threads}


def run_contender(spec: ContenderSpec, texts_file: Path, texts: dict, config: BenchConfig) -> Measurement:
    """Measure one model alone, in a fresh process when ``config.isolate``."""
    if not config.isolate:
        return measure(spec, texts, isolated=False)
    with tempfile.TemporaryDirectory(prefix="polyner-bench-") as tmp:
        spec_file, out_file = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_file.write_text(json.dumps(asdict(spec)), encoding="utf-8")
        env = _worker_env(spec)
        command = [sys.executable, "-m", "polyner.bench.worker", str(spec_file), str(texts_file), str(out_file)]
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=config.timeout_s)
        except subprocess.TimeoutExpired:
            return Measurement(spec.name, spec.backend or "torch", error=f"timed out after {config.timeout_s:.0f} s")
        if not out_file.exists():
            tail = (done.stderr or "").strip().splitlines()[-3:]
            return Measurement(spec.name, spec.backend or "torch",
                               error=f"worker exited with {done.returncode}: {' | '.join(tail)}")
        return Measurement(**json.loads(out_file.read_text(encoding="utf-8")))


class TurnWorker:
    """A worker process in turns mode (``python -m polyner.bench.worker ... --turns``) and its protocol."""

    def __init__(self, spec: ContenderSpec, texts_file: Path, folder: Path) -> None:
        self.spec = spec
        self.out_file = folder / f"{len(list(folder.iterdir()))}-out.json"
        spec_file = self.out_file.with_name(self.out_file.name.replace("out", "spec"))
        spec_file.write_text(json.dumps(asdict(spec)), encoding="utf-8")
        self.stderr = open(self.out_file.with_suffix(".log"), "w+", encoding="utf-8")
        command = [sys.executable, "-m", "polyner.bench.worker", str(spec_file), str(texts_file), str(self.out_file),
                   "--turns"]
        self.process = subprocess.Popen(command, env=_worker_env(spec), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.stderr, bufsize=0)
        self._buffer = b""
        self.error: str | None = None

    def ask(self, command: str | None, timeout_s: float) -> dict:
        """Send ``command`` (None: only wait) and return the worker's next protocol line; errors set ``self.error``."""
        if self.error:
            return {"error": self.error}
        try:
            if command is not None:
                self.process.stdin.write((command + "\n").encode())
                self.process.stdin.flush()
            return self._next_reply(time.monotonic() + timeout_s)
        except (OSError, TimeoutError, ValueError) as exc:
            self.error = self._describe(exc)
            self.close()
            return {"error": self.error}

    def _next_reply(self, deadline: float) -> dict:
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while True:
                while b"\n" in self._buffer:
                    line, self._buffer = self._buffer.split(b"\n", 1)
                    text = line.decode("utf-8", "replace")
                    if text.startswith(REPLY):
                        reply = json.loads(text[len(REPLY):])
                        if "error" in reply:
                            raise ValueError(reply["error"])
                        return reply
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("timed out")
                if selector.select(left):
                    chunk = os.read(self.process.stdout.fileno(), 65536)
                    if not chunk:
                        raise OSError("worker exited")
                    self._buffer += chunk

    def _describe(self, exc: Exception) -> str:
        self.stderr.flush()
        self.stderr.seek(0)
        tail = [line for line in self.stderr.read().strip().splitlines() if line.strip()][-3:]
        return f"{exc}" + (f": {' | '.join(tail)}" if tail else "")

    def result(self) -> Measurement:
        """The worker's measurement (or one carrying its error)."""
        if self.out_file.exists():
            return Measurement(**json.loads(self.out_file.read_text(encoding="utf-8")))
        return Measurement(self.spec.name, self.spec.backend or "torch", error=self.error or "no result written")

    def close(self) -> None:
        """End the process (if still running) and its log."""
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self.stderr.close()


def run_in_turns(specs: list[ContenderSpec], texts_file: Path, config: BenchConfig) -> list[Measurement]:
    """Every model in its own process: loaded one after the other, then timed pass by pass in turns
    (``repeats`` rounds at batch 32, then ``repeats`` at batch 1), then finished one at a time."""
    with tempfile.TemporaryDirectory(prefix="polyner-bench-") as tmp:
        workers: list[TurnWorker] = []
        try:
            for spec in specs:  # one at a time: load time and load memory are each model's own
                logger.info("loading %s (%s)", spec.name, spec.path)
                worker = TurnWorker(spec, texts_file, Path(tmp))
                worker.ask(None, config.timeout_s)
                workers.append(worker)
            for step in ("batch32", "batch1"):
                for round_ in range(max(1, config.repeats)):
                    for worker in workers:
                        reply = worker.ask(step, config.timeout_s)
                        if "sps" in reply:
                            logger.info("%s %s pass %d: %.1f sentences/s", worker.spec.name, step, round_ + 1,
                                        reply["sps"])
            for worker in workers:
                logger.info("finishing %s (cost curve, F1)", worker.spec.name)
                worker.ask("finish", config.timeout_s)
                worker.close()
            return [worker.result() for worker in workers]
        finally:
            for worker in workers:
                if worker.process.poll() is None:
                    worker.process.kill()
                    worker.process.wait()


def run_bench(config: BenchConfig) -> BenchRun:
    """Export the student, measure every model on the same texts, and return all figures."""
    from polyner.bench.machine import describe_machine
    from polyner.home import cache_dir

    machine = describe_machine(config.threads)
    texts, about = prepare_texts(config)
    work = Path(config.work).expanduser() if config.work else cache_dir("bench")
    work.mkdir(parents=True, exist_ok=True)
    exports = export_students(config, work)
    texts_file = work / "texts.json"
    texts_file.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    if config.isolate and config.turns:
        results = run_in_turns(contenders(config, exports), texts_file, config)
        for result in results:
            if result.error:
                logger.warning("%s failed: %s", result.name, result.error)
        return BenchRun(config, results, machine, about, exports)
    results = []
    for spec in contenders(config, exports):
        logger.info("measuring %s (%s)", spec.name, spec.path)
        result = run_contender(spec, texts_file, texts, config)
        if result.error:
            logger.warning("%s failed: %s", spec.name, result.error)
        results.append(result)
    return BenchRun(config, results, machine, about, exports)
