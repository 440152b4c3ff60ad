"""The model card (README.md) of a distilled student: languages, data and licences, figures."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from polyner.data.licences import NON_COMMERCIAL, UNLABELED_LICENCES, licence_of


def write_model_card(folder: str | Path, *, title: str, languages: Sequence[str], gold_sources: Sequence[str],
                     unlabeled: Sequence[str], geometry: str, parameters: int, teacher: str, teacher_parameters: int,
                     size_mb: float, results_markdown: str = "", speed_markdown: str = "",
                     notes: Sequence[str] = ()) -> Path:
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
        lines += ["## Quality (word-level seqeval, strict IOB2)", "", results_markdown.strip(), ""]
    if speed_markdown:
        lines += ["## Speed", "", speed_markdown.strip(), ""]
    lines += list(notes)
    path = folder / "README.md"
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return path
