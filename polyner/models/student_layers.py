"""The student's one module tree, in plain torch: factorized embeddings, post-LN layers, the encoder and the
token classifier, all built from a :class:`~polyner.models.student_geometry.StudentGeometry`.

The names of the saved weights come from here alone: ``student.embeddings.{word,projection,position,norm}``,
``student.layers.N.{query,key,value,attention_output,attention_norm,intermediate,output,output_norm}`` and
``classifier``. The token classifiers (the transformers-free runtime in :mod:`polyner.models.student_runtime`, the
transformers class in :mod:`polyner.models.student`) hold these parts through the mixin :class:`TokenClassifierParts`
and add only their outputs; the encoder alone (transformers' ``AutoModel``) through :class:`EncoderParts`, and the
GLUE/SQuAD heads of :mod:`polyner.tasks.heads` hold a :class:`StudentEncoder`: every path builds, names and runs
the same modules.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from polyner.models.student_geometry import StudentGeometry


class StudentEmbeddings(nn.Module):
    """Factorized word embeddings plus absolute positions, then LayerNorm."""

    def __init__(self, geometry: StudentGeometry) -> None:
        super().__init__()
        self.word = nn.Embedding(geometry.vocab, geometry.word_width, padding_idx=geometry.pad_id)
        self.projection = nn.Linear(geometry.word_width, geometry.hidden, bias=False) if geometry.rank else None
        self.position = nn.Embedding(geometry.max_positions, geometry.hidden)
        self.norm = nn.LayerNorm(geometry.hidden, eps=geometry.layer_norm_eps)
        self.dropout = nn.Dropout(geometry.dropout)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        words = self.word(input_ids)
        if self.projection is not None:
            words = self.projection(words)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.dropout(self.norm(words + self.position(positions)[None]))


class StudentLayer(nn.Module):
    """One post-LN transformer layer (self-attention, GELU feed-forward), laid out like BERT's."""

    def __init__(self, geometry: StudentGeometry) -> None:
        super().__init__()
        h = geometry.hidden
        self.heads = geometry.heads
        self.query, self.key, self.value = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h)
        self.attention_output = nn.Linear(h, h)
        self.attention_norm = nn.LayerNorm(h, eps=geometry.layer_norm_eps)
        self.intermediate = nn.Linear(h, geometry.ffn)
        self.output = nn.Linear(geometry.ffn, h)
        self.output_norm = nn.LayerNorm(h, eps=geometry.layer_norm_eps)
        self.dropout = nn.Dropout(geometry.dropout)
        self.attention_dropout = geometry.attention_dropout

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


@dataclass
class EncoderOutput:
    """The encoder's last hidden state and every hidden state, the embeddings output first (as transformers names
    them in ``BaseModelOutput``)."""

    last_hidden_state: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...]


class EncoderParts:
    """The encoder's children (``embeddings``, ``layers``) and its computation, for a torch module to mix in."""

    embeddings: StudentEmbeddings
    layers: nn.ModuleList

    def add_encoder(self, geometry: StudentGeometry) -> None:
        """Register the encoder's children on this module."""
        self.embeddings = StudentEmbeddings(geometry)
        self.layers = nn.ModuleList(StudentLayer(geometry) for _ in range(geometry.layers))

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> EncoderOutput:
        """Every hidden state of a batch (``attention_mask`` 1 = a real token; None = all real)."""
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
        return EncoderOutput(last_hidden_state=hidden, hidden_states=tuple(states))


class StudentEncoder(EncoderParts, nn.Module):
    """The student encoder: ``encoder(input_ids, attention_mask)`` gives an :class:`EncoderOutput`."""

    def __init__(self, geometry: StudentGeometry) -> None:
        super().__init__()
        self.add_encoder(geometry)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> EncoderOutput:
        return self.encode(input_ids, attention_mask)


class TokenClassifierParts:
    """The token classifier's children (``student``: the encoder, ``dropout``, ``classifier``) and its computation,
    for a torch module to mix in."""

    student: StudentEncoder
    dropout: nn.Dropout
    classifier: nn.Linear

    def add_token_classifier(self, geometry: StudentGeometry) -> None:
        """Register the token classifier's children on this module."""
        self.student = StudentEncoder(geometry)
        self.dropout = nn.Dropout(geometry.dropout)
        self.classifier = nn.Linear(geometry.hidden, geometry.labels)

    def token_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, EncoderOutput]:
        """Token logits ``[batch, length, labels]`` and the encoder's output they came from."""
        encoded = self.student(input_ids, attention_mask)
        return self.classifier(self.dropout(encoded.last_hidden_state)), encoded


def group_parameters(model: TokenClassifierParts) -> dict[str, list[nn.Parameter]]:
    """The parameters of a token classifier by the groups distillation freezes and unfreezes: "embeddings",
    "layer0" (bottom) to "layer{n-1}" (top) and "classifier"."""
    groups = {"embeddings": list(model.student.embeddings.parameters())}
    groups.update({f"layer{i}": list(layer.parameters()) for i, layer in enumerate(model.student.layers)})
    groups["classifier"] = list(model.classifier.parameters())
    return groups
