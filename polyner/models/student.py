"""The polyner student: a small post-LN transformer encoder with factorized word embeddings.

Word embeddings are ``vocab x rank`` followed by a ``rank -> hidden`` projection (XtremeDistil's
embedding factorization); layers are standard BERT layers. The modules are the plain-torch tree of
:mod:`polyner.models.student_layers`, built from the config's :class:`~polyner.models.student_geometry.StudentGeometry`;
the classes here add what transformers needs (config, weight initialisation, outputs, loss). They register with the
transformers Auto* factories when this module is imported, so ``AutoModelForTokenClassification.from_pretrained(dir)``
works after ``import polyner.models.student``; a saved student also carries ``auto_map`` and a code file
(:mod:`polyner.models.hf_interop`), so ``from_pretrained(dir, trust_remote_code=True)`` works without it.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForTokenClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, TokenClassifierOutput

from polyner.labels import ID2LABEL, LABEL2ID
from polyner.models.student_geometry import DEFAULT_GEOMETRY, StudentGeometry
from polyner.models.student_layers import EncoderParts, StudentEmbeddings, StudentLayer, TokenClassifierParts

__all__ = ["PolynerStudentConfig", "PolynerStudentModel", "PolynerStudentForTokenClassification", "StudentEmbeddings",
           "StudentLayer", "count_parameters"]


class PolynerStudentConfig(PretrainedConfig):
    """A student's config.json: its :class:`~polyner.models.student_geometry.StudentGeometry` under the Hugging Face
    key names (``hidden_size``, ``embedding_rank``, ...; defaults from the geometry), labels and special ids."""

    model_type = "polyner_student"

    def __init__(self, hidden_act: str = "gelu", initializer_range: float = 0.02, bos_token_id: int = 0,
                 eos_token_id: int = 2, **kwargs) -> None:
        sizes = {key: kwargs.pop(key, default) for key, default in DEFAULT_GEOMETRY.config_values().items()
                 if key != "num_labels"}  # the labels are id2label (or num_labels), which PretrainedConfig keeps
        if "id2label" not in kwargs and "num_labels" not in kwargs:  # the geometry's default labels: polyner's NER
            kwargs.update(id2label=dict(ID2LABEL), label2id=dict(LABEL2ID))
        super().__init__(pad_token_id=sizes.pop("pad_token_id"), bos_token_id=bos_token_id,
                         eos_token_id=eos_token_id, **kwargs)
        for key, value in sizes.items():
            setattr(self, key, value)
        self.hidden_act = hidden_act
        self.initializer_range = initializer_range
        StudentGeometry.from_config(self)  # a ValueError now for sizes that do not fit together

    @property
    def geometry(self) -> StudentGeometry:
        """The sizes the student's modules are built from."""
        return StudentGeometry.from_config(self)

    @classmethod
    def from_geometry(cls, geometry: StudentGeometry, **kwargs) -> PolynerStudentConfig:
        """The config of a student of ``geometry``; ``kwargs`` are the other fields (``id2label``, special ids...).
        Labels given in ``kwargs`` must be ``geometry.labels`` in number."""
        values = geometry.config_values()
        labels = values.pop("num_labels")
        if "id2label" not in kwargs:
            kwargs["num_labels"] = labels
        config = cls(**values, **kwargs)
        if config.num_labels != labels:
            raise ValueError(f"{config.num_labels} labels given for a geometry of {labels}")
        return config

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        """Save config.json with ``auto_map`` and the code file it names (:mod:`polyner.models.hf_interop`), so
        transformers' Auto classes load the directory wherever polyner is installed."""
        from polyner.models.hf_interop import add_auto_map

        super().save_pretrained(save_directory, *args, **kwargs)
        add_auto_map(save_directory)


class PolynerStudentPreTrainedModel(PreTrainedModel):
    """Weight initialisation and config binding shared by the student classes."""

    config_class = PolynerStudentConfig
    base_model_prefix = "student"
    supports_gradient_checkpointing = False

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class PolynerStudentModel(EncoderParts, PolynerStudentPreTrainedModel):
    """The student encoder for ``AutoModel``; ``hidden_states`` holds the embeddings output and every layer's output."""

    def __init__(self, config: PolynerStudentConfig) -> None:
        super().__init__(config)
        self.add_encoder(config.geometry)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word = value

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False, return_dict: bool = True, **_) -> BaseModelOutput:
        encoded = self.encode(input_ids, attention_mask)
        return BaseModelOutput(last_hidden_state=encoded.last_hidden_state,
                               hidden_states=encoded.hidden_states if output_hidden_states else None)


class PolynerStudentForTokenClassification(TokenClassifierParts, PolynerStudentPreTrainedModel):
    """The student with a token-classification head (NER): the module tree of
    :class:`~polyner.models.student_layers.TokenClassifierParts`, with a loss and transformers' outputs."""

    def __init__(self, config: PolynerStudentConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.add_token_classifier(config.geometry)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.student.embeddings.word

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.student.embeddings.word = value

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_hidden_states: bool = False,
                return_dict: bool = True, **_) -> TokenClassifierOutput:
        logits, encoded = self.token_logits(input_ids, attention_mask)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1), ignore_index=-100)
        return TokenClassifierOutput(loss=loss, logits=logits,
                                     hidden_states=encoded.hidden_states if output_hidden_states else None)


def count_parameters(model: nn.Module) -> int:
    """All parameters of a model."""
    return sum(p.numel() for p in model.parameters())


AutoConfig.register(PolynerStudentConfig.model_type, PolynerStudentConfig, exist_ok=True)
AutoModel.register(PolynerStudentConfig, PolynerStudentModel, exist_ok=True)
AutoModelForTokenClassification.register(PolynerStudentConfig, PolynerStudentForTokenClassification, exist_ok=True)
