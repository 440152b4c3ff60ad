"""Distillation configuration: student presets and the settings of one ``polyner distill`` run.

A :class:`DistillConfig` is plain data; it loads from a YAML or JSON file so a recipe can be
kept next to its results (``DistillConfig.from_file``).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from polyner.languages import TARGET_LANGUAGES
from polyner.models.student_geometry import ENCODER_FIELDS, StudentGeometry

# a preset chooses the encoder (ENCODER_FIELDS); vocabulary, positions and labels come from the run
PRESETS: dict[str, StudentGeometry] = {
    "xs": StudentGeometry(layers=4, hidden=256, heads=4, ffn=1024, rank=128),
    "s": StudentGeometry(layers=6, hidden=256, heads=4, ffn=1024, rank=128),
    "m": StudentGeometry(layers=6, hidden=384, heads=6, ffn=1536, rank=128),
}


REPRESENTATION_TARGETS = ("top", "aligned")
SILVER_LABELS = ("all", "no-gold")  # which silver files label the gold stages (see DistillConfig.silver_labels)


@dataclass(frozen=True)
class StageBudget:
    """Steps and early stopping of one training stage (a sub-stage per unfrozen layer)."""

    steps: int
    eval_every: int = 200
    patience: int = 3
    lr: float = 5e-4


@dataclass(frozen=True)
class DistillConfig:
    """Everything one distillation run needs; the defaults are the recipe of the shipped student."""

    teacher: str
    out: str
    languages: list[str] = field(default_factory=lambda: list(TARGET_LANGUAGES))
    include_gold_languages: bool = False  # also every language with gold training data (vocabulary, text, labels, dev)
    preset: str = "s"
    geometry: dict | None = None  # a custom encoder (layers, hidden, heads, ffn, rank) instead of a preset
    unlabeled: list[str] = field(default_factory=list)  # files or directories of LANG.txt, one sentence a line
    gold: str | None = None  # gold root (SOURCE/LANG/SPLIT.iob2): train text, dev selection, stage-4 labels
    silver: str | None = None  # silver root, same layout: transfer text and stage-4 labels, never dev selection
    exclude_sources: list[str] = field(default_factory=list)
    unlabeled_per_language: int = 1500
    gold_text_per_language: int = 500
    silver_text_per_language: int = 0
    # per-language factor on the three text counts above (e.g. {ar: 2, he: 2}: twice the transfer text where the
    # student keeps least of the teacher); languages left out: 1
    language_text_scale: dict[str, float] = field(default_factory=dict)
    silver_weight: float = 0.5  # stage-4 sampling pull of a silver file against a gold file of the same size
    # stage-4 silver labels: "all" silver files, or "no-gold": only languages without gold training data (where the
    # two annotate differently, the student follows the gold convention: WikiAnn ar's ORG 'منتخب البرازيل لكرة القدم'
    # against AQMAR's 'منتخب البرازيل'); silver text in the transfer set is not affected
    silver_labels: str = "all"
    # stage-4 labels: lower-cased copies of this share of each label file's sentences (names in text without
    # capitals: chat, transcripts); 0: none
    lowercase_share: float = 0.0
    # trimmed vocabulary: pieces counted per language over all the text at hand (transfer set, every unlabeled
    # line, gold train/dev, silver train), ranked by per-language frequency with language weights total ** alpha
    # (0: every language pulls the same, 1: plain counts); None: plain counts over the transfer and gold text only
    vocab_balance_alpha: float | None = None
    augmented_per_language: int = 300
    use_augmented: bool = True
    use_representation_stage: bool = True  # stage 1
    # stage-1 targets: "top" = the teacher's topmost hidden states (XtremeDistil); "aligned" = for a student
    # started from teacher layers, the teacher states those layers produced (embeddings, then each picked layer)
    representation_targets: str = "top"
    factorize_embeddings: bool = True  # False: random word embeddings (ablation)
    init_layers_from_teacher: bool = True  # only where the widths match
    ffn_ranking_sentences: int = 256  # transfer sentences that rank teacher FFN neurons for a narrower student FFN
    min_piece_count: int = 2
    keep_all_single_chars: bool = True  # False: single-character pieces only when the text has them (room for more pieces)
    # leave out Han/kana pieces that glue a particle to a word (在北京, 日本の), so word and entity edges fall between pieces
    drop_particle_pieces: bool = False
    # after training, add every Han/kana piece of the teacher the trimmed vocabulary lacks, its row mapped from the
    # teacher's (distill/vocab_completion.py): a Chinese or Japanese word our text lacks stays one piece (华为, 普京).
    # max_vocab does not count them (~7,400 pieces for XLM-R's vocabulary); only with factorize_embeddings
    complete_han_kana: bool = True
    max_vocab: int | None = 60000
    max_length: int = 64
    batch_size: int = 32
    representation: StageBudget = field(default_factory=lambda: StageBudget(steps=3000, eval_every=300, lr=5e-4))
    logits: StageBudget = field(default_factory=lambda: StageBudget(steps=600, eval_every=200, lr=3e-4))
    gold_labels: StageBudget = field(default_factory=lambda: StageBudget(steps=400, eval_every=200, lr=1e-4))
    # groups the logit stages (3) and the gold-label stages (4) unfreeze, top layer first (None: all of them)
    logits_unfreeze: int | None = None
    gold_unfreeze: int | None = None
    # the gold-label stages also match the teacher's logits on a transfer batch each step, at this weight against
    # the cross-entropy (0: cross-entropy only), so that what the logit stages taught is kept where labels are few
    gold_logit_weight: float = 0.0
    heldout_fraction: float = 0.02  # transfer sentences kept aside for stage-1 validation
    dev_per_language: int = 100
    seed: int = 13
    threads: int = 2
    bf16: bool = False  # bfloat16 autocast for the student's forward pass (fast on AMX / AVX-512 BF16 CPUs)
    # draw this many batches together and cut them by length (less padding; the same sentences overall); 1: off
    bucket: int = 1
    # teacher_cache of an earlier run (same teacher): the outputs of the sentences it holds are copied
    reuse_teacher_cache: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.geometry, StudentGeometry):
            object.__setattr__(self, "geometry", {name: getattr(self.geometry, name) for name in ENCODER_FIELDS})
        if self.geometry is not None:
            unknown, missing = set(self.geometry) - set(ENCODER_FIELDS), set(ENCODER_FIELDS) - set(self.geometry)
            if unknown or missing:
                raise ValueError(f"geometry {self.geometry}: expected exactly {', '.join(ENCODER_FIELDS)}"
                                 + (f"; unknown {sorted(unknown)}" if unknown else "")
                                 + (f"; missing {sorted(missing)}" if missing else ""))
            StudentGeometry(**self.geometry)  # fails early on sizes that do not fit together
        elif self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}: choose one of {', '.join(PRESETS)}")
        for name in ("logits_unfreeze", "gold_unfreeze"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a whole number >= 0 or None, not {value!r}")
        if isinstance(self.gold_logit_weight, bool) or not isinstance(self.gold_logit_weight, (int, float)) \
                or not 0 <= self.gold_logit_weight < math.inf:
            raise ValueError(f"gold_logit_weight must be a finite number >= 0, not {self.gold_logit_weight!r}")
        if self.language_text_scale is None:
            object.__setattr__(self, "language_text_scale", {})
        for lang, factor in self.language_text_scale.items():
            if isinstance(lang, bool):
                raise ValueError(f"language_text_scale: the key {lang!r} is a YAML boolean; quote language codes "
                                 "such as 'no' (Norwegian)")
            if not isinstance(lang, str) or isinstance(factor, bool) or not isinstance(factor, (int, float)) \
                    or not factor > 0:
                raise ValueError(f"language_text_scale maps a language code to a factor > 0, not {lang!r}: {factor!r}")
        if isinstance(self.bucket, bool) or not isinstance(self.bucket, int) or self.bucket < 1:
            raise ValueError(f"bucket must be a whole number >= 1, not {self.bucket!r}")
        if not 0.0 <= self.lowercase_share <= 1.0:
            raise ValueError(f"lowercase_share must be between 0 and 1, not {self.lowercase_share!r}")
        if self.silver_labels not in SILVER_LABELS:
            raise ValueError(f"unknown silver_labels {self.silver_labels!r}: choose one of {', '.join(SILVER_LABELS)}")
        if self.representation_targets not in REPRESENTATION_TARGETS:
            raise ValueError(f"unknown representation_targets {self.representation_targets!r}: "
                             f"choose one of {', '.join(REPRESENTATION_TARGETS)}")
        defaults = {f.name: f for f in fields(self)}
        for name in ("representation", "logits", "gold_labels"):
            value = getattr(self, name)
            if isinstance(value, dict):
                unknown = set(value) - {f.name for f in fields(StageBudget)}
                if unknown:
                    raise ValueError(f"unknown settings {sorted(unknown)} in {name}: "
                                     f"expected some of {[f.name for f in fields(StageBudget)]}")
                # what the dict leaves out keeps this stage's recipe value (e.g. its learning rate)
                object.__setattr__(self, name, replace(defaults[name].default_factory(), **value))

    @property
    def student(self) -> StudentGeometry:
        """The student geometry: the custom encoder when given, else the preset's (other sizes at their defaults,
        set by the run: see :func:`polyner.distill.student_init.student_config`)."""
        return StudentGeometry(**self.geometry) if self.geometry is not None else PRESETS[self.preset]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_file(cls, path: str | Path, **overrides) -> "DistillConfig":
        """Load from YAML (.yaml/.yml) or JSON; keyword overrides win over the file.

        A recipe may start from another one with ``base: other.yaml`` (a path relative to the recipe): its own
        settings win; ``geometry`` and the stage budgets are merged key by key with the base's (an empty mapping
        replaces them), and a ``preset`` drops the base's ``geometry``.
        """
        data = _read_recipe(Path(path), known={f.name for f in fields(cls)}, chain=())
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**data)


RECIPE_BASE_KEY = "base"
# settings a recipe merges key by key with its base's (the encoder, a stage budget); any other setting, and an empty
# mapping, replaces the base's
MERGED_SETTINGS = ("geometry", "representation", "logits", "gold_labels")


def _read_recipe(path: Path, known: set[str], chain: tuple[Path, ...]) -> dict:
    """One recipe file's settings merged over those of its ``base`` chain."""
    resolved = path.resolve()
    if resolved in chain:
        raise ValueError(f"{path}: recipe bases form a cycle ({' -> '.join(p.name for p in (*chain, resolved))})")
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe is a mapping of settings, not {type(data).__name__}")
    base = data.pop(RECIPE_BASE_KEY, None)
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{path}: unknown distillation settings {sorted(unknown)}")
    if base is None:
        return data
    merged = _read_recipe(path.parent / str(base), known, (*chain, resolved))
    if "preset" in data and "geometry" not in data:
        merged.pop("geometry", None)  # a preset names the whole encoder: the base's custom one goes
    for key, value in data.items():
        if key in MERGED_SETTINGS and value and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged
