"""``polyner.load``: find a model by path, cache name or hub name, and wrap it for its task."""
from __future__ import annotations

import logging
from pathlib import Path

from polyner.home import polyner_home
from polyner.models.io import ModelDirectoryError

logger = logging.getLogger(__name__)
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default"


def resolve_model(path_or_name: str | Path | None) -> Path | str:
    """The directory (or hub name) that ``path_or_name`` refers to; None is the shipped default."""
    if path_or_name is None:
        if not (DEFAULT_MODEL_DIR / "config.json").exists():
            raise ModelDirectoryError(
                f"no default model is shipped in this installation ({DEFAULT_MODEL_DIR}); "
                "pass a model directory to polyner.load(PATH)")
        return DEFAULT_MODEL_DIR
    if not isinstance(path_or_name, (str, Path)):
        raise TypeError(f"path_or_name must be a str or Path, not {type(path_or_name).__name__}")
    path = Path(path_or_name).expanduser()
    if path.exists() or str(path_or_name).startswith((".", "/", "~")) or isinstance(path_or_name, Path):
        return path
    for folder in (polyner_home() / "models", polyner_home() / "teachers"):
        candidate = folder / str(path_or_name).replace("/", "--")
        if candidate.exists():
            return candidate
    return str(path_or_name)  # a hub name, loaded by transformers


def load(path_or_name: str | Path | None = None, task: str = "ner", backend: str | None = None,
         onnx_threads: int | None = None, **options):
    """Load a polyner model. ``task="ner"`` returns a :class:`~polyner.pipelines.ner.Tagger`.

    ``path_or_name`` is a model directory, a name under ``$POLYNER_HOME/models``, or a Hugging Face
    hub name; None loads the default student shipped inside the package, offline.
    ``backend`` is "torch", "onnx", "onnx-int8" or None (ONNX Runtime when the directory holds model.onnx
    and no model.safetensors). "onnx" / "onnx-int8" on a directory of torch weights (the default student
    included) export it to ONNX fp32 / dynamic int8 once, into ``$POLYNER_HOME/onnx``, and run that: the
    fastest way to tag on a CPU. ``onnx_threads`` sets ONNX Runtime's intra-op threads (None: all cores).
    Extra keyword options go to :class:`~polyner.pipelines.ner.TaggerConfig`; ``max_length`` (pieces per
    window) defaults to the model's own (``ner_max_length`` in its config.json, see
    :func:`~polyner.pipelines.ner.model_window`), else 128.
    ``task="classify"`` / ``task="qa"`` load a model fine-tuned by ``polyner finetune glue`` / ``squad`` and
    return a :class:`~polyner.tasks.inference.SequenceClassifier` / :class:`~polyner.tasks.inference.QuestionAnswerer`.
    """
    from polyner.models.backend import check_backend

    check_backend(backend)
    target = resolve_model(path_or_name)
    if task == "ner":
        from polyner.models.backend import load_with_backend
        from polyner.pipelines.ner import Tagger, TaggerConfig

        if isinstance(target, Path):
            model, tokenizer = load_with_backend(target, backend, onnx_threads)
        elif backend in ("onnx", "onnx-int8"):
            raise ModelDirectoryError(f"the ONNX backend needs a local model directory, not {target!r}: "
                                      "export one with `polyner export MODEL --format onnx --out DIR`")
        else:
            model, tokenizer = _load_hub_token_classifier(target)
        name = "polyner-default" if path_or_name is None else Path(str(path_or_name)).name or str(path_or_name)
        return Tagger(model, tokenizer, TaggerConfig(**options), name=name, source=str(target))
    if task in ("classify", "qa"):  # fine-tuned GLUE / SQuAD heads (polyner finetune)
        from polyner.tasks.inference import load_task_pipeline

        return load_task_pipeline(target, task, **options)
    raise ValueError(f"unknown task {task!r}: expected 'ner', 'classify' or 'qa'")


def _load_hub_token_classifier(name: str):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    try:
        model = AutoModelForTokenClassification.from_pretrained(name, use_safetensors=True)
        return model.eval(), AutoTokenizer.from_pretrained(name)
    except Exception as exc:
        raise ModelDirectoryError(f"cannot load model {name!r}: not a local directory, not under "
                                  f"{polyner_home() / 'models'}, and not loadable from the hub ({exc})") from exc
