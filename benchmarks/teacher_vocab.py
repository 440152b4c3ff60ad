"""The teacher read through trimmed vocabularies: what a student vocabulary costs before any distillation.

The student is trained on the teacher's outputs over the student's own segmentation (the teacher cache runs the
teacher on the trimmed pieces), so the teacher's F1 through a trimmed vocabulary bounds what distillation can
transfer. For each size this writes a copy of the teacher whose word embeddings are the kept rows and whose tokenizer
is the trimmed one, chosen exactly as ``polyner distill`` chooses it for a recipe (same counts, ranking, single
characters and particle rule); score them side by side with ``polyner evaluate`` on dev:

    python benchmarks/teacher_vocab.py --recipe distill/recipes/wide-dev.yaml --teacher runs/teacher-v5 \
        --gold ../shared/data/gold --silver ../shared/data/silver --unlabeled ../shared/data/unlabeled \
        --transfer runs/student-v10/work --sizes 85000,130000 --out runs/vocab-probe
    polyner evaluate runs/teacher-v5 runs/vocab-probe/teacher-85k ... --split dev

``--transfer``: a run's work folder whose transfer set to reuse (its recipe must match); without it the transfer set is
built (the teacher tags the augmented sentences). Piece counts are kept in OUT/counts.json for the next sizes of the same recipe.
"""
from __future__ import annotations

import argparse
import collections
import json
import shutil
from pathlib import Path

import numpy as np


def piece_ranking(recipe: str, teacher: str, gold: str | None, silver: str | None, unlabeled: list[str],
                  transfer: str | None, out: Path):
    """(distiller, teacher piece counts, ranking) as ``polyner distill`` counts and ranks them for ``recipe``; kept
    in OUT/counts.json for the next sizes."""
    from polyner.distill.config import DistillConfig
    from polyner.distill.trainer import Distiller

    run = out / "run"
    (run / "work").mkdir(parents=True, exist_ok=True)
    if transfer:
        for name in ("transfer.jsonl", "transfer.recipe.json"):
            if not (run / "work" / name).exists():
                shutil.copy(Path(transfer) / name, run / "work" / name)
    config = DistillConfig.from_file(recipe, teacher=teacher, out=str(run), gold=gold, silver=silver,
                                     unlabeled=unlabeled)
    distiller = Distiller(config)
    cache = out / "counts.json"
    saved = json.loads(cache.read_text()) if cache.exists() else {}
    if saved.get("recipe") == recipe:
        counts = collections.Counter({int(i): c for i, c in saved["counts"].items()})
        ranking = None if saved["ranking"] is None else {int(i): r for i, r in saved["ranking"].items()}
    else:  # counted afresh for another recipe
        counts, ranking = distiller.piece_ranking(distiller.transfer_set())
        cache.write_text(json.dumps({"recipe": recipe, "counts": {str(i): c for i, c in counts.items()},
                                     "ranking": None if ranking is None else {str(i): r for i, r in ranking.items()}}))
    return distiller, counts, ranking


def write_trimmed_teacher(teacher: str, tokenizer, keep: np.ndarray, out: Path) -> None:
    """A copy of ``teacher`` whose vocabulary is ``keep`` (teacher ids, ascending)."""
    from safetensors.torch import load_file, save_file

    from polyner.distill.vocab import trim_tokenizer

    trim_tokenizer(tokenizer, keep.tolist(), out)
    state = load_file(str(Path(teacher) / "model.safetensors"))
    names = [name for name in state if name.endswith("word_embeddings.weight")]
    if len(names) != 1:
        raise ValueError(f"expected one word embedding matrix in {teacher}, found {names}")
    state[names[0]] = state[names[0]][keep].contiguous()
    save_file(state, str(out / "model.safetensors"))
    config = json.loads((Path(teacher) / "config.json").read_text())
    config["vocab_size"] = int(len(keep))
    (out / "config.json").write_text(json.dumps(config, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--gold")
    parser.add_argument("--silver")
    parser.add_argument("--unlabeled", nargs="*", default=[])
    parser.add_argument("--transfer", help="work folder of a run whose transfer set to reuse")
    parser.add_argument("--sizes", required=True, help="comma-separated vocabulary sizes")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    out = Path(args.out)
    distiller, counts, ranking = piece_ranking(args.recipe, args.teacher, args.gold, args.silver, args.unlabeled,
                                               args.transfer, out)
    for size in (int(s) for s in args.sizes.split(",")):
        keep = distiller.choose_pieces(counts, ranking, max_size=size)
        folder = out / f"teacher-{size // 1000}k"
        write_trimmed_teacher(args.teacher, distiller.teacher_tokenizer, keep, folder)
        print(f"{size}: {len(keep)} pieces -> {folder}")


if __name__ == "__main__":
    main()
