"""Screenshot of the demo page tagging real text with a real model, for docs/serving.md::

    python benchmarks/demo_screenshot.py                       # the shipped student -> docs/demo.png
    python benchmarks/demo_screenshot.py --model runs/student --out /tmp/demo.png

Serves the model on a free loopback port (``polyner serve``'s server, in this process), opens ``/`` in headless
Chromium (tests/headless.py), types the sample text, presses Ctrl+Enter and saves the page as PNG. CJK text
needs a CJK font on the machine (Debian: fonts-wqy-microhei) or it is drawn as boxes.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

SAMPLE = ("Angela Merkel besuchte gestern Paris und traf dort Emmanuel Macron.\n"
          "ذهب محمد بن سلمان إلى القاهرة للقاء عبد الفتاح السيسي.\n"
          "习近平在北京会见了联合国秘书长古特雷斯。\n"
          "Lionel Messi jugó muchos años en el FC Barcelona antes de mudarse a Miami con su familia.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model directory or name (default: the shipped student)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "demo.png")
    parser.add_argument("--width", type=int, default=1000)
    args = parser.parse_args(argv)

    import polyner
    from headless import Chromium, find_chromium
    from polyner.serve.app import create_app
    from polyner.serve.server import build_server
    from polyner.serve.settings import ServeSettings

    binary = find_chromium()
    if binary is None:
        print("error: no Chromium found (apt-get install chromium, or set POLYNER_CHROMIUM)", file=sys.stderr)
        return 1
    settings = ServeSettings(model=args.model)
    server = build_server(create_app(settings, tagger=polyner.load(args.model)), settings, "127.0.0.1", 0, "warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            print("error: the server did not start", file=sys.stderr)
            return 1
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with Chromium(binary, width=args.width, height=900) as page:
            page.open(f"http://127.0.0.1:{port}/")
            page.wait_for("document.getElementById('language').options.length > 1")
            page.evaluate("(() => { const t = document.getElementById('text'); t.focus(); t.select(); })()")
            page.call("Input.insertText", {"text": SAMPLE})
            page.press("Enter", "Enter", 13, modifiers=2)
            page.wait_for("document.querySelectorAll('#result mark').length > 0")
            page.evaluate("document.activeElement.blur()")
            args.out.write_bytes(page.screenshot())
            found = page.evaluate("document.getElementById('status').textContent")
    finally:
        server.should_exit = True
        thread.join(20)
    print(f"{args.out} ({found})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
