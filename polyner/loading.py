"""Find a model: locally first (path, shipped default, cached name), then the hub. :func:`locate_model` is the one
place that turns a ``--model`` value into a checked directory; :func:`local_models` lists what it finds offline.
(:class:`polyner.spec.ModelSpec` locates a model, chooses its backend and builds its tagger.)"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from polyner.home import polyner_home
from polyner.models.io import ModelDirectoryError, check_model_dir

logger = logging.getLogger(__name__)
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default"
DEFAULT_NAME = "polyner-default"  # the shipped default, by name: `polyner tag --model polyner-default`
#: OWNER/NAME as the hub spells repositories (letters, digits, ``-_.``; 96 characters at most each).
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
#: What polyner reads of a hub repository (safetensors and ONNX weights, config, tokenizer, card): never pickles.
HUB_FILES = ["config.json", "*.safetensors", "model.safetensors.index.json", "model.onnx", "onnx_export.json",
             "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "sentencepiece.bpe.model",
             "spiece.model", "vocab.txt", "vocab.json", "merges.txt", "README.md"]
HUB_TIMEOUT_S = 5.0


def model_folders() -> dict[str, Path]:
    """Where local models are looked up by name, by kind: ``$POLYNER_HOME/models`` and ``/teachers``."""
    return {"model": polyner_home() / "models", "teacher": polyner_home() / "teachers"}


def is_hub_id(name: str) -> bool:
    """Whether ``name`` can be a Hugging Face hub repository (``OWNER/NAME``)."""
    return bool(HUB_ID.match(name)) and ".." not in name and "--" not in name and not name.endswith(".")


def hub_offline() -> bool:
    """Whether the hub is switched off (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` set to 1/true/yes/on)."""
    return any(os.environ.get(k, "").strip().upper() in ("1", "ON", "YES", "TRUE")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def resolve_model(path_or_name: str | Path | None) -> Path:
    """The local directory ``path_or_name`` refers to, looked up locally first.

    None or ``"polyner-default"`` is the shipped default; a Path, an existing path or a path-like string
    (``./x``, ``/x``, ``~/x``, ``runs/x`` when ``runs`` exists) is itself; a name under ``$POLYNER_HOME/models`` or
    ``/teachers`` is that folder; ``OWNER/NAME`` is a hub repository, taken from the local Hugging Face cache,
    else downloaded (safetensors/ONNX weights, config and tokenizer only). Anything else, a hub id that is not
    cached while ``HF_HUB_OFFLINE`` is set, and a hub that cannot be reached fail at once with one line naming it
    (a :class:`~polyner.models.io.ModelDirectoryError`).
    """
    if path_or_name is None or path_or_name == DEFAULT_NAME:
        if not (DEFAULT_MODEL_DIR / "config.json").exists():
            raise ModelDirectoryError(
                f"no default model is shipped in this installation ({DEFAULT_MODEL_DIR}); "
                "pass a model directory to polyner.load(PATH)")
        return DEFAULT_MODEL_DIR
    if not isinstance(path_or_name, (str, Path)):
        raise TypeError(f"path_or_name must be a str or Path, not {type(path_or_name).__name__}")
    if isinstance(path_or_name, str) and not path_or_name.strip():
        raise ModelDirectoryError("the model name is empty: give a directory, a local model name or a hub id "
                                  "(or nothing for the shipped default)")
    path = Path(path_or_name).expanduser()
    name = str(path_or_name)
    if isinstance(path_or_name, Path) or path.exists() or name.startswith((".", "/", "~")) \
            or (len(path.parts) > 1 and Path(path.parts[0]).expanduser().is_dir()):
        return path
    for folder in model_folders().values():
        candidate = folder / name.replace("/", "--")
        if candidate.is_dir():
            return candidate
    if is_hub_id(name):
        return _hub_snapshot(name)
    raise ModelDirectoryError(f"no model {name!r}: not a directory, not a local model name (`polyner models` lists "
                              "them) and not a hub id (OWNER/NAME)")


def model_name(path_or_name: str | Path | None) -> str:
    """What taggers and tables call a model: ``polyner-default`` for the shipped one, else the last part of its path
    or name (a hub id's NAME)."""
    if path_or_name is None or path_or_name == DEFAULT_NAME:
        return DEFAULT_NAME
    path = Path(path_or_name).expanduser()
    if path.exists() and path.resolve() == DEFAULT_MODEL_DIR:
        return DEFAULT_NAME
    return path.name or str(path_or_name)


def locate_model(path_or_name: str | Path | None) -> Path:
    """The checked model directory ``path_or_name`` refers to (see :func:`resolve_model`): a ModelDirectoryError
    naming the path when it is missing or holds no readable model."""
    return check_model_dir(resolve_model(path_or_name))


def _hub_snapshot(repo_id: str) -> Path:
    """The local snapshot of a hub repository: the cached one, else downloaded (with huggingface_hub's progress)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES, local_files_only=True))
    except Exception:  # not cached (LocalEntryNotFoundError and friends): ask the hub below, unless offline
        pass
    if hub_offline():
        raise ModelDirectoryError(f"hub model {repo_id!r} is not in the local cache and HF_HUB_OFFLINE is set")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES, etag_timeout=HUB_TIMEOUT_S))
    except Exception as exc:
        kind = type(exc).__name__
        if kind in ("RepositoryNotFoundError", "GatedRepoError", "RevisionNotFoundError"):
            reason = "no such repository on the Hugging Face hub, or it is private or gated"
        elif kind in ("LocalEntryNotFoundError", "ConnectError", "ConnectionError", "Timeout", "ConnectTimeout"):
            reason = "the Hugging Face hub cannot be reached (offline?) and it is not in the local cache"
        else:
            reason = f"{kind}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise ModelDirectoryError(f"cannot load hub model {repo_id!r}: {reason}") from None


@dataclass(frozen=True)
class LocalModel:
    """A model found on this machine: what to pass to ``--model`` (``name``), its kind, folder and size."""

    name: str
    kind: str  # "default", "model", "teacher", "hub cache", "onnx export", "torch rebuild"
    path: Path
    backend: str  # what polyner.load runs it with by default: "onnx-int8", "onnx" or "torch"
    size_mb: float


def local_models() -> list[LocalModel]:
    """The models polyner can load without a network: the default, ``$POLYNER_HOME`` models and teachers, the
    ONNX exports and torch rebuilds it cached, and the hub-cache repositories it can read (config.json with
    safetensors or ONNX weights)."""
    found: list[tuple[str, str, Path]] = []
    if (DEFAULT_MODEL_DIR / "config.json").exists():
        found.append((DEFAULT_NAME, "default", DEFAULT_MODEL_DIR))
    for kind, folder in model_folders().items():
        found += [(p.name.replace("--", "/"), kind, p) for p in sorted(folder.glob("*")) if _is_model_dir(p)]
    for kind, sub in (("onnx export", "onnx"), ("torch rebuild", "torch")):
        found += [(str(p), kind, p) for p in sorted((polyner_home() / sub).glob("*")) if _is_model_dir(p)]
    found += _hub_cache_models()
    return [LocalModel(name, kind, path, _default_backend(path), _size_mb(path)) for name, kind, path in found]


def _is_model_dir(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith(".") and (path / "config.json").is_file() and \
        any((path / f).is_file() for f in ("model.safetensors", "model.onnx"))


def _hub_cache_models() -> list[tuple[str, str, Path]]:
    try:
        from huggingface_hub import scan_cache_dir

        repos = scan_cache_dir().repos
    except Exception:  # no cache yet, or an unreadable one: nothing to list
        return []
    found = []
    for repo in sorted(repos, key=lambda r: r.repo_id):
        snapshots = sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True)
        if repo.repo_type == "model" and snapshots and _is_model_dir(Path(snapshots[0].snapshot_path)):
            found.append((repo.repo_id, "hub cache", Path(snapshots[0].snapshot_path)))
    return found


def _default_backend(path: Path) -> str:
    if (path / "model.safetensors").exists():
        return "torch"
    from polyner.models.onnx_backend import is_int8

    return "onnx-int8" if is_int8(path) else "onnx"


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file()) / 1e6
