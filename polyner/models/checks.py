"""Checks made before a model is built: config.json values in range, and the weights file holding the tensors
that config describes. They read only config.json and the safetensors header (never the tensors), so a config
asking for terabytes, a value of the wrong type, or the config of another architecture next to the weights
fails here with a message naming the file, before anything is allocated."""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any, Mapping

from polyner.errors import ModelDirectoryError

# (least, most) of the integer fields a config may have; a field that is absent or null is not checked
INT_RANGES = {
    "vocab_size": (1, 1 << 24), "hidden_size": (1, 1 << 15), "num_hidden_layers": (1, 256),
    "num_attention_heads": (1, 1024), "intermediate_size": (1, 1 << 17), "max_position_embeddings": (1, 1 << 20),
    "embedding_rank": (0, 1 << 15), "type_vocab_size": (0, 1024), "pad_token_id": (0, (1 << 24) - 1),
}
# (least, most, least included) of the real-valued fields
FLOAT_RANGES = {
    "layer_norm_eps": (0.0, 1.0, False), "hidden_dropout_prob": (0.0, 1.0, True),
    "attention_probs_dropout_prob": (0.0, 1.0, True), "initializer_range": (0.0, 10.0, True),
}
MAX_HEADER_BYTES = 100_000_000  # a safetensors header larger than this is not a model's


def check_config_values(data: Mapping[str, Any], config_file: Path) -> None:
    """Raise ModelDirectoryError (naming ``config_file``) for a field of the wrong type or out of range."""
    def bad(message: str) -> ModelDirectoryError:
        return ModelDirectoryError(f"{config_file}: {message}")

    for name, (least, most) in INT_RANGES.items():
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
            raise bad(f"{name} must be a whole number from {least} to {most}, not {value!r}")
    for name, (least, most, closed) in FLOAT_RANGES.items():
        value = data.get(name)
        if value is None:
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not number or not (least <= value if closed else least < value) or value >= most:
            bound = f"{'from' if closed else 'more than'} {least:g} and below {most:g}"
            raise bad(f"{name} must be a number {bound}, not {value!r}")
    for name in ("model_type", "hidden_act"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise bad(f"{name} must be a string, not {data[name]!r}")
    hidden, heads = data.get("hidden_size"), data.get("num_attention_heads")
    if hidden and heads and hidden % heads:
        raise bad(f"hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
    rank = data.get("embedding_rank")
    if rank and hidden and rank > hidden:
        raise bad(f"embedding_rank {rank} is larger than hidden_size {hidden}")
    vocab, pad = data.get("vocab_size"), data.get("pad_token_id")
    if vocab and pad is not None and pad >= vocab:
        raise bad(f"pad_token_id {pad} is not below vocab_size {vocab}")


def stored_shapes(weights_file: Path) -> dict[str, tuple[int, ...]]:
    """The name and shape of every tensor in a safetensors file, from its header alone (data offsets checked
    against the file size, so a truncated file is caught too)."""
    try:
        size = weights_file.stat().st_size
        with weights_file.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if not 2 <= length <= min(MAX_HEADER_BYTES, size - 8):
                raise ValueError(f"header length {length} does not fit a file of {size} bytes")
            header = json.loads(handle.read(length))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        shapes, end = {}, 0
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            shapes[name] = tuple(int(n) for n in entry["shape"])
            end = max(end, int(entry["data_offsets"][1]))
    except (OSError, ValueError, KeyError, TypeError, IndexError, struct.error) as exc:
        raise ModelDirectoryError(f"cannot load the model in {weights_file.parent}: {weights_file} is not a "
                                  f"readable safetensors file: {exc}") from exc
    if 8 + length + end > size:
        raise ModelDirectoryError(f"cannot load the model in {weights_file.parent}: {weights_file} is truncated: "
                                  f"its tensors need {8 + length + end} bytes, the file has {size}")
    return shapes


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def check_tensors_fit(expected: Mapping[str, tuple[int, ...]], weights_file: Path, what: str) -> None:
    """Raise ModelDirectoryError unless ``weights_file`` holds exactly the tensors ``expected`` (name: shape)
    of the model ``what`` describes (e.g. "its config.json (model_type 'polyner_student')")."""
    stored = stored_shapes(weights_file)
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    mismatched = [f"{name} {list(stored[name])} (expected {list(expected[name])})"
                  for name in sorted(set(expected) & set(stored)) if tuple(stored[name]) != tuple(expected[name])]
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensors missing ({_few(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected ({_few(unexpected)})")
    if mismatched:
        problems.append(f"{len(mismatched)} of another shape ({_few(mismatched)})")
    if problems:
        raise ModelDirectoryError(f"the weights do not fit {what}: {weights_file} has {'; '.join(problems)}")


def check_size_fits(parameters: int, weights_file: Path, what: str) -> None:
    """Raise ModelDirectoryError when the model ``what`` describes has more parameters than ``weights_file``
    holds: its config and weights do not belong together, and building it would allocate for nothing."""
    stored = sum(math.prod(shape) for shape in stored_shapes(weights_file).values())
    if parameters > stored:
        raise ModelDirectoryError(f"the weights do not fit {what}: it describes {parameters:,} parameters, "
                                  f"{weights_file} holds {stored:,}")


def shapes_on_meta(build) -> tuple[dict[str, tuple[int, ...]], int]:
    """The state-dict shapes and parameter count of the model ``build()`` makes, built on the meta device
    (no memory is allocated for its tensors)."""
    import torch

    with torch.device("meta"):
        model = build()
    return ({name: tuple(t.shape) for name, t in model.state_dict().items()},
            sum(p.numel() for p in model.parameters()))
