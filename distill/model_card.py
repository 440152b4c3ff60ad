"""The model card (README.md) of a distilled student: languages, data and licences, figures."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from polyner.data.licences import NON_COMMERCIAL, UNLABELED_LICENCES, licence_of

QUALITY_HEADING = "Quality (word-level seqeval, strict IOB2)"


def write_model_card(folder: str | Path, *, title: str, languages: Sequence[str], gold_sources: Sequence[str],
                     unlabeled: Sequence[str], geometry: str, parameters: int, teacher: str, teacher_parameters: int,
                     size_mb: float, results_markdown: str = "", speed_markdown: str = "",
                     notes: Sequence[str] = (), window: int | None = None) -> Path:
    """Write ``README.md`` into a model directory and return its path."""
    folder = Path(folder)
    nc = sorted(set(gold_sources) & NON_COMMERCIAL)
    lines = [
        f"# {title}", "",
        "A polyner student for named-entity recognition (PER, ORG, LOC; IOB2), distilled "
        "XtremeDistil-style from a fine-tuned multilingual teacher.", "",
        "## Use", "", "```python", "import polyner", f"tagger = polyner.load({'' if title.startswith('polyner default') else repr(str(folder))})",
        'tagger("Angela Merkel besuchte Paris.")', "```", "",
        "## Model", "",
        f"- {geometry}: {parameters:,} parameters; teacher `{teacher}`: {teacher_parameters:,} parameters "
        f"({teacher_parameters / max(parameters, 1):.1f}x larger)",
        f"- size on disk: {size_mb:.1f} MB",
        *([f"- reads text in windows of {window} pieces, the length it was trained on (`ner_max_length` in "
           "config.json; `polyner.load(max_length=N)` chooses another)"] if window else []),
        f"- languages ({len(languages)}): {' '.join(languages)}", "",
        "## Training data and licences", "",
        "| gold source | licence |", "|---|---|",
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
    if speed_markdown:
        card = replace_card_section(card, "Speed", speed_markdown)
    path.write_text(card, encoding="utf-8")
    return path
