"""The polyner student: a small post-LN transformer encoder with factorized word embeddings.

Word embeddings are ``vocab x rank`` followed by a ``rank -> hidden`` projection (XtremeDistil's
embedding factorization); layers are standard BERT layers written out here so that export and
initialisation from a teacher do not depend on library internals. The classes register with the
transformers Auto* factories, so ``AutoModelForTokenClassification.from_pretrained(dir)`` works
once ``polyner`` is imported.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForTokenClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, TokenClassifierOutput


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


class StudentEmbeddings(nn.Module):
    """Factorized word embeddings plus absolute positions, then LayerNorm."""

    def __init__(self, config: PolynerStudentConfig) -> None:
        super().__init__()
        self.word = nn.Embedding(config.vocab_size, config.rank, padding_idx=config.pad_token_id)
        self.projection = nn.Linear(config.rank, config.hidden_size, bias=False) if config.embedding_rank else None
        self.position = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        words = self.word(input_ids)
        if self.projection is not None:
            words = self.projection(words)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.dropout(self.norm(words + self.position(positions)[None]))


class StudentLayer(nn.Module):
    """One post-LN transformer layer (self-attention, GELU feed-forward), laid out like BERT's."""

    def __init__(self, config: PolynerStudentConfig) -> None:
        super().__init__()
        h = config.hidden_size
        self.heads = config.num_attention_heads
        self.query, self.key, self.value = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h)
        self.attention_output = nn.Linear(h, h)
        self.attention_norm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.intermediate = nn.Linear(h, config.intermediate_size)
        self.output = nn.Linear(config.intermediate_size, h)
        self.output_norm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.attention_dropout = config.attention_probs_dropout_prob

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``mask``: boolean ``[batch, 1, 1, length]`` (True = attend); additive float while exporting to ONNX."""
        batch, length, width = hidden.shape

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

        query, key, value = heads(self.query(hidden)), heads(self.key(hidden)), heads(self.value(hidden))
        if torch.onnx.is_in_onnx_export():  # written out: ONNX Runtime runs this faster than the exported SDPA
            scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(width // self.heads)
            scores = scores + mask  # additive (0 / very negative), built once per forward: no Where per layer
            context = torch.matmul(torch.softmax(scores, dim=-1), value)
        else:
            context = nn.functional.scaled_dot_product_attention(
                query, key, value, attn_mask=mask, dropout_p=self.attention_dropout if self.training else 0.0)
        context = context.transpose(1, 2).reshape(batch, length, width)
        hidden = self.attention_norm(hidden + self.dropout(self.attention_output(context)))
        inner = nn.functional.gelu(self.intermediate(hidden))
        return self.output_norm(hidden + self.dropout(self.output(inner)))


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
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        mask = attention_mask[:, None, None, :].bool()
        if torch.onnx.is_in_onnx_export():  # an additive mask: one Add per layer in the graph instead of a Where
            mask = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        hidden = self.embeddings(input_ids)
        states = [hidden]
        for layer in self.layers:
            hidden = layer(hidden, mask)
            states.append(hidden)
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
