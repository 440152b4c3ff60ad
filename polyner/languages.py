"""The languages polyner targets."""
from __future__ import annotations

import re

TARGET_LANGUAGES: tuple[str, ...] = tuple(
    "af ar bg bn bs ca cs da de el en es et fa fi fr he hi hr hu id it lt lv mk "
    "ms nl no pl pt ro ru sk sl sq sv ta tl tr uk vi".split()
)


def parse_languages(spec: str | list[str] | None) -> list[str]:
    """Split a comma-separated language list ("de,fr") or pass a list through; None means all targets."""
    if spec is None:
        return list(TARGET_LANGUAGES)
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    langs = [s.strip().lower() for s in items if s and s.strip()]
    if not langs:
        raise ValueError("no language given: pass codes such as 'de,fr'")
    return langs


TURKISH_CASING: tuple[str, ...] = ("tr", "az")  # languages whose I and İ lower to ı and i
_TURKISH_ONLY = re.compile("[ıİğĞ]")  # letters no other language we read writes
_SH = re.compile("[şŞ]")
# Romanian writes ş too (the cedilla form of ș): its own letters (Turkish â, î are rare) or its "şi" (and) tell it
_ROMANIAN = re.compile(r"[ăĂâÂîÎţŢșȘțȚ]|(?<!\w)[şŞ][iI](?!\w)")


def written_in_turkish(text: str) -> bool:
    """Whether ``text`` reads as Turkish (or Azerbaijani): it has ı, İ, ğ or Ğ, or it has ş with none of Romanian's
    own letters and no Romanian şi (Dün Ankara'da konuştu: Turkish; Târgu Mureş, BRAŞOV ŞI SIBIU: Romanian). Such a
    text lowers I to ı, and an apostrophe before a name's ending there marks a case ending (Ankara'da)."""
    if _TURKISH_ONLY.search(text):
        return True
    return _SH.search(text) is not None and _ROMANIAN.search(text) is None
