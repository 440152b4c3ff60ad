"""Measure one model: load time, speed at batch 1 and 32, latency, peak RSS, F1, the cost curve.

Run as ``python -m polyner.bench.worker SPEC.json TEXTS.json OUT.json --turns`` by the bench runner, one fresh
process per model, so that load time and peak RSS (``VmHWM``) belong to that model alone; with ``--turns`` the
workers load one after the other, then take turns pass by pass at the runner's command (see
:func:`serve_turns`), so a machine whose speed drifts during the run shifts every model alike.
"""
from __future__ import annotations

import json
import logging
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

XLMR_BASE_GEOMETRY = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                      "intermediate_size": 3072, "max_position_embeddings": 514}
XLMR_VOCAB = 250002


@dataclass
class ContenderSpec:
    """One model to measure. ``kind`` "dir": a model directory run by ``backend``; "scale": an encoder
    with ``geometry`` and random weights (for scale only), using the tokenizer in ``path``."""

    name: str
    path: str
    kind: str = "dir"
    backend: str | None = None
    trained: bool = True
    threads: int = 1
    geometry: dict = field(default_factory=lambda: dict(XLMR_BASE_GEOMETRY))
    repeats: int = 3
    batch_size: int = 32


@dataclass
class Measurement:
    """What one contender measured; ``error`` is set (and the figures are None) when it failed."""

    name: str
    backend: str
    quantization: str | None = None
    trained: bool = True
    isolated: bool = True  # measured in a process of its own (load time and RSS are its own)
    parameters: int | None = None
    model_bytes: int | None = None  # the weights file on disk (None: not saved, random weights)
    dir_bytes: int | None = None  # every top-level file of the model directory
    load_s: float | None = None
    batch1_sps: float | None = None
    batch32_sps: float | None = None
    p50_ms: float | None = None
    batch32_passes: list[float] = field(default_factory=list)  # sentences/s of each timed pass, in order
    batch1_passes: list[float] = field(default_factory=list)
    peak_rss_mb: float | None = None
    f1_macro: float | None = None
    f1_by_lang: dict[str, float] = field(default_factory=dict)
    tags: list[list[str]] = field(default_factory=list)  # predicted tags on the F1 sentences (for agreement)
    cost_s: dict[str, float] = field(default_factory=dict)  # words -> seconds for one text of that many words
    error: str | None = None


def peak_rss_mb() -> float:
    """Peak resident set size of this process's program so far, in MB.

    On Linux this is ``VmHWM`` from /proc/self/status: ``ru_maxrss`` (RUSAGE_SELF) survives ``exec``, so
    in a child started by a big parent it starts at the parent's peak, not at the child's own. Elsewhere
    ``ru_maxrss`` (KB on Linux, bytes on macOS).
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 ** 2 if sys.platform == "darwin" else peak / 1024


def runs_on_torch(spec: ContenderSpec) -> bool:
    """Whether the contender's model is a torch module (the scale encoder, or a directory run by torch)."""
    if spec.kind != "dir":
        return True
    if spec.backend in ("onnx", "onnx-int8"):
        return False
    from polyner.models.backend import choose_backend

    return choose_backend(spec.path, spec.backend) == "torch"


def load_contender(spec: ContenderSpec):
    """The Tagger of a contender and, for "scale", its parameter count (built from config, random weights)."""
    if spec.kind == "dir":
        from polyner.spec import ModelSpec

        return ModelSpec.resolve(spec.path, spec.backend, spec.threads).build()
    if spec.kind != "scale":
        raise ValueError(f"unknown contender kind {spec.kind!r}")
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForTokenClassification

    from polyner.models.io import load_tokenizer, ner_config_kwargs
    from polyner.tagging.tagger import Tagger

    tokenizer = load_tokenizer(spec.path)
    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=max(XLMR_VOCAB, len(tokenizer)), pad_token_id=tokenizer.pad_token_id,
                              **spec.geometry, **ner_config_kwargs())
    return Tagger(XLMRobertaForTokenClassification(config).eval(), tokenizer, name=spec.name)


class ContenderSession:
    """One loaded contender, measured in steps, so that several can take turns pass by pass.

    ``load`` (timed), then any number of ``batch32_pass`` / ``batch1_pass`` calls in any order, then
    ``finish`` (cost curve, peak RSS, F1) gives the :class:`Measurement`.
    """

    def __init__(self, spec: ContenderSpec, texts: dict, isolated: bool = True) -> None:
        self.spec, self.texts, self.isolated = spec, texts, isolated
        self.rates: list[float] = []  # sentences/s of each batch-32 pass
        self.batch1_rates: list[float] = []  # sentences/s of each batch-1 pass
        self.latencies: list[float] = []  # seconds of every batch-1 call
        self.tagger = None
        self.result: Measurement | None = None

    def load(self) -> None:
        """Load the model (timed), describe its files and warm up on the speed texts (untimed)."""
        if runs_on_torch(self.spec):  # imported before the clock starts, as `import polyner` has it; an ONNX
            import torch              # contender never imports torch, so its load time and RSS leave it out

            torch.set_num_threads(self.spec.threads)
        started = time.perf_counter()
        self.tagger = load_contender(self.spec)
        load_s = time.perf_counter() - started
        on_torch = self.tagger.classifier.backend == "torch"
        self.result = Measurement(self.spec.name, "torch" if on_torch else "onnx", trained=self.spec.trained,
                                  isolated=self.isolated)
        self.result.load_s = load_s if self.spec.kind == "dir" else None
        _describe_files(self.spec, self.tagger, self.result)
        self.tagger.tag_words(self.texts["speed"], batch_size=self.spec.batch_size)  # every batch shape once

    def batch32_pass(self) -> float:
        """One timed pass over the speed texts in batches; its sentences/s."""
        speed = self.texts["speed"]
        begin = time.perf_counter()
        self.tagger.tag_words(speed, batch_size=self.spec.batch_size)
        self.rates.append(len(speed) / (time.perf_counter() - begin))
        return self.rates[-1]

    def batch1_pass(self) -> float:
        """One timed pass over the speed texts, one call per sentence; its sentences/s."""
        speed = self.texts["speed"]
        times = []
        for words in speed:
            begin = time.perf_counter()
            self.tagger.tag_words([words], batch_size=1)
            times.append(time.perf_counter() - begin)
        self.latencies.extend(times)
        self.batch1_rates.append(len(speed) / sum(times))
        return self.batch1_rates[-1]

    def finish(self) -> Measurement:
        """Speed medians, the cost curve, peak RSS and (trained models) F1 per language."""
        from polyner.data.iob2 import Sentence

        spec, tagger, result = self.spec, self.tagger, self.result
        if not self.rates:
            self.batch32_pass()
        if not self.batch1_rates:
            self.batch1_pass()
        result.batch32_sps = statistics.median(self.rates)
        result.batch1_sps = statistics.median(self.batch1_rates)
        result.batch32_passes, result.batch1_passes = list(self.rates), list(self.batch1_rates)
        result.p50_ms = 1000 * statistics.median(self.latencies)
        cost = self.texts.get("cost", {})
        if cost:  # warm-up with full batches of full windows (the largest shapes), so no size pays for first use
            longest = max(cost.values(), key=len).split(" ")
            tagger(" ".join(longest[:3000]), batch_size=spec.batch_size)
        for words, text in cost.items():
            times = []
            for _ in range(max(1, spec.repeats)):
                begin = time.perf_counter()
                tagger(text, batch_size=spec.batch_size)
                times.append(time.perf_counter() - begin)
            result.cost_s[words] = statistics.median(times)
        result.peak_rss_mb = peak_rss_mb()  # tagging only: before the F1 scorer (seqeval) is imported

        if spec.trained and self.texts.get("f1"):
            from polyner.evaluate import evaluate_by_language, macro

            sentences = [Sentence(s["words"], s["tags"], s["lang"]) for s in self.texts["f1"]]
            predicted: list[list[str]] = []

            def tag_and_keep(word_lists):
                tags = tagger.tag_words(word_lists, batch_size=spec.batch_size)
                predicted.extend(tags)
                return tags

            scores = evaluate_by_language(tag_and_keep, sentences)
            result.f1_macro = macro(scores).f1
            result.f1_by_lang = {lang: s.f1 for lang, s in scores.items()}
            order = sorted(range(len(sentences)), key=lambda i: sentences[i].lang)  # evaluate_by_language's order
            result.tags = [[] for _ in sentences]
            for position, index in enumerate(order):
                result.tags[index] = predicted[position]
        return result


def measure(spec: ContenderSpec, texts: dict, isolated: bool = True) -> Measurement:
    """Measure one contender alone on the shared texts (``speed``: word lists; ``f1``: gold sentences; ``cost``: texts)."""
    session = ContenderSession(spec, texts, isolated)
    session.load()
    for _ in range(max(1, spec.repeats)):
        session.batch32_pass()
    session.batch1_pass()
    return session.finish()


def _describe_files(spec: ContenderSpec, tagger, result: Measurement) -> None:
    from polyner.models.onnx_backend import ONNX_FILE, export_info

    if result.backend == "torch":  # ONNX Runtime does not count a graph's weights
        result.parameters = tagger.classifier.parameters_count()
    if spec.kind != "dir":
        return
    folder = Path(spec.path)
    if result.backend == "torch":  # an ONNX-only directory (the packed default) runs from weights read back once
        from polyner.models.backend import torch_directory

        folder = torch_directory(folder)
    weights = folder / (ONNX_FILE if result.backend == "onnx" else "model.safetensors")
    result.model_bytes = weights.stat().st_size
    result.dir_bytes = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    if result.backend == "onnx":
        result.quantization = export_info(folder).get("quantization")


REPLY = "POLYNER-BENCH "  # prefix of the worker's protocol lines on stdout (other output is ignored)


def reply(payload: dict) -> None:
    """One protocol line to the runner."""
    sys.stdout.write(REPLY + json.dumps(payload) + "\n")
    sys.stdout.flush()


def serve_turns(spec: ContenderSpec, texts: dict, out: Path) -> None:
    """Take turns with other workers: load, say ready, then run the runner's commands one line at a time.

    Commands on stdin: ``batch32`` and ``batch1`` (one timed pass, answered with its sentences/s) and
    ``finish`` (cost curve and F1, written to ``out``; the worker then exits).
    """
    session = ContenderSession(spec, texts)
    try:
        session.load()
    except Exception as exc:
        logger.exception("loading %s failed", spec.name)
        out.write_text(json.dumps(asdict(Measurement(spec.name, spec.backend or "torch",
                                                     error=f"{type(exc).__name__}: {exc}"))), encoding="utf-8")
        reply({"error": str(exc)})
        return
    reply({"ready": True})
    steps = {"batch32": session.batch32_pass, "batch1": session.batch1_pass}
    for line in sys.stdin:
        command = line.strip()
        if command in steps:
            reply({"sps": steps[command]()})
        elif command == "finish":
            try:
                result = session.finish()
            except Exception as exc:  # reported in the table, the other models still run
                logger.exception("measuring %s failed", spec.name)
                result = Measurement(spec.name, spec.backend or "torch", error=f"{type(exc).__name__}: {exc}")
            out.write_text(json.dumps(asdict(result)), encoding="utf-8")
            reply({"done": True})
            return
        else:
            reply({"error": f"unknown command {command!r}"})


def main(argv: list[str] | None = None) -> int:
    """``SPEC.json TEXTS.json OUT.json [--turns]``: measure and write the result (errors are written, not raised)."""
    argv = sys.argv[1:] if argv is None else argv
    turns = "--turns" in argv
    argv = [a for a in argv if a != "--turns"]
    if len(argv) != 3:
        print("usage: python -m polyner.bench.worker SPEC.json TEXTS.json OUT.json [--turns]", file=sys.stderr)
        return 2
    spec = ContenderSpec(**json.loads(Path(argv[0]).read_text(encoding="utf-8")))
    texts = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    if turns:
        serve_turns(spec, texts, Path(argv[2]))
        return 0
    try:
        result = measure(spec, texts)
    except Exception as exc:  # reported in the table, the other models still run
        logger.exception("measuring %s failed", spec.name)
        result = Measurement(spec.name, spec.backend or "torch", error=f"{type(exc).__name__}: {exc}")
    Path(argv[2]).write_text(json.dumps(asdict(result)), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
