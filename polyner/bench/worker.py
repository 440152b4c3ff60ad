"""Measure one model: load time, speed at batch 1 and 32, latency, peak RSS, F1, the cost curve.

Run as ``python -m polyner.bench.worker SPEC.json TEXTS.json OUT.json`` by the bench runner, one fresh
process per model, so that load time and peak RSS (``VmHWM``) belong to that model alone.
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


def load_contender(spec: ContenderSpec):
    """The Tagger of a contender and, for "scale", its parameter count (built from config, random weights)."""
    import torch

    import polyner

    if spec.kind == "dir":
        return polyner.load(spec.path, backend=spec.backend, onnx_threads=spec.threads)
    if spec.kind != "scale":
        raise ValueError(f"unknown contender kind {spec.kind!r}")
    from transformers import XLMRobertaConfig, XLMRobertaForTokenClassification

    from polyner.models.io import load_tokenizer, ner_config_kwargs
    from polyner.pipelines.ner import Tagger

    tokenizer = load_tokenizer(spec.path)
    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=max(XLMR_VOCAB, len(tokenizer)), pad_token_id=tokenizer.pad_token_id,
                              **spec.geometry, **ner_config_kwargs())
    return Tagger(XLMRobertaForTokenClassification(config).eval(), tokenizer, name=spec.name)


def measure(spec: ContenderSpec, texts: dict, isolated: bool = True) -> Measurement:
    """Measure one contender on the shared texts (``speed``: word lists; ``f1``: gold sentences; ``cost``: texts)."""
    import torch

    from polyner.data.iob2 import Sentence

    torch.set_num_threads(spec.threads)
    started = time.perf_counter()
    tagger = load_contender(spec)
    load_s = time.perf_counter() - started
    backend = type(tagger.model).__name__
    result = Measurement(spec.name, "onnx" if backend == "OnnxTokenClassifier" else "torch", trained=spec.trained,
                         isolated=isolated)
    result.load_s = load_s if spec.kind == "dir" else None
    _describe_files(spec, tagger, result)

    speed = texts["speed"]
    tagger.tag_words(speed, batch_size=spec.batch_size)  # warm-up: every batch shape once, untimed
    rates = []
    for _ in range(max(1, spec.repeats)):
        begin = time.perf_counter()
        tagger.tag_words(speed, batch_size=spec.batch_size)
        rates.append(len(speed) / (time.perf_counter() - begin))
    result.batch32_sps = statistics.median(rates)
    latencies = []
    for words in speed:
        begin = time.perf_counter()
        tagger.tag_words([words], batch_size=1)
        latencies.append(time.perf_counter() - begin)
    result.batch1_sps = len(speed) / sum(latencies)
    result.p50_ms = 1000 * statistics.median(latencies)

    cost = texts.get("cost", {})
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

    if spec.trained and texts.get("f1"):
        from polyner.evaluate import evaluate_by_language, macro

        sentences = [Sentence(s["words"], s["tags"], s["lang"]) for s in texts["f1"]]
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


def _describe_files(spec: ContenderSpec, tagger, result: Measurement) -> None:
    from polyner.models.onnx_backend import ONNX_FILE, export_info

    model = tagger.model
    if hasattr(model, "parameters"):
        result.parameters = sum(p.numel() for p in model.parameters())
    if spec.kind != "dir":
        return
    folder = Path(spec.path)
    weights = folder / (ONNX_FILE if result.backend == "onnx" else "model.safetensors")
    result.model_bytes = weights.stat().st_size
    result.dir_bytes = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    if result.backend == "onnx":
        result.quantization = export_info(folder).get("quantization")


def main(argv: list[str] | None = None) -> int:
    """``SPEC.json TEXTS.json OUT.json``: measure and write the result (errors are written, not raised)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print("usage: python -m polyner.bench.worker SPEC.json TEXTS.json OUT.json", file=sys.stderr)
        return 2
    spec = ContenderSpec(**json.loads(Path(argv[0]).read_text(encoding="utf-8")))
    texts = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    try:
        result = measure(spec, texts)
    except Exception as exc:  # reported in the table, the other models still run
        logger.exception("measuring %s failed", spec.name)
        result = Measurement(spec.name, spec.backend or "torch", error=f"{type(exc).__name__}: {exc}")
    Path(argv[2]).write_text(json.dumps(asdict(result)), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
