"""Resumable training checkpoints: weights as safetensors, optimizer state via torch.load(weights_only)."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

logger = logging.getLogger(__name__)


def save_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, state: dict) -> None:
    """Write the trainable weights, optimizer, scheduler and loop state atomically to ``folder``."""
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(weights, str(tmp / "weights.safetensors"))
    save_file({"torch_rng": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict() if scheduler else None},
               tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def complete_checkpoint(folder: Path) -> Path | None:
    """The folder holding the last complete checkpoint written to ``folder`` (``folder.old`` after a crash between
    the two renames of :func:`save_checkpoint`), or None when there is none."""
    for candidate in (folder, folder.with_name(folder.name + ".old")):
        if (candidate / "state.json").exists():
            return candidate
    return None


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any) -> dict | None:
    """Restore a checkpoint written by :func:`save_checkpoint`; return its loop state, or None if absent."""
    folder = complete_checkpoint(folder)
    if folder is None:
        return None
    model.load_state_dict(load_file(str(folder / "weights.safetensors")))
    if (folder / "rng.safetensors").exists():
        torch.set_rng_state(load_file(str(folder / "rng.safetensors"))["torch_rng"])
    saved = torch.load(folder / "optimizer.pt", weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    if scheduler is not None and saved["scheduler"] is not None:
        scheduler.load_state_dict(saved["scheduler"])
    state = json.loads((folder / "state.json").read_text())
    logger.info("resumed from %s at step %s", folder, state.get("step"))
    return state
