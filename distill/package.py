"""Pack a trained student for shipping: fp16 weights, tokenizer, config and a model card, nothing else."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

logger = logging.getLogger(__name__)
SHIPPED_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def pack_model(source: str | Path, target: str | Path, dtype: str = "float16") -> Path:
    """Copy the files a user needs from ``source`` to ``target``, weights cast to ``dtype`` (float tensors only)."""
    source, target = Path(source), Path(target)
    from polyner.models.io import check_model_dir

    check_model_dir(source)
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cast = getattr(torch, dtype)
    weights = {k: (v.to(cast) if v.is_floating_point() else v).contiguous()
               for k, v in load_file(str(source / "model.safetensors")).items()}
    save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    for name in SHIPPED_FILES:
        if (source / name).exists():
            shutil.copyfile(source / name, tmp / name)
    config = json.loads((tmp / "config.json").read_text())
    config["torch_dtype"] = dtype
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    for keep in ("README.md", "training_log.json", "distill_config.json"):
        if (target / keep).exists() and not (tmp / keep).exists():
            shutil.copyfile(target / keep, tmp / keep)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    size = sum(f.stat().st_size for f in target.iterdir())
    logger.info("packed %s into %s (%.1f MB)", source, target, size / 1e6)
    return target


def directory_size_mb(folder: str | Path) -> float:
    """Size of the files directly in ``folder``, in MB."""
    return sum(f.stat().st_size for f in Path(folder).iterdir() if f.is_file()) / 1e6
