"""Conversions made once, on first use, and kept in ``$POLYNER_HOME``.

ONNX exports (:func:`polyner.models.onnx_export.cached_export`): ``backend="onnx"`` / ``"onnx-int8"`` on a
directory of torch weights. Torch weights
(``$POLYNER_HOME/torch``, :func:`polyner.models.onnx_weights.rebuild_torch_directory`): the torch backend,
fine-tuning or distillation on a directory that ships only ``model.onnx`` (the packed default).
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
from contextlib import contextmanager
from typing import Callable, Iterator

from polyner.home import cache_dir, hash_file
from polyner.models.io import ModelDirectoryError

logger = logging.getLogger(__name__)
EXPORT_VERSION = "3"  # bump when the export changes (2: additive attention mask; 3: the torch weight map)
HASHED_FILES = ("config.json", "model.safetensors")


def fingerprint(source: Path, files: tuple[str, ...] = HASHED_FILES) -> str:
    """A short hash of the files that determine what is built from ``source`` (and of the exporter's version)."""
    digest = hashlib.sha256(EXPORT_VERSION.encode())
    for name in files:
        path = source / name
        if not path.exists():
            raise ModelDirectoryError(f"no {name} in {source}")
        digest.update(name.encode())
        hash_file(digest, path)
    return digest.hexdigest()[:16]


def is_complete(folder: Path, names: tuple[str, ...] | None = None) -> bool:
    """Whether ``folder`` holds a finished build: by default an ONNX export (the ONNX model, its export record
    and config.json)."""
    from polyner.models.onnx_backend import EXPORT_INFO_FILE, ONNX_FILE

    return all((folder / name).is_file() for name in (names or (ONNX_FILE, EXPORT_INFO_FILE, "config.json")))


class Progress:
    """A one-line progress bar on standard error for a build that takes seconds: ``step("tracing")`` moves it on."""

    def __init__(self, what: str, steps: int) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=steps, desc=what, leave=False, bar_format="{desc}: {postfix} {n}/{total} [{elapsed}]")

    def __call__(self, stage: str) -> None:
        self._bar.set_postfix_str(stage, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


def build_once(kind: str, name: str, build: Callable[[Path, Callable[[str], None]], object], what: str,
               complete: tuple[str, ...] | None = None, steps: int = 1) -> Path:
    """``$POLYNER_HOME/KIND/NAME``, built by ``build(partial_folder, step)`` when missing or incomplete.

    The build goes to a hidden folder renamed into place when done, and shows ``what`` with a progress bar
    (``step`` advances it) on standard error: builds take seconds to half a minute.
    """
    root = cache_dir(kind)
    target = root / name
    if is_complete(target, complete):
        return target
    with _build_lock(root / f".{name}.lock"):  # the processes that want it at once (spaCy workers): one builds
        if is_complete(target, complete):
            return target
        return _build(target, build, what, complete, steps)


@contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` across processes (POSIX ``flock``; without it, each process builds and the
    rename keeps one complete build)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(target: Path, build: Callable[[Path, Callable[[str], None]], object], what: str,
           complete: tuple[str, ...] | None, steps: int) -> Path:
    root, kind = target.parent, target.parent.name
    if target.exists():  # left incomplete by hand or by an older version: build again
        logger.warning("incomplete %s in %s: building again", kind, target)
        shutil.rmtree(target, ignore_errors=True)
    logger.info("%s once, into %s", what, target)
    partial = Path(tempfile.mkdtemp(dir=root, prefix=f".{target.name}-", suffix=".partial"))
    progress = Progress(what + " (once)", steps)
    try:
        build(partial, progress)
        try:
            os.rename(partial, target)
        except OSError:
            if not is_complete(target, complete):  # not another process's finished build: a real failure
                raise
    finally:
        progress.close()
        shutil.rmtree(partial, ignore_errors=True)
    return target
