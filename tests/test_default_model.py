"""The shipped default student (slow): an int8 ONNX model in the package, offline, small, with a model card."""
from __future__ import annotations

import json

import pytest

from polyner.loading import DEFAULT_MODEL_DIR

pytestmark = pytest.mark.slow

if not (DEFAULT_MODEL_DIR / "config.json").exists():
    pytest.skip(f"no default model shipped in {DEFAULT_MODEL_DIR} (built by `polyner distill` + `polyner pack`)",
                allow_module_level=True)

SENTENCES = {
    "de": ("Angela Merkel traf sich am Montag in Berlin mit Emmanuel Macron.", ["Angela Merkel", "Emmanuel Macron"]),
    "en": ("Barack Obama visited London with Michelle Obama last week.", ["Barack Obama", "Michelle Obama"]),
    "ru": ("Владимир Путин прилетел в Москву вместе с Сергеем Лавровым.", ["Владимир Путин"]),
    "es": ("Pedro Sánchez viajó a Madrid con Felipe González.", ["Pedro Sánchez", "Felipe González"]),
    "fr": ("Emmanuel Macron a rencontré Olaf Scholz à Paris.", ["Emmanuel Macron", "Olaf Scholz"]),
}


class TestShippedDefault:
    @pytest.fixture(scope="class")
    def tagger(self):
        import polyner

        return polyner.load()

    def test_is_a_small_onnx_model_with_a_model_card(self):
        from polyner.models.onnx_backend import is_int8

        size = sum(f.stat().st_size for f in DEFAULT_MODEL_DIR.iterdir() if f.is_file())
        assert size <= 60e6, f"default model is {size / 1e6:.1f} MB"
        assert (DEFAULT_MODEL_DIR / "model.onnx").exists() and is_int8(DEFAULT_MODEL_DIR)
        assert not (DEFAULT_MODEL_DIR / "model.safetensors").exists()  # read back from model.onnx when needed
        config = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
        assert config["id2label"]["0"] == "O"
        assert config["ner_max_length"] == 64  # distilled on sequences of 64 pieces: read in windows of 64
        card = (DEFAULT_MODEL_DIR / "README.md").read_text()
        for heading in ("Training data and licences", "Quality", "Speed", "languages"):
            assert heading in card
        meta = card.split("---\n")[1]  # Hugging Face metadata: languages, licence, metrics
        for key in ("language:", "license:", "tags:", "datasets:", "model-index:", "value:"):
            assert key in meta

    def test_reads_in_its_training_window(self, tagger):
        assert tagger.config.max_length == 64

    def test_runs_on_onnxruntime(self, tagger):
        assert tagger.classifier.backend == "onnx-int8" and tagger.name == "polyner-default"

    def test_a_text_gets_the_same_entities_alone_and_among_others(self, tagger):
        """int8 activations are quantized per token: what else is in the batch changes nothing."""
        texts = [text for text, _ in SENTENCES.values()] + ["华为技术有限公司总部位于深圳。", "他曾在北京大学学习"]
        together = tagger(texts)
        for text, entities in zip(texts, together):
            (alone,) = tagger([text])
            assert [(e["start"], e["end"], e["label"]) for e in alone] == \
                [(e["start"], e["end"], e["label"]) for e in entities], text

    def test_loads_offline_and_finds_people(self, tagger, monkeypatch):
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        texts = [text for text, _ in SENTENCES.values()]
        found = 0
        for (text, people), entities in zip(SENTENCES.values(), tagger(texts)):
            assert all(text[e["start"]:e["end"]] == e["text"] for e in entities)
            persons = {e["text"] for e in entities if e["label"] == "PER"}
            found += sum(p in persons for p in people)
        assert found >= 0.7 * sum(len(p) for _, p in SENTENCES.values())

    def test_bad_input(self, tagger):
        assert tagger("") == [] and tagger("   ") == []
        with pytest.raises(TypeError):
            tagger(42)
        long_text = "Angela Merkel war in Berlin. " * 2000
        entities = tagger(long_text)
        assert all(long_text[e["start"]:e["end"]] == e["text"] for e in entities)
        people = [e for e in entities if (e["text"], e["label"]) == ("Angela Merkel", "PER")]
        assert len(people) >= 1500  # found in (nearly) every repetition, across the window seams

    @pytest.mark.parametrize("text,entity", [
        ("索尼公司和丰田汽车公司在东京宣布合作。", ("东京", "LOC")),
        ("索尼公司和丰田汽车公司在东京宣布合作。", ("索尼公司", "ORG")),
        ("索尼公司和丰田汽车公司在东京宣布合作。", ("丰田汽车公司", "ORG")),
        ("他曾在北京大学学习", ("北京大学", "ORG")),  # whole since the vocabulary lost its particle pieces (在北京)
        ("华为技术有限公司总部位于深圳。", ("深圳", "LOC")),
        # whole since the vocabulary has the teacher's Han pieces our text lacked (华为 was 华 + 为: 华 + 技术有限公司)
        ("华为技术有限公司总部位于深圳。", ("华为技术有限公司", "ORG")),
        ("习近平在莫斯科会见了普京。", ("普京", "PER"))])  # 普 + 京 was a place, as 北京
    def test_chinese_entities_are_whole_words(self, tagger, text, entity):
        """A run of Han characters is cut where the tokenizer's pieces end: no entity stops inside 东京 or 北京大学
        (they came out as 东京宣 and 北京大 when every character was a word read through a bare "▁" piece)."""
        entities = tagger(text)
        assert all(text[e["start"]:e["end"]] == e["text"] for e in entities)
        assert entity in [(e["text"], e["label"]) for e in entities]
