"""The language of a text: langdetect (seeded, so answers repeat) with a script-based fallback."""
from __future__ import annotations

import unicodedata
from collections import Counter

from polyner.languages import TARGET_LANGUAGES

# Scripts that name one language, for texts langdetect has no profile for (or too short to tell).
SCRIPT_LANGUAGE = {
    "HANGUL": "ko", "HIRAGANA": "ja", "KATAKANA": "ja", "CJK": "zh", "THAI": "th", "GREEK": "el",
    "HEBREW": "he", "ARABIC": "ar", "DEVANAGARI": "hi", "BENGALI": "bn", "TAMIL": "ta", "TELUGU": "te",
    "GUJARATI": "gu", "GURMUKHI": "pa", "KANNADA": "kn", "MALAYALAM": "ml", "SINHALA": "si", "GEORGIAN": "ka",
    "ARMENIAN": "hy", "ETHIOPIC": "am", "KHMER": "km", "LAO": "lo", "MYANMAR": "my", "CYRILLIC": "ru",
    "LATIN": "en",
}
KNOWN_LANGUAGES = frozenset(TARGET_LANGUAGES) | frozenset(SCRIPT_LANGUAGE.values()) | {
    "zh", "ja", "ko", "am", "ha", "ig", "sw", "yo", "ne", "nn", "sr", "ceb", "so", "cy", "ga", "eu", "gl", "is", "mt"}


def dominant_script(text: str) -> str | None:
    """The Unicode script most letters of ``text`` belong to (first word of the character name)."""
    scripts: Counter[str] = Counter()
    for ch in text:
        if ch.isalpha():
            name = unicodedata.name(ch, "")
            scripts["CJK" if name.startswith("CJK") else name.split(" ")[0]] += 1
    if not scripts:
        return None
    if scripts.get("HIRAGANA") or scripts.get("KATAKANA"):
        return "HIRAGANA"  # kana anywhere means Japanese, even among many Han characters
    return scripts.most_common(1)[0][0]


#: Fewer letters than this in a script many of our languages share (Latin, Cyrillic) is no language: langdetect is
#: sure and wrong on short text ("Angela Merkel in Paris": id, "Petr Fiala jednal v Bruselu.": sl).
MIN_LETTERS = 30


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of ``text`` (langdetect, seeded), the script's language where langdetect cannot tell,
    or None for text without letters or too short to tell (under :data:`MIN_LETTERS` in Latin or Cyrillic)."""
    script = dominant_script(text)
    if script is None:
        return None
    if script in SCRIPT_LANGUAGE and script not in ("LATIN", "CYRILLIC", "ARABIC", "CJK", "DEVANAGARI"):
        return SCRIPT_LANGUAGE[script]
    if script in ("LATIN", "CYRILLIC") and sum(ch.isalpha() for ch in text) < MIN_LETTERS:
        return None
    try:
        from langdetect import DetectorFactory, LangDetectException, detect

        DetectorFactory.seed = 0
        code = detect(text)
    except LangDetectException:
        return SCRIPT_LANGUAGE.get(script)
    code = {"zh-cn": "zh", "zh-tw": "zh"}.get(code, code)
    return code


def check_language(code: str) -> str:
    """Normalise a caller-given language code; raise ValueError naming it when unknown."""
    if not isinstance(code, str):
        raise TypeError(f"language must be a str, not {type(code).__name__}")
    normalised = code.strip().lower().replace("_", "-").split("-")[0]
    if normalised not in KNOWN_LANGUAGES:
        raise ValueError(f"unknown language {code!r}: use an ISO 639-1 code such as 'de' "
                         f"(polyner targets {' '.join(TARGET_LANGUAGES)})")
    return normalised
