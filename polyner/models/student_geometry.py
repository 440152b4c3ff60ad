"""The geometry of a polyner student: the one place its sizes and their defaults are written (no torch here).

:class:`StudentGeometry` is what the module tree (:mod:`polyner.models.student_layers`) is built from. The
transformers config (:class:`~polyner.models.student.PolynerStudentConfig`) takes its defaults from it, the
plain-torch runtime reads it from ``config.json`` (:meth:`StudentGeometry.from_config`), and distillation's presets
are geometries. ``config.json`` keeps the Hugging Face key names (:data:`CONFIG_KEYS`); the labels are stored as
``id2label``, so only their number is geometry.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from polyner.labels import ID2LABEL

# field of StudentGeometry -> its key in config.json
CONFIG_KEYS = {
    "layers": "num_hidden_layers", "hidden": "hidden_size", "heads": "num_attention_heads", "ffn": "intermediate_size",
    "rank": "embedding_rank", "vocab": "vocab_size", "max_positions": "max_position_embeddings",
    "labels": "num_labels", "pad_id": "pad_token_id", "layer_norm_eps": "layer_norm_eps",
    "dropout": "hidden_dropout_prob", "attention_dropout": "attention_probs_dropout_prob",
}
ENCODER_FIELDS = ("layers", "hidden", "heads", "ffn", "rank")  # what a distillation preset chooses


@dataclass(frozen=True)
class StudentGeometry:
    """Sizes of a student: encoder, vocabulary, positions, classifier width and regularisation."""

    layers: int = 4
    hidden: int = 256
    heads: int = 4
    ffn: int = 1024
    rank: int = 128  # word-embedding rank: vocab x rank rows projected to hidden; 0 = unfactorized (rows of hidden)
    vocab: int = 250002
    max_positions: int = 512
    labels: int = len(ID2LABEL)  # outputs of the token classifier (the NER labels)
    pad_id: int = 1
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    attention_dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.heads < 1 or self.hidden % self.heads:
            raise ValueError(f"hidden size {self.hidden} is not a multiple of the number of heads {self.heads}")
        if not 0 <= self.rank <= self.hidden:
            raise ValueError(f"embedding rank {self.rank} is not from 0 to the hidden size {self.hidden}")

    @property
    def word_width(self) -> int:
        """The width of the stored word-embedding rows."""
        return self.rank or self.hidden

    def config_values(self) -> dict[str, Any]:
        """The geometry under its config.json keys (``num_labels`` included: a config stores it as ``id2label``)."""
        return {CONFIG_KEYS[name]: value for name, value in asdict(self).items()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | Any) -> StudentGeometry:
        """The geometry of a config (a mapping such as config.json, or an object with the keys as attributes);
        a key that is absent or null takes the default here."""
        def value(key: str):
            return config.get(key) if isinstance(config, Mapping) else getattr(config, key, None)

        given = {f.name: value(CONFIG_KEYS[f.name]) for f in fields(cls)}
        if given["labels"] is None and value("id2label"):  # config.json itself: the labels, not their number
            given["labels"] = len(value("id2label"))
        return cls(**{name: v for name, v in given.items() if v is not None})


DEFAULT_GEOMETRY = StudentGeometry()
