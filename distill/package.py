"""Pack a trained student for shipping: its ONNX model (int8), tokenizer, config and a model card, nothing else."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)
ONNX_KINDS = ("int8", "fp32")
FAST_TOKENIZER_CLASS = "PreTrainedTokenizerFast"
# Checked before a packed tokenizer is switched to its tokenizer.json pipeline: scripts, edge whitespace, emoji.
TOKENIZER_PROBES = ["Angela Merkel besuchte am Montag Paris.", "Владимир Путин прилетел в Москву.",
                    "习近平在北京会见了联合国秘书长古特雷斯。", "محمد سافر إلى القاهرة", "नरेंद्र मोदी दिल्ली में",
                    "  Spaces \t and\ttabs  ", "emoji 😉 ok 👍🏽", "Ελλάδα και Κύπρος", "東京タワーに行きました"]


def use_fast_tokenizer_file(folder: Path) -> bool:
    """Let ``AutoTokenizer`` run ``folder``'s tokenizer.json as it is (PreTrainedTokenizerFast) when that gives the
    same ids and offsets as the class the folder names; returns whether it switched.

    A trimmed student's tokenizer.json was saved by the class it names, so the two agree; loading the file as it
    is then skips that class's rebuild of the Unigram model, which costs about 30 MB of peak memory per process.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    config_path = folder / "tokenizer_config.json"
    if not (folder / "tokenizer.json").exists() or not config_path.exists():
        return False
    named = AutoTokenizer.from_pretrained(str(folder))
    raw = PreTrainedTokenizerFast.from_pretrained(str(folder))
    words = [text.split() for text in TOKENIZER_PROBES]
    for kwargs, batch in (({}, TOKENIZER_PROBES), ({"is_split_into_words": True}, words)):
        a = named(batch, return_offsets_mapping=True, **kwargs)
        b = raw(batch, return_offsets_mapping=True, **kwargs)
        if a["input_ids"] != b["input_ids"] or a["offset_mapping"] != b["offset_mapping"]:
            logger.warning("%s: tokenizer.json differs from %s; keeping that class", folder, type(named).__name__)
            return False
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = FAST_TOKENIZER_CLASS
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return True


def pack_model(source: str | Path, target: str | Path, onnx: str = "int8") -> Path:
    """Write the shipped form of the student in ``source`` to ``target``: its ONNX model (``onnx`` "int8": dynamic
    int8, or "fp32"), with the map of its torch weights, config, tokenizer and the card already in ``target``.

    No ``model.safetensors``: tagging runs the ONNX model without torch, and the torch weights are read back from
    it when needed (fine-tuning, distilling: :func:`polyner.models.backend.torch_directory`).
    """
    from polyner.models.backend import torch_directory
    from polyner.models.onnx_export import ExportConfig, export_onnx

    if onnx not in ONNX_KINDS:
        raise ValueError(f"unknown ONNX kind {onnx!r}: expected one of {ONNX_KINDS}")
    source, target = Path(source), Path(target)
    weights = torch_directory(source)  # names the path when it holds no torch weights (nor a map of them)
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    export_onnx(ExportConfig(model=str(weights), out=str(tmp), quantize="int8" if onnx == "int8" else None))
    use_fast_tokenizer_file(tmp)
    if (target / "README.md").exists() and not (tmp / "README.md").exists():  # the card (rewritten by card_for_student)
        shutil.copyfile(target / "README.md", tmp / "README.md")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    logger.info("packed %s into %s (%.1f MB)", source, target, directory_size_mb(target))
    return target


def directory_size_mb(folder: str | Path) -> float:
    """Size of the files directly in ``folder``, in MB."""
    return sum(f.stat().st_size for f in Path(folder).iterdir() if f.is_file()) / 1e6


def marked_section(markdown: str, name: str) -> str:
    """The text between ``<!-- polyner:NAME -->`` and ``<!-- /polyner:NAME -->``, or all of it without markers."""
    start, end = f"<!-- polyner:{name} -->", f"<!-- /polyner:{name} -->"
    if start in markdown and end in markdown:
        return markdown.split(start, 1)[1].split(end, 1)[0].strip()
    return markdown.strip()


def card_for_student(source: str | Path, target: str | Path, title: str, results_markdown: str = "",
                     teacher_sources: list[str] | None = None, speed_markdown: str = "") -> Path:
    """Write the model card of a packed student from its training records (distill_config, training_log)."""
    from polyner.data.training_sets import training_files
    from polyner.distill.model_card import write_model_card

    source, target = Path(source), Path(target)
    config = json.loads((source / "distill_config.json").read_text())
    log = json.loads((source / "training_log.json").read_text())
    sources: set[str] = set(teacher_sources or [])
    teacher_record = Path(config["teacher"]) / "training_config.json"
    if teacher_record.exists():  # the teacher's own training data is part of this model's lineage
        teacher_config = json.loads(teacher_record.read_text())
        if Path(teacher_config["gold"]).is_dir():
            sources |= {f.source for f in training_files(teacher_config["gold"], teacher_config.get("silver"),
                                                         teacher_config.get("langs"),
                                                         teacher_config.get("exclude_sources", []))}
    if config.get("gold") and Path(config["gold"]).is_dir():
        sources |= {f.source for f in training_files(config["gold"], config.get("silver"), config["languages"],
                                                     config.get("exclude_sources", []))}
    stages = [f"{h['stage']} step {h['step']}: " + (f"dev F1 {h['dev_f1']:.2f}" if "dev_f1" in h
                                                     else f"held-out MSE {h['heldout_mse']:.4f}")
              for h in log["history"]]
    g = config.get("geometry")
    shape = (f"{g['layers']} layers x {g['hidden']} hidden, {g['heads']} heads, FFN {g['ffn']}, embedding rank {g['rank']}"
             if g else f"preset {config['preset']}")
    notes = ["## Training", "",
             f"- transfer sentences: {log['transfer_sentences']:,}; vocabulary trimmed to {log['vocabulary']:,} pieces"
             + vocabulary_completion_note(log.get("vocabulary_completion")),
             f"- student: {shape}, seed {config['seed']} (every setting: the run's `distill_config.json`); "
             f"best dev macro F1 {log['best_dev_f1']:.2f}; {log['minutes']:.0f} minutes of training",
             "- checkpoint chosen on gold dev data, never on test", "",
             "<details><summary>stage log</summary>", "", *[f"- {s}" for s in stages], "", "</details>"]
    return write_model_card(target, title=title, languages=config["languages"], gold_sources=sorted(sources),
                            unlabeled=config.get("unlabeled", []), geometry=shape,
                            parameters=log["student_parameters"], teacher=Path(config["teacher"]).name,
                            teacher_parameters=log["teacher_parameters"], size_mb=directory_size_mb(target),
                            results_markdown=results_markdown, speed_markdown=speed_markdown, notes=notes,
                            window=json.loads((target / "config.json").read_text()).get("ner_max_length"))


def vocabulary_completion_note(completion: dict | None) -> str:
    """The model card's words for a vocabulary completed after training (distill/vocab_completion.py)."""
    if not completion:
        return ""
    return (f", {completion['added']:,} of them the teacher's {completion['pieces']} pieces the trimmed vocabulary lacked, "
            f"added after training (rows mapped from the teacher's by a linear fit, R^2 {completion['fit_r2']:.3f})")
