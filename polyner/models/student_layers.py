"""The student's building blocks in plain torch: factorized embeddings, post-LN layers and the encoder loop.

:mod:`polyner.models.student` wraps them in transformers classes (training, saving, Auto* loading);
:mod:`polyner.models.student_runtime` runs the same weights for inference without importing transformers.
A ``config`` here is any object with the student's fields (``vocab_size``, ``hidden_size``, ``rank``, ...).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # or any object with its fields (the runtime passes config.json as a namespace)
    from polyner.models.student import PolynerStudentConfig


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


def encode(embeddings: nn.Module, layers, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
           ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The last hidden state and every hidden state (embeddings output first) of the encoder."""
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    mask = attention_mask[:, None, None, :].bool()
    if torch.onnx.is_in_onnx_export():  # an additive mask: one Add per layer in the graph instead of a Where
        mask = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    hidden = embeddings(input_ids)
    states = [hidden]
    for layer in layers:
        hidden = layer(hidden, mask)
        states.append(hidden)
    return hidden, states
