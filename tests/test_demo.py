"""The demo page at ``/`` in a real headless Chromium (issue 23): it tags, highlights each entity inline with its
label and score, filters labels, reads right-to-left and CJK lines correctly, works from the keyboard, meets
contrast, asks for a key when the service has one, and runs under its own Content-Security-Policy.

Skipped, with the reason, when no Chromium is installed (``apt-get install chromium``; .ci/run does).
"""
from __future__ import annotations

import pytest
import torch

from headless import Chromium, find_chromium
from live_server import live_server
from polyner.serve.settings import ServeSettings
from polyner.models.classifier import TorchClassifier

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium or Chrome found (apt-get install chromium, "
                                                         "or set POLYNER_CHROMIUM): the demo page needs a real browser")
NAMES = {"Angela Merkel": "PER", "Paris": "LOC", "محمد": "PER", "القاهرة": "LOC", "习近平": "PER", "北京": "LOC",
         "Berlin": "LOC", "联合国": "ORG"}
TEXT = ("Angela Merkel besuchte gestern Paris.\n"
        "ذهب محمد إلى القاهرة أمس.\n"
        "习近平在北京会见了联合国秘书长。\n"
        "\U00020000\U0001F600 Berlin")  # astral characters before an entity: offsets are code points
MAX_CHARS = 2000


class Gazetteer:
    """Finds the names it knows wherever they occur: a deterministic stand-in for a model, so the test knows
    exactly which spans the page must highlight."""

    name, labels, source = "gazetteer", ["LOC", "ORG", "PER"], None

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        self.classifier = TorchClassifier(torch.nn.Linear(1, 1))

    def __call__(self, texts):
        results = []
        for text in texts:
            found = []
            for name, label in self.names.items():
                start = text.find(name)
                while start >= 0:
                    found.append({"text": name, "label": label, "start": start, "end": start + len(name),
                                  "score": 0.87})
                    start = text.find(name, start + 1)
            results.append(sorted(found, key=lambda e: e["start"]))
        return results


@pytest.fixture(scope="module")
def browser():
    with Chromium(CHROMIUM) as chromium:
        yield chromium


@pytest.fixture(scope="module")
def page(browser):
    """The demo page of a live server, loaded, its language list filled in from /v1/model."""
    settings = ServeSettings(max_chars_per_text=MAX_CHARS, max_texts_per_request=3)  # TEXT takes two requests
    with live_server(Gazetteer(NAMES), settings) as (_, port):
        browser.open(f"http://127.0.0.1:{port}/")
        browser.wait_for("document.getElementById('language').options.length > 1")
        yield browser


def _submit_with_keyboard(page, text: str) -> None:
    """Type ``text`` into the text box (replacing what is there) and press Ctrl+Enter, as a keyboard user would."""
    page.evaluate("(() => { const t = document.getElementById('text'); t.focus(); t.select(); "
                  "document.getElementById('status').textContent = ''; })()")
    page.call("Input.insertText", {"text": text})
    page.press("Enter", "Enter", 13, modifiers=2)
    page.wait_for("document.getElementById('status').textContent.length > 0 && "
                  "!document.getElementById('submit').disabled")


MARKS = """[...document.querySelectorAll('#result mark')].map(m => {
  const r = m.getBoundingClientRect();
  return {text: m.querySelector('bdi').textContent, label: m.className, tag: m.querySelector('.tag').textContent,
          left: r.left, paragraph: [...document.querySelectorAll('#result p')].indexOf(m.closest('p'))};
})"""


def test_entities_are_highlighted_inline_with_labels_and_scores(page):
    _submit_with_keyboard(page, TEXT)
    marks = page.evaluate(MARKS)
    assert [(m["text"], m["label"]) for m in marks] == [
        ("Angela Merkel", "PER"), ("Paris", "LOC"), ("محمد", "PER"), ("القاهرة", "LOC"), ("习近平", "PER"),
        ("北京", "LOC"), ("联合国", "ORG"), ("Berlin", "LOC")]
    assert all(m["tag"] == f"{m['label']}0.87" for m in marks)  # the label, then the score
    assert [m["paragraph"] for m in marks] == [0, 0, 1, 1, 2, 2, 2, 3]  # one paragraph per line
    result = page.evaluate("document.getElementById('result').innerText")
    assert "besuchte gestern" in result and "\U00020000\U0001F600" in result  # the text around the entities kept
    assert page.evaluate("document.querySelectorAll('#entities tbody tr').length") == len(marks)
    assert "8 entities" in page.evaluate("document.getElementById('status').textContent")
    languages = page.evaluate("[...document.querySelectorAll('#result p')].map(p => p.lang)")
    assert languages[:2] == ["de", "ar"] and languages[2].startswith("zh")  # each line detected on its own
    assert page.problems() == []  # no console error: the inline script and style run under the page's CSP


def test_right_to_left_and_cjk_lines_read_in_their_own_direction(page):
    _submit_with_keyboard(page, TEXT)
    directions = page.evaluate("[...document.querySelectorAll('#result p')].map(p => getComputedStyle(p).direction)")
    assert directions == ["ltr", "rtl", "ltr", "ltr"]
    marks = {m["text"]: m["left"] for m in page.evaluate(MARKS)}
    assert marks["Angela Merkel"] < marks["Paris"]  # left to right
    assert marks["محمد"] > marks["القاهرة"]  # right to left: the first name read is the rightmost
    assert marks["习近平"] < marks["北京"] < marks["联合国"]


def test_the_labels_filter_asks_for_the_chosen_types_only(page):
    page.evaluate("document.querySelector('input[value=PER]').click()")
    try:
        _submit_with_keyboard(page, TEXT)
        assert {m["label"] for m in page.evaluate(MARKS)} == {"LOC", "ORG"}
        page.evaluate("document.querySelectorAll('input[name=label]').forEach(b => { b.checked = false; })")
        _submit_with_keyboard(page, TEXT)
        assert "at least one" in page.evaluate("document.getElementById('status').textContent")
    finally:
        page.evaluate("document.querySelectorAll('input[name=label]').forEach(b => { b.checked = true; })")


def test_the_language_hint_is_sent_and_shown(page):
    page.evaluate("document.getElementById('language').value = 'de'")
    try:
        _submit_with_keyboard(page, TEXT)
        assert page.evaluate("[...document.querySelectorAll('#result p')].map(p => p.lang)") == ["de"] * 4
        assert page.evaluate("document.getElementById('status').textContent").endswith("entities \u00b7 de")
        german = page.evaluate("[...document.getElementById('language').options].find(o => o.value === 'de').text")
        assert german == "German (de)"
    finally:
        page.evaluate("document.getElementById('language').value = ''")


def test_errors_of_the_service_are_shown(page):
    _submit_with_keyboard(page, "x" * (MAX_CHARS + 1))
    status = page.evaluate("document.getElementById('status')")
    message = page.evaluate("document.getElementById('status').textContent")
    assert status is not None and "max_chars_per_text" in message and "413" in message
    assert page.evaluate("document.getElementById('status').classList.contains('error')")


def test_keyboard_order_labels_and_contrast(page):
    page.open(page.evaluate("location.href"))  # focus starts at the top of a fresh page
    page.wait_for("document.getElementById('language').options.length > 1")
    order = []
    for _ in range(6):
        page.press("Tab", "Tab", 9)
        order.append(page.evaluate("document.activeElement.id || document.activeElement.value"))
    assert order == ["text", "language", "PER", "ORG", "LOC", "submit"]
    unlabelled = page.evaluate("[...document.querySelectorAll('textarea, select, input')]"
                               ".filter(e => !e.closest('[hidden]') && e.labels.length === 0).map(e => e.id)")
    assert unlabelled == []
    assert page.evaluate("document.getElementById('status').getAttribute('aria-live')") == "polite"
    _submit_with_keyboard(page, TEXT)
    ratios = page.evaluate("""(() => {
      const rgb = (s) => s.match(/[\\d.]+/g).slice(0, 3).map(Number);
      const lum = (c) => { const [r, g, b] = c.map(v => { v /= 255;
        return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }); return 0.2126*r + 0.7152*g + 0.0722*b; };
      const ratio = (fg, bg) => { const [a, b] = [lum(rgb(fg)), lum(rgb(bg))].sort((x, y) => y - x);
        return (a + 0.05) / (b + 0.05); };
      const pairs = {};
      for (const m of document.querySelectorAll('#result mark')) {
        const bg = getComputedStyle(m).backgroundColor;
        pairs['mark ' + m.className] = ratio(getComputedStyle(m).color, bg);
        pairs['tag ' + m.className] = ratio(getComputedStyle(m.querySelector('.tag')).color, bg);
      }
      const body = getComputedStyle(document.body).backgroundColor;
      for (const sel of ['h1', 'p.lead', 'label', '.hint', 'footer', '#status']) {
        pairs[sel] = ratio(getComputedStyle(document.querySelector(sel)).color, body);
      }
      const button = getComputedStyle(document.getElementById('submit'));
      pairs.button = ratio(button.color, button.backgroundColor);
      return pairs;
    })()""")
    assert len([k for k in ratios if k.startswith("mark")]) == 3
    low = {name: round(value, 2) for name, value in ratios.items() if value < 4.5}
    assert low == {}, f"below WCAG AA contrast 4.5:1: {low}"


def test_a_service_with_a_key_asks_for_it(browser):
    with live_server(Gazetteer(NAMES), ServeSettings(api_key="s3cret")) as (_, port):
        browser.open(f"http://127.0.0.1:{port}/")
        browser.wait_for("!document.getElementById('key-row').hidden")
        assert browser.evaluate("document.activeElement.id") == "key"
        assert "API key" in browser.evaluate("document.getElementById('status').textContent")
        browser.call("Input.insertText", {"text": "s3cret"})
        _submit_with_keyboard(browser, "Angela Merkel besuchte Paris.")
        assert [m["text"] for m in browser.evaluate(MARKS)] == ["Angela Merkel", "Paris"]


def test_the_page_is_one_self_contained_file(page, tmp_path):
    """No external asset: every URL the page loaded is the page itself or the API."""
    resources = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    assert all("/v1/" in url for url in resources), resources
    html = page.evaluate("document.documentElement.outerHTML")
    assert "http://" not in html.replace("http://127.0.0.1", "") and "https://" not in html
    (tmp_path / "demo.png").write_bytes(page.screenshot())
    assert (tmp_path / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    unexpected = [p for p in page.problems() if not p.startswith("Failed to load resource: the server responded")]
    assert unexpected == []  # the 401 and 413 of the tests above are expected; nothing else went wrong
