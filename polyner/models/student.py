"""The polyner student: a small post-LN transformer encoder with factorized word embeddings.

Word embeddings are ``vocab x rank`` followed by a ``rank -> hidden`` projection (XtremeDistil's
embedding factorization); layers are standard BERT layers written out here so that export and
initialisation from a teacher do not depend on library internals. The classes register with the
transformers Auto* factories when this module is imported, so ``AutoModelForTokenClassification.from_pretrained(dir)``
works after ``import polyner.models.student``; a saved student also carries ``auto_map`` and a code file
(:mod:`polyner.models.hf_interop`), so ``from_pretrained(dir, trust_remote_code=True)`` works without it.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForTokenClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, TokenClassifierOutput

from polyner.models.student_layers import StudentEmbeddings, StudentLayer, encode

__all__ = ["PolynerStudentConfig", "PolynerStudentModel", "PolynerStudentForTokenClassification", "StudentEmbeddings",
           "StudentLayer", "count_parameters"]


class PolynerStudentConfig(PretrainedConfig):
    """Geometry of a student; ``embedding_rank`` 0 means unfactorized (rank = hidden)."""

    model_type = "polyner_student"

    def __init__(self, vocab_size: int = 250002, hidden_size: int = 256, num_hidden_layers: int = 4,
                 num_attention_heads: int = 4, intermediate_size: int = 1024, embedding_rank: int = 128,
                 hidden_act: str = "gelu", max_position_embeddings: int = 512, layer_norm_eps: float = 1e-12,
                 hidden_dropout_prob: float = 0.1, attention_probs_dropout_prob: float = 0.1,
                 initializer_range: float = 0.02, pad_token_id: int = 1, bos_token_id: int = 0,
                 eos_token_id: int = 2, **kwargs) -> None:
        super().__init__(pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id, **kwargs)
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_attention_heads {num_attention_heads}")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.embedding_rank = embedding_rank
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.layer_norm_eps = layer_norm_eps
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.initializer_range = initializer_range

    @property
    def rank(self) -> int:
        """The width of the stored word-embedding rows."""
        return self.embedding_rank or self.hidden_size

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


class PolynerStudentModel(PolynerStudentPreTrainedModel):
    """The student encoder; ``hidden_states`` holds the embeddings output and every layer's output."""

    def __init__(self, config: PolynerStudentConfig) -> None:
        super().__init__(config)
        self.embeddings = StudentEmbeddings(config)
        self.layers = nn.ModuleList(StudentLayer(config) for _ in range(config.num_hidden_layers))
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word = value

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False, return_dict: bool = True, **_) -> BaseModelOutput:
        hidden, states = encode(self.embeddings, self.layers, input_ids, attention_mask)
        return BaseModelOutput(last_hidden_state=hidden, hidden_states=tuple(states) if output_hidden_states else None)


class PolynerStudentForTokenClassification(PolynerStudentPreTrainedModel):
    """The student with a token-classification head (NER)."""

    def __init__(self, config: PolynerStudentConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.student = PolynerStudentModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.student.get_input_embeddings()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_hidden_states: bool = False,
                return_dict: bool = True, **_) -> TokenClassifierOutput:
        encoded = self.student(input_ids, attention_mask, output_hidden_states=output_hidden_states)
        logits = self.classifier(self.dropout(encoded.last_hidden_state))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1), ignore_index=-100)
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=encoded.hidden_states)


def count_parameters(model: nn.Module) -> int:
    """All parameters of a model."""
    return sum(p.numel() for p in model.parameters())


AutoConfig.register(PolynerStudentConfig.model_type, PolynerStudentConfig, exist_ok=True)
AutoModel.register(PolynerStudentConfig, PolynerStudentModel, exist_ok=True)
AutoModelForTokenClassification.register(PolynerStudentConfig, PolynerStudentForTokenClassification, exist_ok=True)
