"""Export a token classifier (a polyner student or a BERT teacher) to ONNX, optionally int8-quantized.

The output directory is a model directory in the Hugging Face layout that ``polyner.load`` runs with
ONNX Runtime: ``config.json`` (with id2label), the tokenizer files, ``model.onnx`` and
``onnx_export.json`` (backend, quantization, opset, the checks made). One directory holds one ONNX
model: ``--quantize int8`` makes ``model.onnx`` the int8 model, so fp32 and int8 live in two directories.

The graph takes ``input_ids`` and ``attention_mask`` (int64, batch x sequence, both axes dynamic) and
gives ``logits`` (float32, batch x sequence x labels). After export the model is checked with
``onnx.checker`` and its logits are compared with torch's on random inputs of other shapes.
Quantization (:mod:`polyner.models.onnx_quantize`): int8 weights (one scale per output channel by default),
activations quantized on the fly with one scale per token (a sentence's result does not depend on its batch) or,
as onnxruntime does it, per call; the word embeddings are int8 too unless ``quantize_embeddings=False`` (a larger
file, slightly closer to fp32).
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from polyner.models.io import COPIED_FILES, TOKENIZER_FILES
from polyner.models.onnx_backend import EXPORT_INFO_FILE, INPUT_NAMES, ONNX_FILE, OUTPUT_NAME, require_onnxruntime
from polyner.models.onnx_quantize import check_activation_scales, quantize_int8
from polyner.models.onnx_weights import WEIGHTS_KEY

logger = logging.getLogger(__name__)
QUANTIZATIONS = ("int8",)
EXPORT_STEPS = 5  # the stages export_onnx reports to its progress callback


@dataclass
class ExportConfig:
    """What to export, where, and how closely the fp32 graph must match torch."""

    model: str  # a directory of torch weights (`polyner export` locates a name and reads an ONNX model's weights back)
    out: str
    quantize: str | None = None  # None (fp32) or "int8"
    per_channel: bool = True  # int8: one scale per output channel of each weight matrix (better F1 than per tensor)
    quantize_embeddings: bool = True  # int8: also the word embeddings (Gather); False keeps them fp32 (larger file)
    activation_scales: str = "per-token"  # int8: "per-token" (batch-independent) or "per-batch" (onnxruntime's)
    opset: int = 17
    atol: float = 1e-3  # largest accepted |logit difference| between the fp32 graph and torch
    seed: int = 0


@dataclass
class ExportResult:
    """Where the model went and how it compares with torch on random inputs."""

    path: str
    quantization: str | None
    opset: int
    per_channel: bool | None  # int8 settings (None for fp32)
    quantize_embeddings: bool | None
    activation_scales: str | None
    size_bytes: int
    fp32_max_abs_diff: float  # fp32 graph vs torch, over the unpadded positions
    argmax_agreement: float  # share of unpadded positions where the written model's best label equals torch's
    source: str


class _LogitsOnly(torch.nn.Module):
    """The token classifier with the traced interface: (input_ids, attention_mask) -> logits."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def require_onnx():
    """The ``onnx`` module, or a MissingExtraError naming the extra that installs it."""
    from polyner.extras import require_extras

    require_extras("ONNX export", "export")
    import onnx

    return onnx


def random_batch(vocab_size: int, batch: int, length: int, generator: torch.Generator,
                 pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids with a padded tail on every second row (at least one real piece per row)."""
    ids = torch.randint(0, vocab_size, (batch, length), generator=generator)
    mask = torch.ones_like(ids)
    for row in range(1, batch, 2):
        keep = max(1, length // 2 + row % 3)
        mask[row, keep:] = 0
        ids[row, keep:] = pad_id
    return ids, mask


def export_onnx(config: ExportConfig, progress: Callable[[str], None] | None = None) -> ExportResult:
    """Export ``config.model`` to ``config.out`` (see the module docstring); raise when the graph does not match torch.

    ``progress`` is called with the name of each of :data:`EXPORT_STEPS` stages as it starts.
    """
    from polyner.models.io import load_token_classifier

    if config.quantize is not None and config.quantize not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {config.quantize!r}: expected one of {QUANTIZATIONS} or none")
    check_activation_scales(config.activation_scales)
    onnx = require_onnx()
    require_onnxruntime()
    step = progress or (lambda stage: None)
    step("loading")
    source = Path(config.model).expanduser()
    model, tokenizer = load_token_classifier(source)
    out = Path(config.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    vocab = int(model.config.vocab_size)
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    generator = torch.Generator().manual_seed(config.seed)
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as work:
        fp32 = Path(work) / "model.fp32.onnx"
        step("tracing")
        _trace(model, fp32, config.opset, random_batch(vocab, 2, 8, generator, pad))
        step("checking against torch")
        onnx.checker.check_model(str(fp32))
        checks = [random_batch(vocab, 3, 13, generator, pad), random_batch(vocab, 1, 5, generator, pad)]
        diff, _ = _compare(model, fp32, checks)
        if diff > config.atol:
            raise RuntimeError(f"the exported graph differs from torch by {diff:.2e} (> {config.atol}) in logits")
        weights = _weight_map(model, onnx.load(str(fp32)))
        target = out / ONNX_FILE
        step("quantizing" if config.quantize == "int8" else "writing")
        if config.quantize == "int8":
            quantize_int8(fp32, Path(work) / "model.int8.onnx", config.per_channel, config.quantize_embeddings,
                          config.activation_scales)
            shutil.move(str(Path(work) / "model.int8.onnx"), target)
        else:
            shutil.move(str(fp32), target)
    step("comparing")
    _, agreement = _compare(model, target, checks)
    if out.resolve() != source.resolve():
        onnx_config = json.loads((source / "config.json").read_text(encoding="utf-8"))
        onnx_config.pop("auto_map", None)  # the torch classes' code file is not copied: no torch weights here
        (out / "config.json").write_text(json.dumps(onnx_config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if (source / "tokenizer.json").exists():  # the tokenizer files as they are (same class, same pipeline)
            for name in TOKENIZER_FILES:
                if (source / name).exists():
                    shutil.copy2(source / name, out / name)
        else:
            tokenizer.save_pretrained(out)
        for name in COPIED_FILES:
            if (source / name).exists():
                shutil.copy2(source / name, out / name)
    int8 = config.quantize == "int8"
    result = ExportResult(path=str(out), quantization=config.quantize, opset=config.opset,
                          per_channel=config.per_channel if int8 else None,
                          quantize_embeddings=config.quantize_embeddings if int8 else None,
                          activation_scales=config.activation_scales if int8 else None,
                          size_bytes=target.stat().st_size, fp32_max_abs_diff=diff, argmax_agreement=agreement,
                          source=str(source))
    info = {"backend": "onnx", "file": ONNX_FILE, "inputs": list(INPUT_NAMES), "outputs": [OUTPUT_NAME],
            "dynamic_axes": ["batch", "sequence"], **asdict(result), WEIGHTS_KEY: weights}
    info.pop("path")
    (out / EXPORT_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    logger.info("wrote %s (%s, %.1f MB; fp32 max |diff| %.1e; argmax agreement %.4f)", target,
                config.quantize or "fp32", result.size_bytes / 1e6, diff, agreement)
    return result


def _weight_map(model: torch.nn.Module, graph) -> dict[str, dict]:
    """Where each torch weight went in the fp32 graph (see :mod:`polyner.models.onnx_weights`); {} when some weight
    is not stored as it is (or transposed), e.g. a buffer folded into a constant: then no torch rebuild."""
    from polyner.models.onnx_weights import graph_initializers, weight_map

    state = {name: t.detach().float().numpy() for name, t in model.state_dict().items() if t.is_floating_point()}
    found = weight_map(state, graph_initializers(graph).items())
    missing = sorted(set(state) - set(found))
    if missing:
        logger.info("not every torch weight is an initializer of the graph (%s...): no weight map", missing[:3])
        return {}
    return found


def _trace(model: torch.nn.Module, path: Path, opset: int, example: tuple[torch.Tensor, torch.Tensor]) -> None:
    axes = {name: {0: "batch", 1: "sequence"} for name in (*INPUT_NAMES, OUTPUT_NAME)}
    wrapper = _LogitsOnly(model).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(wrapper, example, str(path), input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                          dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False)
    model.eval()


def _compare(model: torch.nn.Module, path: Path, batches) -> tuple[float, float]:
    """Largest |logit difference| and argmax agreement between torch and the ONNX file, on unpadded positions."""
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    diff, same, total = 0.0, 0, 0
    with torch.no_grad():
        for ids, mask in batches:
            expected = model(input_ids=ids, attention_mask=mask).logits.float().numpy()
            got = session.run([OUTPUT_NAME], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
            keep = mask.numpy().astype(bool)
            diff = max(diff, float(np.abs(got - expected)[keep].max()))
            same += int((got.argmax(-1) == expected.argmax(-1))[keep].sum())
            total += int(keep.sum())
    return diff, same / max(total, 1)


def cached_export(source: str | Path, quantize: str | None = None) -> Path:
    """The directory of an ONNX export of the torch weights in ``source`` (fp32, or ``quantize="int8"``), exported
    on first use into ``$POLYNER_HOME/onnx`` (see :mod:`polyner.models.onnx_cache`)."""
    from polyner.models.onnx_cache import build_once, fingerprint

    source = Path(source).resolve()
    kind = f"{quantize}-{ExportConfig.activation_scales}" if quantize else "fp32"  # the default's scales

    def export(partial: Path, step: Callable[[str], None]) -> None:
        export_onnx(ExportConfig(model=str(source), out=str(partial), quantize=quantize), progress=step)

    return build_once("onnx", f"{source.name}-{fingerprint(source)}-{kind}", export,
                      f"exporting {source.name} to ONNX {kind}", steps=EXPORT_STEPS)
