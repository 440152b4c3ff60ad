"""Load and save token-classification models in the Hugging Face layout, with clear errors."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from polyner.errors import ModelDirectoryError
from polyner.labels import ID2LABEL, LABEL2ID

if TYPE_CHECKING:  # torch is imported where a torch model is loaded: the ONNX backend runs without it
    import torch

logger = logging.getLogger(__name__)
WEIGHT_FILES = ("model.safetensors", "model.onnx")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "sentencepiece.bpe.model")
COPIED_FILES = ("README.md",)  # copied with the model by an ONNX export or a torch rebuild
__all__ = ["COPIED_FILES", "ModelDirectoryError", "TOKENIZER_FILES", "WEIGHT_FILES", "check_model_dir",
           "load_token_classifier", "load_tokenizer", "ner_config_kwargs", "quiet_transformers"]


def check_model_dir(path: str | Path) -> Path:
    """Check that ``path`` holds a readable model: config.json, weights and tokenizer files."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelDirectoryError(f"model directory not found: {path}")
    if not path.is_dir():
        raise ModelDirectoryError(f"not a model directory (it is a file): {path}")
    config = path / "config.json"
    if not config.exists():
        raise ModelDirectoryError(f"no config.json in {path}: not a polyner / Hugging Face model directory")
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelDirectoryError(f"corrupt config.json in {path}: {exc}") from exc
    if not any((path / name).exists() for name in WEIGHT_FILES):
        raise ModelDirectoryError(f"no model weights (model.safetensors or model.onnx) in {path}")
    if not ((path / "tokenizer.json").exists() or (path / "sentencepiece.bpe.model").exists()):
        raise ModelDirectoryError(f"no tokenizer files (tokenizer.json) in {path}")
    return path


def load_tokenizer(path: str | Path):
    """The fast tokenizer saved in ``path``."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path))
    except Exception as exc:  # corrupt tokenizer.json and friends
        raise ModelDirectoryError(f"cannot load the tokenizer in {path}: {exc}") from exc


def load_token_classifier(path: str | Path, dtype: torch.dtype | None = None):
    """Load ``(model, tokenizer)`` for NER from a checked directory, weights read with safetensors (float32 unless
    ``dtype`` says otherwise).

    config.json must describe the weights: its values are range-checked and the model it describes may not
    have more parameters than the file holds (both before allocating), and after loading no tensor of the
    model may be missing from the file (transformers would initialise it at random).
    """
    import torch
    from transformers import AutoConfig, AutoModelForTokenClassification

    import polyner.models.student  # noqa: F401  (registers the student architecture with Auto*)

    from polyner.models.checks import check_config_values, check_size_fits, shapes_on_meta

    path = check_model_dir(path)
    config_file, weights_file = path / "config.json", path / "model.safetensors"
    data = json.loads(config_file.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ModelDirectoryError(f"{config_file} is not a JSON object")
    check_config_values(data, config_file)
    if not weights_file.exists():
        raise ModelDirectoryError(f"no torch weights (model.safetensors) in {path}")
    quiet_transformers()
    what = f"its config.json (model_type {data.get('model_type')!r})"
    try:
        config = AutoConfig.from_pretrained(str(path))
        _, parameters = shapes_on_meta(lambda: AutoModelForTokenClassification.from_config(config))
    except Exception as exc:
        raise ModelDirectoryError(f"cannot load the model in {path}: {config_file}: {exc}") from exc
    check_size_fits(parameters, weights_file, what)  # before anything is allocated
    try:
        model, info = AutoModelForTokenClassification.from_pretrained(
            str(path), config=config, dtype=dtype or torch.float32, use_safetensors=True, output_loading_info=True)
    except Exception as exc:
        raise ModelDirectoryError(f"cannot load the model in {path}: {exc}") from exc
    missing = sorted(info.get("missing_keys") or [])
    if missing:  # transformers would leave them randomly initialised
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ModelDirectoryError(f"the weights do not fit {what}: {weights_file} lacks {len(missing)} of the "
                                  f"model's tensors ({shown})")
    return model.float().eval(), load_tokenizer(path)


def quiet_transformers() -> None:
    """Keep transformers' weight-loading progress bars and load reports out of user output."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def ner_config_kwargs() -> dict:
    """The label maps every polyner NER model carries in its config.json."""
    return {"num_labels": len(ID2LABEL), "id2label": dict(ID2LABEL), "label2id": dict(LABEL2ID)}
