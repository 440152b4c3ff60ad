"""Text that has to survive being written: whether a Python string is valid Unicode (a lone surrogate, from a
JSON escape or from ``surrogateescape``-decoded bytes, is not, and cannot be written as UTF-8), and JSON lines
that stay one line."""
from __future__ import annotations

import re

_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate(text: str) -> str | None:
    """None when ``text`` is valid Unicode, else what is wrong, e.g. ``"a lone surrogate U+D800 at character 6"``.

    Every surrogate in a ``str`` is a lone one: a valid pair is decoded into one character.
    """
    found = _SURROGATE.search(text)
    if found is None:
        return None
    return f"a lone surrogate U+{ord(found.group()):04X} at character {found.start()}"


_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_LINE_BREAK = re.compile("[\x85\u2028\u2029]")


def one_json_line(json_text: str) -> str:
    """``json_text`` (from ``json.dumps(..., ensure_ascii=False)``) with the line breaks JSON leaves unescaped
    (U+0085, U+2028, U+2029) escaped, so a JSON line stays one line for readers that split at every Unicode
    line break, such as Python's ``str.splitlines``. The JSON value is unchanged."""
    return _LINE_BREAK.sub(lambda m: _LINE_BREAKS[m.group()], json_text)
