"""The demo page served at ``/``: one static HTML file with its CSS and script inline (no build step, no
external assets), sent with a Content-Security-Policy that allows exactly that inline script and style."""
from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

PAGE = Path(__file__).resolve().parent / "static" / "demo.html"


def _hashes(html: str, tag: str) -> str:
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
    return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks)


@dataclass(frozen=True)
class DemoPage:
    """The page and the headers it is served with."""

    html: str
    headers: dict[str, str]

    @classmethod
    def load(cls, path: Path = PAGE) -> "DemoPage":
        html = path.read_text(encoding="utf-8")
        policy = (f"default-src 'none'; script-src {_hashes(html, 'script')}; style-src {_hashes(html, 'style')}; "
                  "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
        return cls(html, {"Content-Security-Policy": policy, "X-Content-Type-Options": "nosniff",
                          "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"})
