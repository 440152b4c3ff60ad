"""ONNX exports made on first use: ``backend="onnx"`` / ``"onnx-int8"`` on a directory of torch weights.

The export goes to ``$POLYNER_HOME/onnx/<name>-<fingerprint>-<fp32|int8>/``, where the fingerprint hashes
the source's ``config.json`` and ``model.safetensors`` (and the exporter's version), so a changed model
gets a new export and an unchanged one is exported once. The export is written to a hidden folder
beside its place and renamed into it when complete: an interrupted export leaves nothing that a later
load would take for a model, and two processes exporting at once both end up with a complete one.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from polyner.home import cache_dir
from polyner.models.io import ModelDirectoryError

logger = logging.getLogger(__name__)
EXPORT_VERSION = "2"  # bump when the exported graph changes (2: additive attention mask)
HASHED_FILES = ("config.json", "model.safetensors")


def fingerprint(source: Path) -> str:
    """A short hash of the files that determine the exported graph."""
    digest = hashlib.sha256(EXPORT_VERSION.encode())
    for name in HASHED_FILES:
        path = source / name
        if not path.exists():
            raise ModelDirectoryError(f"no {name} in {source}: an ONNX export needs the torch model directory")
        digest.update(name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` holds a finished export (the ONNX model, its export record and config.json)."""
    from polyner.models.onnx_backend import EXPORT_INFO_FILE, ONNX_FILE

    return all((folder / name).is_file() for name in (ONNX_FILE, EXPORT_INFO_FILE, "config.json"))


def cached_export(source: str | Path, quantize: str | None = None) -> Path:
    """The directory of an ONNX export of ``source`` (fp32, or ``quantize="int8"``), exported on first use."""
    source = Path(source).resolve()
    kind = quantize or "fp32"
    root = cache_dir("onnx")
    target = root / f"{source.name}-{fingerprint(source)}-{kind}"
    if is_complete(target):
        return target
    if target.exists():  # left incomplete by hand or by an older version: export again
        logger.warning("incomplete ONNX export in %s: exporting again", target)
        shutil.rmtree(target, ignore_errors=True)
    from polyner.models.onnx_export import ExportConfig, export_onnx  # torch and onnx: only to export

    logger.info("exporting %s to ONNX (%s) once, into %s", source, kind, target)
    partial = Path(tempfile.mkdtemp(dir=root, prefix=f".{target.name}-", suffix=".partial"))
    try:
        export_onnx(ExportConfig(model=str(source), out=str(partial), quantize=quantize))
        try:
            os.rename(partial, target)
        except OSError:
            if not is_complete(target):  # not another process's finished export: a real failure
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target
