"""Punctuation inside words: which stays in a word as the corpora we learn from keep it (Hebrew gershayim, apostrophes,
a colon before a case ending, initials' periods, web and e-mail addresses), and where a name ends inside a word
(before a case ending: Ankara'da, EU:n). Used by :func:`polyner.tagging.words.segment_words` and the tagger."""
from __future__ import annotations

import re
import unicodedata

# A web address or an e-mail address is one word (the corpora keep it as one token, and its parts are no names)
# (the characters of RFC 3986 and letters of any script: de.wikipedia.org/wiki/Rührstück; not 。 ، or a zero-width
# space, which end it)
_ADDRESS = re.compile(r"(?:(?:https?|ftp)://|www\.)[\w\-.~:/?#\[\]@!$&'()*+,;=%]+|[\w.+-]{1,64}@[\w-]+(?:\.[\w-]+)+",
                      re.IGNORECASE)
_ADDRESS_TAIL = ".,;:!?'\u2019\u201D\u00BB"  # sentence punctuation after an address, not part of it


def address_end(text: str, i: int) -> int:
    """The end of the web or e-mail address that starts at ``text[i]``, or 0."""
    if i and (text[i - 1].isalnum() or text[i - 1] in "@.+-_"):
        return 0
    match = _ADDRESS.match(text, i)
    if match is None:
        return 0
    end = match.end()
    opened, closed = text.count("(", i, end), text.count(")", i, end)
    while end > i and (text[end - 1] in _ADDRESS_TAIL or text[end - 1] == ")" and opened < closed):
        closed -= text[end - 1] == ")"
        end -= 1
    return end


# Punctuation that corpora keep inside a word (see :func:`inner_punctuation`).
# Hebrew writes acronyms with gershayim before their last letter (צה"ל, ארה"ב, יו"ר; often typed as ") and foreign
# sounds with a geresh after ג ז צ ץ ת (ג'ורג', ז'נבה, צ'רצ'יל; often typed as ')
_GERSHAYIM = {'"', "\u05F4", "\u201D"}
_GERESH = {"'", "\u05F3", "\u2019"}
_GERESH_LETTERS = set("גזצץת")
_APOSTROPHES = {"'", "\u2019"}
# Latin words that elide before an apostrophe (French l', d', qu', Italian dell', nell', quell'): they stay words of
# their own, and so do the articles and prepositions that start a sentence so (L'Europe, Nell'Unione; not D'Angelo)
_ELIDED = re.compile(r"[a-z]{1,5}|L|Qu|Dell|Nell|All|Dall|Sull|Quell|Un")
_SUFFIX = re.compile(r"[^\W\d_]+")
_INITIALS = re.compile(r"(?:[^\W\d_]\.)*[^\W\d_]")  # A, U.S, J.R.R (before their last period)
# scripts without letter case that end sentences with a danda, so that a period after a syllable of one or two
# letters is an initial (सी. for C., এ.); not Tamil, whose sentences end with a period
_INDIC = (0x0900, 0x09FF)


# a case ending after a colon (Finnish EU:n, Swedish FN:s) or, in Turkish, after an apostrophe (Ankara'da,
# Erdoğan'ın): part of the word, not of the name; only Latin (a Ukrainian apostrophe is inside a name: Дар'я)
_COLON_ENDING = re.compile(r"(?<=[0-9A-Za-z\u00C0-\u024F\u0300-\u036F]):[a-z\u00DF-\u00FF\u0100-\u024F]{1,7}$")
_APOSTROPHE_ENDING = re.compile(r"(?<=[0-9A-Za-z\u00C0-\u024F\u0300-\u036F])['\u2019][a-z\u00DF-\u00FF\u0100-\u024F]{1,7}$")


def name_end(word: str, turkish: bool = False) -> int:
    """Where the name in ``word`` ends: before a Latin case ending joined by a colon (EU:n: EU) or, in a ``turkish``
    text, by an apostrophe (Ankara'da: Ankara, İstanbul'daki: İstanbul), when what comes before has a capital or a
    digit; else its length (O'Brien, Sana'a, Hawai'i: the whole word)."""
    match = _COLON_ENDING.search(word) or (_APOSTROPHE_ENDING.search(word) if turkish else None)
    if match is None or not any(c.isupper() or c.isdigit() for c in word[:match.start()]):
        return len(word)
    return match.start()


def _is_hebrew_letter(ch: str) -> bool:
    return "\u05D0" <= ch <= "\u05EA"


def inner_punctuation(text: str, start: int, j: int) -> int:
    """How many characters from ``text[j]`` (punctuation right after the letters ``text[start:j]``) stay in the word,
    as the corpora we learn from keep them (0: none, the punctuation is a word of its own):

    * a Hebrew acronym's gershayim and the one letter after it (צה"ל), a geresh after ג ז צ ץ ת (ג'ורג');
    * an apostrophe between letters (O'Brien, Ankara'da, В'ячеслав, 1990'da), but not after a Latin elided word
      (l'Europe, dell'Italia) nor before an English possessive s (Obama's);
    * a colon before the case ending of an abbreviation or number (Finnish EU:n, YK:lle, Swedish FN:s);
    * the period of an initial or a dotted abbreviation (A. Merkel, U.S., B.T.; Hindi सी.).
    """
    ch, word = text[j], text[start:j]
    base = j - 1  # the letter before, under any marks on it (a Hebrew point, a decomposed Turkish ğ)
    while base > start and unicodedata.category(text[base])[0] == "M":
        base -= 1
    before = text[base]
    after = text[j + 1] if j + 1 < len(text) else ""
    if _is_hebrew_letter(before):
        if ch in _GERSHAYIM and _is_hebrew_letter(after) and not (j + 2 < len(text) and _is_hebrew_letter(text[j + 2])):
            return 2
        return 1 if ch in _GERESH and before in _GERESH_LETTERS else 0
    suffix_match = _SUFFIX.match(text, j + 1)  # None where the next character is no letter of a word (ⓐ)
    suffix = suffix_match.group() if suffix_match else ""
    if ch in _APOSTROPHES and before.isalnum() and suffix:
        if _ELIDED.fullmatch(word) or suffix == "s" and before.isalpha() and after.isascii():
            return 0
        return 1 + len(suffix)
    if ch == ":" and (word.isdigit() or word.isupper() and len(word) <= 5) and suffix.islower() and len(suffix) <= 4:
        return 1 + len(suffix)
    if ch == "." and len(word) <= 15 and _INITIALS.fullmatch(word) and word.replace(".", "").isupper() and \
            ("." in word or text[j + 1:j + 2].isalpha() and text[j + 2:j + 3] == "."
             or text[j + 1:j + 2] == " " and text[j + 2:j + 3].isupper()):
        return 1  # U.S. anywhere; a single letter before a capitalised word (A. Merkel), not iPhone X. at the end
    if ch == "." and len(word) <= 6 and all(_INDIC[0] <= ord(c) <= _INDIC[1] for c in word) and \
            sum(unicodedata.category(c)[0] == "L" for c in word) <= 2 and not any(c.isdigit() for c in word) and \
            text[j + 1:j + 2] == " " and text[j + 2:j + 3].isalpha():
        return 1
    return 0
