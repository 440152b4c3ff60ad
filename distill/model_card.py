"""The model card (README.md) of a distilled student: Hugging Face metadata, languages, data and licences, figures.

The card opens with the Hugging Face YAML front matter (language list, licence, tags, datasets, and a
``model-index`` with the macro F1 of the quality table), so the hub shows and indexes it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

from polyner.data.licences import NON_COMMERCIAL, UNLABELED_LICENCES, licence_of

QUALITY_HEADING = "Quality (word-level seqeval, strict IOB2)"
TAGS = ("token-classification", "ner", "named-entity-recognition", "multilingual", "onnx", "knowledge-distillation",
        "polyner")
METRIC_NAME = "macro F1 over languages (word-level seqeval, strict IOB2)"
ONNX_USE = (
    "The directory is the model for onnxruntime alone: `model.onnx` takes `input_ids` and `attention_mask` (int64, "
    "batch x sequence, XLM-R ids from `tokenizer.json` with `<s>` ... `</s>`) and gives `logits` (float32, batch x "
    "sequence x 7; the labels are config.json's `id2label`, IOB2 PER/ORG/LOC; a word's label is its first piece's). "
    "`onnx_export.json` records the quantization and where each torch weight is stored: "
    "`polyner export DIR --format torch --out DIR2` reads them back (dequantized) into `model.safetensors`, which "
    "`AutoModelForTokenClassification.from_pretrained(DIR2, trust_remote_code=True)` loads wherever polyner is "
    "installed.",
)
_VALUE_LINE = re.compile(r"^(\s*value: ).*$", re.MULTILINE)


def card_licence(gold_sources: Sequence[str]) -> dict[str, str]:
    """The ``license`` metadata of a model trained on ``gold_sources``: ``other`` / ``noncommercial`` when a
    NonCommercial or unverified source was used, else CC BY-SA 4.0 (or CC BY 4.0 without ShareAlike sources)."""
    if set(gold_sources) & NON_COMMERCIAL:
        return {"license": "other", "license_name": "noncommercial"}
    if any("SA" in licence_of(s) for s in gold_sources):
        return {"license": "cc-by-sa-4.0"}
    return {"license": "cc-by-4.0"}


def macro_f1(results_markdown: str, column: str = "student") -> float | None:
    """The macro F1 of a ``polyner evaluate`` table: the ``F1 COLUMN`` column (else the last F1 column), or None."""
    header: list[str] | None = None
    for line in results_markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if "F1" in " ".join(cells) and cells[:1] == ["lang"]:
            header = cells
        elif header and cells[:1] == ["**macro**"] and len(cells) == len(header):
            f1_columns = [i for i, name in enumerate(header) if name.startswith("F1")]
            chosen = next((i for i in f1_columns if header[i] == f"F1 {column}"), f1_columns[-1] if f1_columns else None)
            try:
                return float(cells[chosen]) if chosen is not None else None
            except ValueError:
                return None
    return None


def front_matter(*, title: str, languages: Sequence[str], gold_sources: Sequence[str],
                 f1: float | None = None) -> str:
    """The Hugging Face YAML metadata block of a card (JSON-quoted scalars, which YAML reads as they are)."""
    q = json.dumps
    lines = ["---", "language:", *[f"- {q(code)}" for code in languages]]
    lines += [f"{key}: {q(value)}" for key, value in card_licence(gold_sources).items()]
    lines += ["library_name: polyner", "pipeline_tag: token-classification", "tags:", *[f"- {q(t)}" for t in TAGS]]
    if gold_sources:
        lines += ["datasets:", *[f"- {q(s)}" for s in sorted(set(gold_sources))]]
    lines += ["metrics:", "- f1"]
    if f1 is not None:
        lines += model_index(title, f1)
    return "\n".join([*lines, "---", ""])


def model_index(title: str, f1: float) -> list[str]:
    """The ``model-index`` lines of the front matter: the macro F1 of the card's quality table."""
    q = json.dumps
    return ["model-index:", f"- name: {q(title)}", "  results:", "  - task:", "      type: token-classification",
            "      name: Named Entity Recognition", "    dataset:", "      type: polyner-gold-test",
            "      name: gold test sets, one per language (the quality table below)", "    metrics:",
            "    - type: f1", f"      value: {f1:.2f}", f"      name: {q(METRIC_NAME)}"]


def write_model_card(folder: str | Path, *, title: str, languages: Sequence[str], gold_sources: Sequence[str],
                     unlabeled: Sequence[str], geometry: str, parameters: int, teacher: str, teacher_parameters: int,
                     size_mb: float, results_markdown: str = "", speed_markdown: str = "",
                     notes: Sequence[str] = (), window: int | None = None) -> Path:
    """Write ``README.md`` into a model directory and return its path."""
    folder = Path(folder)
    nc = sorted(set(gold_sources) & NON_COMMERCIAL)
    lines = [
        front_matter(title=title, languages=languages, gold_sources=gold_sources, f1=macro_f1(results_markdown)),
        f"# {title}", "",
        "A polyner student for named-entity recognition (PER, ORG, LOC; IOB2), distilled "
        "XtremeDistil-style from a fine-tuned multilingual teacher.", "",
        "## Use", "", "```python", "import polyner", f"tagger = polyner.load({'' if title.startswith('polyner default') else repr(str(folder))})",
        'tagger("Angela Merkel besuchte Paris.")', "```", "", *ONNX_USE, "",
        "## Model", "",
        f"- {geometry}: {parameters:,} parameters; teacher `{teacher}`: {teacher_parameters:,} parameters "
        f"({teacher_parameters / max(parameters, 1):.1f}x larger)",
        f"- size on disk: {size_mb:.1f} MB",
        *quantization_lines(folder),
        *([f"- reads text in windows of {window} pieces, the length it was trained on (`ner_max_length` in "
           "config.json; `polyner.load(max_length=N)` chooses another)"] if window else []),
        f"- languages ({len(languages)}): {' '.join(languages)}", "",
        "## Training data and licences", "",
        "| source (gold or silver) | licence |", "|---|---|",
    ]
    lines += [f"| {s} | {licence_of(s)} |" for s in sorted(set(gold_sources))]
    lines += ["", f"Unlabeled transfer text: {', '.join(map(str, unlabeled)) or 'none'}. {UNLABELED_LICENCES}", ""]
    if nc:
        lines += [f"**NonCommercial or unverified sources were used: {', '.join(nc)}.** This model inherits their "
                  "terms: do not use it commercially. Retrain with `--exclude-source` for a commercial model.", ""]
    if results_markdown:
        lines += [f"## {QUALITY_HEADING}", "", results_markdown.strip(), ""]
    if speed_markdown:
        lines += ["## Speed", "", speed_markdown.strip(), ""]
    lines += list(notes)
    path = folder / "README.md"
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return path


def quantization_lines(folder: Path) -> list[str]:
    """The card's line on how the directory's ONNX model is quantized (none for torch weights or fp32)."""
    from polyner.models.onnx_backend import export_info

    info = export_info(folder)
    if info.get("quantization") != "int8":
        return []
    weights = "one scale per output channel" if info.get("per_channel", True) else "one scale per matrix"
    scales = info.get("activation_scales") or "per-batch"
    activations = ("activations quantized per token: a text gets the same entities alone and in a batch"
                   if scales == "per-token" else "activations quantized with one scale per call: a text's entities "
                   "can change with the other texts in its batch")
    return [f"- ONNX int8: int8 weights ({weights}), {activations}"]


def replace_card_section(card: str, heading: str, body: str) -> str:
    """``card`` with the section under ``## heading`` (up to the next ``## ``) holding ``body``.

    A card without that section gets it before ``## Training`` (or at the end).
    """
    lines = card.rstrip("\n").split("\n")
    new = [f"## {heading}", "", body.strip(), ""]
    start = next((i for i, line in enumerate(lines) if line.strip() == f"## {heading}"), None)
    if start is None:
        at = next((i for i, line in enumerate(lines) if line.strip() == "## Training"), len(lines))
        return "\n".join(lines[:at] + new + lines[at:]) + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[:start] + new + lines[end:]) + "\n"


def refresh_model_card(folder: str | Path, results_markdown: str = "", speed_markdown: str = "") -> Path:
    """Rewrite the quality and/or speed sections of a model directory's card, keeping everything else."""
    path = Path(folder) / "README.md"
    if not path.exists():
        raise FileNotFoundError(f"no model card (README.md) in {folder}")
    card = path.read_text(encoding="utf-8")
    if results_markdown:
        card = replace_card_section(card, QUALITY_HEADING, results_markdown)
        f1 = macro_f1(results_markdown)
        if f1 is not None and card.startswith("---\n"):  # the model-index value of the front matter
            head, rest = card[4:].split("\n---\n", 1)
            if _VALUE_LINE.search(head):
                head = _VALUE_LINE.sub(lambda m: f"{m.group(1)}{f1:.2f}", head)
            else:  # packed without figures: the card gets its model-index now
                title = next((line[2:] for line in rest.splitlines() if line.startswith("# ")), path.parent.name)
                head = "\n".join([head, *model_index(title, f1)])
            card = "---\n" + head + "\n---\n" + rest
    if speed_markdown:
        card = replace_card_section(card, "Speed", speed_markdown)
    path.write_text(card, encoding="utf-8")
    return path
