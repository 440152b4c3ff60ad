"""Shared fixtures: a tiny tokenizer trained on the spot, tiny models built from config, a tiny gold tree."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
GOLD = SHARED / "data" / "gold"

SAMPLE_TEXTS = [
    "Angela Merkel visited Paris with Emmanuel Macron on Monday.",
    "The United Nations met in New York and Geneva last year.",
    "Die Deutsche Bahn fährt von Berlin nach München über Baden-Württemberg.",
    "Владимир Путин встретился с делегацией в Москве.",
    "Михаил Горбачёв родился в Ставропольском крае.",
    "ذهب محمد إلى القاهرة مع وفد من جامعة الدول العربية.",
    "नरेंद्र मोदी ने दिल्ली में भाषण दिया।",
    "习近平在北京会见了联合国秘书长。",
    "東京タワーは東京都港区にある。",
    "ฉันรักกรุงเทพมหานครและเชียงใหม่",
    "Marie Curie a travaillé à l'Université de Paris.",
    "Le président Macron est à Bruxelles 😀 aujourd'hui!",
    "Lionel Messi jugó en Barcelona y en París.",
    "Ο Αλέξης Τσίπρας επισκέφθηκε την Αθήνα.",
    "Kyiv is the capital of Ukraine; Київ — столиця України.",
    "Emoji 👍🏽 and tabs\tand\nnewlines and control \x07 chars.",
] * 3


def _train_tokenizer(folder: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer = trainers.UnigramTrainer(vocab_size=600, special_tokens=specials, unk_token="<unk>", shrinking_factor=0.9)
    tok.train_from_iterator(SAMPLE_TEXTS * 5, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 512, "bos_token": "<s>",
        "cls_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "unk_token": "<unk>",
        "pad_token": "<pad>", "mask_token": "<mask>", "model_input_names": ["input_ids", "attention_mask"]}))
    return folder


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A directory with a tiny Unigram tokenizer (XLM-R special ids: <s>=0 <pad>=1 </s>=2 <unk>=3)."""
    return _train_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


CJK_TEXTS = ["索尼公司和丰田汽车公司在东京宣布合作。", "他曾在北京大学学习", "华为技术有限公司总部位于深圳。"]
CJK_PIECES = ["公司", "东京", "北京", "大学", "汽车", "技术", "有限", "合作", "\u2581他"]  # several characters each


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, tokenizer) -> Path:
    """A tiny BertForTokenClassification saved with the tokenizer, as ``polyner teacher build`` would leave it."""
    folder = tmp_path_factory.mktemp("teacher")
    build_tiny_model(tokenizer, seed=1).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def cjk_tokenizer():
    """A Unigram tokenizer with a fixed vocabulary in which some Chinese words are one piece (CJK_PIECES) and every
    character of CJK_TEXTS is a piece of its own; XLM-R special ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set("".join(CJK_TEXTS)) - {"。"}) + ["。"]
    vocab = [(t, 0.0) for t in ("<s>", "<pad>", "</s>", "<unk>")] + [("\u2581", -2.0)]
    vocab += [(p, -3.0) for p in CJK_PIECES] + [(c, -5.0) for c in chars]
    tok = Tokenizer(models.Unigram(vocab, unk_id=3))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", cls_token="<s>", eos_token="</s>",
                                   sep_token="</s>", unk_token="<unk>", pad_token="<pad>")


def build_tiny_model(tokenizer, seed: int = 0):
    """A 2-layer, 32-wide BERT token classifier with the polyner label maps, random weights."""
    from transformers import BertConfig, BertForTokenClassification

    from polyner.models.io import ner_config_kwargs

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **ner_config_kwargs())
    return BertForTokenClassification(config).eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    """A saved tiny token classifier in HF layout."""
    folder = tmp_path_factory.mktemp("tiny-model")
    build_tiny_model(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


class CapitalRuleModel(torch.nn.Module):
    """A context-free stand-in for a trained model: pieces that start a capitalised word are I-PER (B-PER a
    close second), pieces starting with a digit are B-LOC, everything else O. Runs of capitalised words thus
    form one entity under either decoding, whichever window they are read in. It records the widths of the batches it sees."""

    def __init__(self, tokenizer) -> None:
        super().__init__()
        from polyner.labels import LABEL2ID

        table = torch.full((len(tokenizer),), LABEL2ID["O"], dtype=torch.long)
        for piece, index in tokenizer.get_vocab().items():
            text = piece.lstrip("\u2581")
            if text[:1].isupper():
                table[index] = LABEL2ID["I-PER"]
            elif text[:1].isdigit():
                table[index] = LABEL2ID["B-LOC"]
        self.table = table
        self.bare = tokenizer.get_vocab().get("\u2581", -1)  # a word-initial "▁" piece takes the next piece's label
        self.num_labels = 7
        self.batches: list[list[int]] = []

    def forward(self, input_ids, attention_mask):
        from types import SimpleNamespace

        self.batches.append(attention_mask.sum(dim=1).tolist())
        labels = self.table[input_ids]
        bare = input_ids[:, :-1] == self.bare
        labels[:, :-1][bare] = labels[:, 1:][bare]
        logits = torch.nn.functional.one_hot(labels, 7).float() * 5.0
        # B-PER is the runner-up of I-PER: a decoder that forbids I-PER after O (viterbi) opens the run with B-PER
        logits[..., 1] += 4.0 * (labels == 2)
        return SimpleNamespace(logits=logits)


@pytest.fixture()
def rule_tagger(tokenizer):
    """A Tagger over :class:`CapitalRuleModel` with small windows, so seams are exercised."""
    from polyner.tagging.tagger import Tagger, TaggerConfig

    return Tagger(CapitalRuleModel(tokenizer), tokenizer, TaggerConfig(max_length=16, stride=4, batch_size=4))


def write_gold_tree(root: Path) -> Path:
    """A miniature gold corpus: two sources, three languages, train/dev/test splits."""
    rows = {
        ("src_a", "en"): [("Angela Merkel visited Paris .", "B-PER I-PER O B-LOC O"),
                          ("The United Nations met .", "O B-ORG I-ORG O O")],
        ("src_a", "de"): [("Angela Merkel besuchte Berlin .", "B-PER I-PER O B-LOC O")],
        ("src_b", "ru"): [("Путин приехал в Москву .", "B-PER O O B-LOC O")],
    }
    for (source, lang), sentences in rows.items():
        folder = root / source / lang
        folder.mkdir(parents=True, exist_ok=True)
        body = "\n\n".join("\n".join(f"{w}\t{t}" for w, t in zip(s.split(), tags.split())) for s, tags in sentences)
        for split in ("train", "dev", "test"):
            (folder / f"{split}.iob2").write_text(body + "\n", encoding="utf-8")
    return root


@pytest.fixture()
def gold_tree(tmp_path) -> Path:
    return write_gold_tree(tmp_path / "gold")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test uses its own $POLYNER_HOME, never the user's cache."""
    monkeypatch.setenv("POLYNER_HOME", str(tmp_path_factory.mktemp("polyner-home")))
    torch.set_num_threads(min(2, os.cpu_count() or 1))
