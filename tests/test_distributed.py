"""Data-parallel training: two CPU processes under ``torchrun`` (gloo) train the tiny teacher and a tiny
distillation to the same weights as one process on the same global batches, and checkpoints resume
with another number of processes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import SAMPLE_TEXTS
from ddp_job import without_dropout
from polyner.distill.config import DistillConfig, StageBudget
from polyner.distill.trainer import distill
from polyner.tasks.finetune import FinetuneConfig, finetune_glue
from polyner.training.distributed import DistributedContext, init_distributed
from polyner.training.teacher import TeacherTrainingConfig, train_teacher

JOB = Path(__file__).with_name("ddp_job.py")
ATOL = 1e-5


@pytest.fixture(autouse=True)
def _one_thread(_isolated_home):
    torch.set_num_threads(1)


# --- the context, without a process group ------------------------------------------------------------


@pytest.mark.parametrize("size,world", [(7, 3), (4, 2), (5, 5), (16, 4)])
def test_shards_partition_the_global_batch_in_order(size, world):
    batch = list(range(size))
    slices = [DistributedContext(rank=r, world_size=world, initialized=True).shard(batch) for r in range(world)]
    assert sum(slices, []) == batch
    assert max(map(len, slices)) - min(map(len, slices)) <= 1


def test_a_batch_smaller_than_the_world_is_refused():
    with pytest.raises(ValueError, match="at least the number of processes"):
        DistributedContext(rank=0, world_size=4, initialized=True).shard([1, 2, 3])


def test_single_process_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    single = init_distributed()
    assert (single.rank, single.world_size, single.is_main, single.enabled) == (0, 1, True, False)
    loss = torch.tensor(2.5, requires_grad=True)
    assert single.scale_loss(loss, 3) is loss and single.mean(1.5) == 1.5 and single.broadcast("x") == "x"
    assert single.shard([1, 2, 3]) == [1, 2, 3]
    module = torch.nn.Linear(2, 2)
    assert single.wrap(module) is module and single.for_inference(module) is module


# --- two processes under torchrun ---------------------------------------------------------------------


def teacher_config(teacher: Path, gold: Path, out: Path, max_steps: int) -> TeacherTrainingConfig:
    return TeacherTrainingConfig(teacher=str(teacher), gold=str(gold), out=str(out), max_steps=max_steps,
                                 eval_every=2, save_every=1, dev_per_lang=5, batch_size=5, max_length=32, threads=1,
                                 lr=1e-3, head_lr=1e-2)


ANCHORED = {"gold_logit_weight": 0.5, "use_representation_stage": False}  # the anchored run skips stage 1: faster


def distill_config(root: Path, teacher: Path, gold: Path, out: Path, **settings) -> DistillConfig:
    unlabeled = root / "unlabeled"
    unlabeled.mkdir(exist_ok=True)
    for lang, texts in (("en", SAMPLE_TEXTS[:6]), ("de", SAMPLE_TEXTS[2:4]), ("ru", SAMPLE_TEXTS[3:5])):
        (unlabeled / f"{lang}.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    return DistillConfig(teacher=str(teacher), out=str(out), languages=["en", "de", "ru"], unlabeled=[str(unlabeled)],
                         gold=str(gold), geometry={"layers": 1, "hidden": 32, "heads": 2, "ffn": 64, "rank": 16},
                         min_piece_count=1, max_vocab=None, batch_size=5, threads=1, augmented_per_language=0,
                         representation=StageBudget(steps=3, eval_every=3), logits=StageBudget(steps=2, eval_every=2),
                         gold_labels=StageBudget(steps=2, eval_every=2), **settings)


def finetune_config(root: Path, model: Path, out: Path) -> FinetuneConfig:
    """SST-2 on 12 made-up sentences, 4 steps of 4: the tiny teacher as the encoder, a fresh classification head."""
    data = root / "glue" / "SST-2"
    data.mkdir(parents=True, exist_ok=True)
    rows = [(f"a {word} film", 1) for word in ("good", "fine", "great", "nice", "bright", "warm")]
    rows += [(f"a {word} film", 0) for word in ("bad", "dull", "poor", "weak", "grey", "cold")]
    for split in ("train", "dev"):
        body = "".join(f"{text}\t{label}\n" for text, label in rows)
        (data / f"{split}.tsv").write_text("sentence\tlabel\n" + body, encoding="utf-8")
    return FinetuneConfig(task="sst2", out=str(out), model=str(model), data=str(root / "glue"), use_hub=False, steps=4,
                          batch_size=4, eval_every=2, save_every=2, lr=1e-3, threads=1, seed=3, keep_checkpoint=True)


def torchrun(jobs: list[dict], folder: Path, processes: int = 2) -> None:
    """Run the jobs in ``processes`` CPU processes started by torchrun (gloo backend)."""
    path = folder / "jobs.json"
    path.write_text(json.dumps(jobs), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={processes}", str(JOB), str(path)],
                          env={**env, "CUDA_VISIBLE_DEVICES": ""}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], changed_from=None) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=0, atol=ATOL), (key, (a[key] - b[key]).abs().max())
    if changed_from is not None:  # the runs did train: weights moved by much more than the tolerance
        moved = max((a[k] - changed_from[k]).abs().max().item() for k in a if k in changed_from)
        assert moved > 50 * ATOL


def test_two_processes_train_like_one(tmp_path, teacher_dir, gold_tree, monkeypatch):
    """Teacher fine-tuning, distillation and GLUE fine-tuning in 2 gloo processes == 1 process on the same global
    batches; a 2-process checkpoint resumes in 1 process and a 1-process checkpoint in 2."""
    one, two = tmp_path / "one", tmp_path / "two"
    train_teacher(teacher_config(teacher_dir, gold_tree, one / "teacher", 3))
    shutil.copytree(one / "teacher", two / "teacher-from-one")  # resumed below by two processes
    jobs = [{"kind": "teacher", "config": asdict(teacher_config(teacher_dir, gold_tree, two / "teacher", 3))},
            {"kind": "teacher", "config": asdict(teacher_config(teacher_dir, gold_tree, two / "teacher-from-one", 5))},
            {"kind": "distill", "config": distill_config(tmp_path, teacher_dir, gold_tree, two / "student").to_dict()},
            {"kind": "distill", "config": distill_config(tmp_path, teacher_dir, gold_tree, two / "anchored",
                                                         **ANCHORED).to_dict()},
            {"kind": "finetune", "config": asdict(finetune_config(tmp_path, teacher_dir, two / "sst2"))}]
    torchrun(jobs, tmp_path)

    # 1. teacher fine-tuning: the same weights after 3 steps, the same losses and dev scores
    initial = load_file(str(teacher_dir / "model.safetensors"))
    final_one = load_file(str(one / "teacher" / "checkpoint" / "weights.safetensors"))
    final_two = load_file(str(two / "teacher" / "checkpoint" / "weights.safetensors"))
    assert_close(final_two, final_one, changed_from={k: v for k, v in initial.items() if k in final_one})
    history_one = json.loads((one / "teacher" / "training_state.json").read_text())["history"]
    history_two = json.loads((two / "teacher" / "training_state.json").read_text())["history"]
    assert [h["step"] for h in history_two] == [h["step"] for h in history_one] == [2, 3]
    for a, b in zip(history_one, history_two):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5) and a["dev_f1"] == pytest.approx(b["dev_f1"])
    # rank 0 wrote the files; nothing else was left behind
    assert (two / "teacher" / "model.safetensors").is_file() and not list(two.glob("**/*.partial"))

    # 2. resuming with another world size (2 -> 1 and 1 -> 2 processes) for 2 more steps
    shutil.copytree(two / "teacher", one / "teacher-from-two")
    train_teacher(teacher_config(teacher_dir, gold_tree, one / "teacher-from-two", 5))
    train_teacher(teacher_config(teacher_dir, gold_tree, one / "teacher", 5))
    reference = load_file(str(one / "teacher" / "checkpoint" / "weights.safetensors"))
    for resumed in (one / "teacher-from-two", two / "teacher-from-one"):
        assert json.loads((resumed / "checkpoint" / "state.json").read_text())["step"] == 5
        assert_close(load_file(str(resumed / "checkpoint" / "weights.safetensors")), reference, changed_from=final_one)

    # 3. distillation: every stage data-parallel, the same student and the same selection (dropout off in both);
    # also with gold stages anchored to the teacher's logits (two losses, each over its own terms)
    import polyner.distill.trainer as trainer

    monkeypatch.setattr(trainer, "student_config", without_dropout(trainer.student_config))
    for name, settings in (("student", {}), ("anchored", ANCHORED)):
        distill(distill_config(tmp_path, teacher_dir, gold_tree, one / name, **settings))
        for weights in ("model.safetensors", "work/current.safetensors"):
            assert_close(load_file(str(two / name / weights)), load_file(str(one / name / weights)))
        log_one = json.loads((one / name / "training_log.json").read_text())
        log_two = json.loads((two / name / "training_log.json").read_text())
        assert [(h["stage"], h["step"]) for h in log_two["history"]] == [(h["stage"], h["step"])
                                                                         for h in log_one["history"]]
        for a, b in zip(log_one["history"], log_two["history"]):
            assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
        assert log_two["best_dev_f1"] == pytest.approx(log_one["best_dev_f1"])

    # 4. GLUE fine-tuning through the same loop: the same weights, losses and dev scores
    finetune_glue(finetune_config(tmp_path, teacher_dir, one / "sst2"))
    tuned_one = load_file(str(one / "sst2" / "checkpoint" / "weights.safetensors"))
    assert_close(load_file(str(two / "sst2" / "checkpoint" / "weights.safetensors")), tuned_one,
                 changed_from={k: v for k, v in initial.items() if k in tuned_one and v.shape == tuned_one[k].shape})
    metrics_one = json.loads((one / "sst2" / "metrics.json").read_text())
    metrics_two = json.loads((two / "sst2" / "metrics.json").read_text())
    assert [h["step"] for h in metrics_two["history"]] == [h["step"] for h in metrics_one["history"]] == [2, 4]
    for a, b in zip(metrics_one["history"], metrics_two["history"]):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5) and a["accuracy"] == pytest.approx(b["accuracy"])
