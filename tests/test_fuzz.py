"""Fuzz (issue 23): one seeded set of hostile texts through the Python API, the HTTP endpoint and tag-corpus.

Unicode categories of many scripts, combining marks, astral characters, lone and reversed surrogates, control,
format and bidi characters, Unicode line breaks, noncharacters, empty and huge texts. Whatever the input: no
crash, no 500, offsets exact (``text[start:end] == entity["text"]``), and the same entities on every surface.
A fixed generator (not hypothesis): the set is the same on every run, so a failure can be replayed.
"""
from __future__ import annotations

import json
import random
import re

import pytest
from fastapi.testclient import TestClient

import polyner
from polyner.corpus import TagCorpusConfig, tag_corpus
from polyner.serve.app import create_app
from polyner.serve.settings import ServeSettings
from polyner.textcheck import lone_surrogate

SEED = 23
MAX_CHARS = 10_000  # the service's max_chars_per_text (its default); longer texts must be a 413


def _span(first: int, last: int) -> list[str]:
    return [chr(c) for c in range(first, last + 1)]


POOLS: dict[str, list[str]] = {
    "latin": list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") + _span(0xC0, 0xFF) + ["İ", "ß", "ﬁ"],
    "cyrillic_greek": _span(0x0410, 0x044F) + _span(0x0391, 0x03C9),
    "arabic_hebrew": _span(0x0621, 0x064A) + _span(0x05D0, 0x05EA) + _span(0x0660, 0x0669),
    "indic_thai": _span(0x0905, 0x0939) + ["\u093f", "\u094d", "\u0902"] + _span(0x0E01, 0x0E30) + ["\u0e31", "\u0e47"],
    "cjk": _span(0x4E00, 0x4E40) + _span(0x3041, 0x3060) + _span(0xAC00, 0xAC20) + ["\U00020000", "\U0002A6D6"],
    "marks": _span(0x0300, 0x0310) + ["\u064b", "\u0651", "\u20dd"],
    "digits_punct": list("0123456789.,;:!?-‐—'\"()[]{}«»@#%&*/\\|~_+=<>") + ["™", "∑", "€", "\u2026"],
    "spaces": [" ", "\t", "\n", "\r", "\u00a0", "\u2002", "\u2009", "\u3000", "\x0b", "\x0c"],
    "line_breaks": ["\x85", "\u2028", "\u2029", "\x1c", "\x1e"],
    "controls": _span(0x00, 0x08) + _span(0x0E, 0x1F) + ["\x7f", "\x80", "\x9f"],
    "format_bidi": _span(0x200B, 0x200F) + _span(0x202A, 0x202E) + _span(0x2066, 0x2069)
    + ["\u061c", "\ufeff", "\u2060", "\u00ad", "\u034f"],
    "surrogates": ["\ud800", "\udbff", "\udc00", "\udfff", "\ude00\ud83d"],
    "private_nonchars": ["\ue000", "\uf8ff", "\ufffe", "\uffff", "\ufffd", "\U000f0000", "\U0010ffff", "\ufdd0"],
    "emoji": ["😀", "👍🏽", "👨\u200d👩\u200d👧", "🇩🇪", "1\ufe0f\u20e3", "\U0001f3fb"],
}
WORDS = ["Angela Merkel", "Paris", "New York", "Берлин", "Владимир Путин", "القاهرة", "محمد", "北京", "習近平",
         "İstanbul", "São Paulo", "Baden-Württemberg", "O'Brien", "e\u0301cole", "Ⅻ", "ＡＢＣ", "🇩🇪 Deutschland"]


def fuzz_texts(seed: int = SEED, count: int = 90) -> list[str]:
    """The fuzz set: fixed edge cases, then ``count`` random mixtures of the pools and of real names."""
    rng = random.Random(seed)
    pools = list(POOLS)
    texts = ["", " ", "\n\n\t", "\x00", "\ud800", "Angela\ud800Merkel besuchte Paris.", "\u202eAngela Merkel\u202c",
             "\u2067محمد\u2069 met Angela Merkel in 北京", "Paris\u2028Berlin\x85London\u2029Rome",
             "\ufeffAngela Merkel", "A\u0301\u0302\u0303" * 50, "\U00020000Angela Merkel\U0002A6D6 Paris",
             "-" * 1000, "Merkel-" * 200 + "Merkel", "Merkel" + "x" * 2000, " ".join(["Paris"] * 1000),
             ("\u2003" * MAX_CHARS + " Angela Merkel" * 72)[-MAX_CHARS - 1:]]  # huge: one character over the limit
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 12)):
            if rng.random() < 0.3:
                parts.append(rng.choice(WORDS))
            else:
                pool = POOLS[rng.choice(pools)]
                parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 12))))
            parts.append(rng.choice([" ", "", "\n", ", ", "\u200b"]))
        texts.append("".join(parts))
    huge = " ".join(texts[-count:]) * 3  # huge and at the limit: the random texts again, as one text
    texts.append(re.sub("[\ud800-\udfff]", "x", huge)[:MAX_CHARS])
    # a high surrogate right before a low one would be read back from JSON as one (valid) character
    texts = [re.sub("([\ud800-\udbff])(?=[\udc00-\udfff])", "\\1 ", t) for t in texts]
    return texts


TEXTS = fuzz_texts()


def check_entities(text: str, entities: list[dict]) -> None:
    """Offsets exact, in order, not overlapping, no whitespace at either end, labels and scores in range."""
    end = 0
    for entity in entities:
        assert set(entity) == {"text", "label", "start", "end", "score"}
        assert end <= entity["start"] < entity["end"] <= len(text), (entity, len(text))
        assert text[entity["start"]:entity["end"]] == entity["text"]
        assert not entity["text"][0].isspace() and not entity["text"][-1].isspace()
        assert entity["label"] in ("PER", "ORG", "LOC") and 0.0 <= entity["score"] <= 1.0
        end = entity["end"]


@pytest.fixture(scope="module")
def tiny_tagger(tiny_model_dir):
    return polyner.load(tiny_model_dir)


VALID = [i for i, t in enumerate(TEXTS) if lone_surrogate(t) is None]  # the rest: lone surrogates, refused everywhere


@pytest.fixture(scope="module")
def api_results(tiny_tagger) -> dict[int, list[dict]]:
    """The Python API's entities for every valid text, with the tiny model (the reference for the other surfaces)."""
    return dict(zip(VALID, tiny_tagger([TEXTS[i] for i in VALID])))


def test_the_set_covers_what_it_claims():
    joined = "".join(TEXTS)
    for pool in ("surrogates", "controls", "format_bidi", "line_breaks", "marks", "emoji", "private_nonchars"):
        assert any(ch in joined for ch in POOLS[pool]), pool
    assert "" in TEXTS and max(map(len, TEXTS)) == MAX_CHARS + 1 and MAX_CHARS in map(len, TEXTS)
    assert sum(lone_surrogate(t) is not None for t in TEXTS) >= 5


def test_python_api(api_results, rule_tagger, tiny_tagger):
    """No exception on any valid text, offsets exact; the rule tagger (many entities) and the tiny model alike. A text
    with a lone surrogate is a ValueError naming it, as the CLI and the service refuse it."""
    assert len(api_results) == len(VALID) > len(TEXTS) // 2
    for i, entities in api_results.items():
        check_entities(TEXTS[i], entities)
    valid = [TEXTS[i] for i in VALID]
    ruled = rule_tagger(valid)
    assert sum(map(len, ruled)) > 100  # the offsets of many entities were checked
    for text, entities in zip(valid, ruled):
        check_entities(text, entities)
    assert [rule_tagger(t) for t in valid[:40]] == ruled[:40]  # one at a time: the same
    for i in set(range(len(TEXTS))) - set(VALID):
        with pytest.raises(ValueError, match=r"texts\[1\] is not valid Unicode: a lone surrogate"):
            tiny_tagger(["Paris", TEXTS[i]])


def test_http_endpoint(tiny_tagger, api_results):
    """Every text over HTTP: 200 with the Python API's entities, 422 for invalid Unicode, 413 over the limit;
    never a 500. Valid texts go eight to a request, as raw UTF-8 and \\u-escaped by turns."""
    settings = ServeSettings(max_chars_per_text=MAX_CHARS, max_chars_per_request=8 * MAX_CHARS)
    with TestClient(create_app(settings, tagger=tiny_tagger), raise_server_exceptions=False) as client:
        valid = [i for i, t in enumerate(TEXTS) if lone_surrogate(t) is None and len(t) <= MAX_CHARS]
        for n, first in enumerate(range(0, len(valid), 8)):
            group = valid[first:first + 8]
            body = json.dumps({"texts": [TEXTS[i] for i in group]}, ensure_ascii=n % 2 == 1).encode("utf-8")
            response = client.post("/v1/ner", content=body, headers={"Content-Type": "application/json"})
            assert response.status_code == 200, response.text[:300]
            for i, result in zip(group, response.json()["results"]):
                check_entities(TEXTS[i], result["entities"])
                assert result["entities"] == api_results[i]
        for i, text in enumerate(TEXTS):
            if i in valid:
                continue
            response = client.post("/v1/ner", content=json.dumps({"texts": [text]}).encode("ascii"),
                                   headers={"Content-Type": "application/json"})
            expected = (413, "text_too_long") if len(text) > MAX_CHARS else (422, "invalid_text")
            assert (response.status_code, response.json()["error"]["code"]) == expected, response.text[:300]
        assert client.get("/health").status_code == 200


def test_tag_corpus(tmp_path, tiny_model_dir, api_results):
    """Every text as a record: the run completes; each record has the Python API's entities, or (lone
    surrogates only) an error naming the character; no temporary file is left."""
    source = tmp_path / "fuzz.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(TEXTS)), encoding="ascii")
    summary = tag_corpus(TagCorpusConfig(input=str(source), output=str(tmp_path / "out"), model=str(tiny_model_dir),
                                         shard_size=25, progress=False))
    invalid = {i for i, t in enumerate(TEXTS) if lone_surrogate(t) is not None}
    assert summary.records == len(TEXTS) and summary.errors == len(invalid)
    assert not list((tmp_path / "out").glob("*.tmp"))
    records = []
    for part in sorted((tmp_path / "out").glob("part-*.jsonl")):
        records += [json.loads(line) for line in part.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in records] == list(range(len(TEXTS)))
    for i, record in enumerate(records):
        if i in invalid:
            assert "lone surrogate" in record["error"] and record["entities"] is None
            continue
        assert record["error"] is None and record["text"] == TEXTS[i]
        check_entities(TEXTS[i], record["entities"])
        assert record["entities"] == api_results[i]
