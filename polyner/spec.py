"""The model a surface tags with, resolved once: :class:`ModelSpec` (where, run by which backend, with which tagger
settings) and :func:`load`, the ``polyner.load`` of the Python API.

Every surface (``polyner.load``, the tagging verbs of the command line, the spaCy component, the HTTP service and
the corpus workers) makes a spec with :meth:`ModelSpec.resolve` (the model located, its directory checked so an
error names the path, its backend chosen) and builds its :class:`~polyner.tagging.tagger.Tagger` with
:meth:`ModelSpec.build`. A spec is frozen and picklable: worker processes and Ray actors receive it.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from polyner.loading import locate_model, model_name
from polyner.tagging.tagger import Tagger, TaggerConfig

TASKS = ("ner", "classify", "qa")


def check_threads(threads: int | None) -> None:
    """Raise ValueError unless ``threads`` is None (the runtime's default) or an int (not a bool) of at least 1."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be an int of at least 1, not {threads!r}")


@dataclass(frozen=True)
class ModelSpec:
    """A located, checked model directory, the backend that runs it and the settings of its tagger."""

    path: Path  # the checked model directory
    backend: str  # "torch", "onnx" or "onnx-int8" (chosen by polyner.models.backend.choose_backend)
    name: str = ""  # what the tagger calls itself (the shipped default: "polyner-default")
    threads: int | None = None  # intra-op threads of ONNX Runtime or torch; None: the runtime's default
    tagger: TaggerConfig = field(default_factory=TaggerConfig)
    prepared: Path | None = None  # the directory the backend runs from, once made by prepare() (None: not yet)

    @classmethod
    def resolve(cls, model: str | Path | None = None, backend: str | None = None, threads: int | None = None,
                **tagger_options) -> "ModelSpec":
        """Locate ``model`` (a directory, a name or a hub id; None: the shipped default; see
        :func:`~polyner.loading.resolve_model`), check its directory and choose its backend (None: from what the
        directory holds). Errors name the path or the bad value; ``tagger_options`` are
        :class:`~polyner.tagging.tagger.TaggerConfig` fields."""
        from polyner.models.backend import choose_backend

        check_threads(threads)
        known = [f.name for f in fields(TaggerConfig)]
        unknown = sorted(set(tagger_options) - set(known))
        if unknown:
            raise TypeError(f"unknown tagger option(s) {unknown}: expected threads or {', '.join(known)}")
        settings = TaggerConfig(**tagger_options)
        path = locate_model(model)
        chosen = choose_backend(path, backend)
        return cls(path=path, backend=chosen, name=model_name(model), threads=threads, tagger=settings)

    def prepare(self) -> "ModelSpec":
        """This spec with its backend's directory made now (the ONNX export, or the torch weights read back), so
        that the workers given it each load a ready directory instead of all building it."""
        from polyner.models import backend as backends

        if self.prepared is not None:
            return self
        return replace(self, prepared=backends.prepare_backend(self.path, self.backend))

    def with_threads(self, threads: int | None) -> "ModelSpec":
        """This spec with ``threads`` intra-op threads (one per worker process, say)."""
        return replace(self, threads=threads)

    def build(self) -> Tagger:
        """Load the model with its backend and wrap it in a tagger."""
        from polyner.models.backend import load_classifier

        model, tokenizer = load_classifier(self.prepared or self.path, self.backend, self.threads)
        if self.backend == "torch" and self.threads:
            import torch

            torch.set_num_threads(self.threads)
        return Tagger(model, tokenizer, self.tagger, name=self.name, source=str(self.path))


def load(path_or_name: str | Path | None = None, task: str = "ner", backend: str | None = None,
         threads: int | None = None, onnx_threads: int | None = None, **options):
    """Load a polyner model. ``task="ner"`` returns a :class:`~polyner.tagging.tagger.Tagger`.

    ``path_or_name`` is a model directory, a name under ``$POLYNER_HOME/models``, or a Hugging Face
    hub id (``OWNER/NAME``; see :func:`~polyner.loading.resolve_model`); None loads the default student shipped
    inside the package, an ONNX model run by onnxruntime, offline and without torch.
    ``backend`` is "torch", "onnx", "onnx-int8" or None (ONNX Runtime when the directory holds model.onnx
    and no model.safetensors). "onnx" / "onnx-int8" on a directory of torch weights export it to ONNX fp32 /
    int8 (per-token activation scales) once, into ``$POLYNER_HOME/onnx``, and run that: the fastest way to tag on a
    CPU. "torch" on an ONNX-only directory (the default) reads its torch weights back once (the ``train`` extra).
    ``threads`` sets the intra-op threads of ONNX Runtime or torch (None: the runtime's default, all cores);
    ``onnx_threads`` is its former name (deprecated).
    Extra keyword options go to :class:`~polyner.tagging.tagger.TaggerConfig`; ``max_length`` (pieces per
    window) defaults to the model's own (``ner_max_length`` in its config.json), else 128.
    ``task="classify"`` / ``task="qa"`` load a model fine-tuned by ``polyner finetune glue`` / ``squad`` and
    return a :class:`~polyner.tasks.inference.SequenceClassifier` / :class:`~polyner.tasks.inference.QuestionAnswerer`;
    they run on torch only, so another backend is an error (``threads`` sets torch's).
    """
    if onnx_threads is not None:
        if threads is not None and threads != onnx_threads:
            raise ValueError(f"threads={threads!r} and onnx_threads={onnx_threads!r} disagree: give threads only")
        warnings.warn("polyner.load(onnx_threads=...) is deprecated: use threads=...", DeprecationWarning,
                      stacklevel=2)
        threads = onnx_threads
    if task == "ner":
        return ModelSpec.resolve(path_or_name, backend, threads, **options).build()
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}: expected 'ner', 'classify' or 'qa'")
    if backend not in (None, "torch"):
        raise ValueError(f"task {task!r} runs on torch only: backend={backend!r} is not supported")
    check_threads(threads)
    from polyner.tasks.inference import load_task_pipeline

    pipeline = load_task_pipeline(locate_model(path_or_name), task, **options)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    return pipeline
