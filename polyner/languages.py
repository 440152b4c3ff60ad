"""The languages polyner targets."""
from __future__ import annotations

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
