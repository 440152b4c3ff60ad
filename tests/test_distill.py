"""Distillation (``polyner.distill``) on tiny models built from config: the student architecture, the
stage plan, the losses, the teacher cache, the transfer set, tokenizer checks, the config file and
whole tiny runs (output layout, dev-based selection, resume after an interruption, seeded repeats)."""
from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from conftest import CJK_TEXTS, SAMPLE_TEXTS, build_tiny_model, write_gold_tree
from polyner.distill.config import PRESETS, DistillConfig, StageBudget
from polyner.distill.stages import (
    ANCHOR, LOSSES, DistillationModel, anchored_gold_loss, gold_loss, logit_loss, masked_mse, parameter_groups,
    plan_stages, representation_loss, stage_loss)
from polyner.distill.student_init import (
    copy_teacher_classifier, copy_teacher_layers, rank_ffn_neurons, student_config, teacher_layer_picks)
from polyner.distill.teacher_cache import build_teacher_cache, open_teacher_cache
from polyner.distill.trainer import Distiller, TokenizerMismatchError, check_tokenizers, distill, with_gold_languages
from polyner.distill.transfer import MissingLanguageError, build_transfer_set, unlabeled_files
from polyner.labels import ID2LABEL
from polyner.models.student import (
    PolynerStudentConfig, PolynerStudentForTokenClassification, count_parameters)
from polyner.models.student_geometry import StudentGeometry

LANGS = ["en", "de", "ru", "uk"]
TINY_GEOMETRY = {"layers": 1, "hidden": 32, "heads": 2, "ffn": 64, "rank": 16}


@pytest.fixture(autouse=True)
def _one_thread(_isolated_home):
    """Keep these tests on one core (after conftest's thread setting)."""
    torch.set_num_threads(1)


def tiny_student(layers: int = 2, hidden: int = 16, rank: int = 8,
                 vocab: int = 50) -> PolynerStudentForTokenClassification:
    from polyner.models.io import ner_config_kwargs

    torch.manual_seed(0)
    config = PolynerStudentConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                                  intermediate_size=2 * hidden, embedding_rank=rank, max_position_embeddings=32,
                                  **ner_config_kwargs())
    return PolynerStudentForTokenClassification(config).eval()


def random_batch(vocab: int = 50, rows: int = 3, width: int = 7, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab, (rows, width), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    mask[2, 2:] = 0
    ids[mask == 0] = 1
    return ids, mask


# --- the student model -------------------------------------------------------------------------


def test_student_save_load_round_trip_gives_identical_logits(tmp_path):
    from transformers import AutoConfig, AutoModelForTokenClassification

    model = tiny_student()
    ids, mask = random_batch()
    with torch.no_grad():
        before = model(ids, mask).logits
    model.save_pretrained(tmp_path, safe_serialization=True)
    assert AutoConfig.from_pretrained(str(tmp_path)).model_type == "polyner_student"
    loaded = AutoModelForTokenClassification.from_pretrained(str(tmp_path)).eval()
    assert isinstance(loaded, PolynerStudentForTokenClassification)
    with torch.no_grad():
        after = loaded(ids, mask).logits
    assert torch.equal(before, after)
    assert loaded.config.id2label == ID2LABEL


@pytest.mark.parametrize("layers", [1, 3])
def test_hidden_states_are_embeddings_plus_every_layer(layers):
    model = tiny_student(layers=layers)
    ids, mask = random_batch()
    out = model(ids, mask, output_hidden_states=True)
    assert len(out.hidden_states) == layers + 1
    assert all(state.shape == (3, 7, 16) for state in out.hidden_states)
    assert torch.allclose(out.hidden_states[-1], model.student(ids, mask).last_hidden_state)
    assert model(ids, mask).hidden_states is None


def test_factorized_embedding_parameter_count():
    vocab, rank, hidden = 50, 8, 16
    embeddings = tiny_student(vocab=vocab, rank=rank, hidden=hidden).student.embeddings
    assert embeddings.word.weight.shape == (vocab, rank)
    assert embeddings.word.weight.numel() + embeddings.projection.weight.numel() == vocab * rank + rank * hidden
    assert count_parameters(embeddings.projection) == rank * hidden  # no bias
    unfactorized = tiny_student(vocab=vocab, rank=0, hidden=hidden).student.embeddings
    assert unfactorized.projection is None and unfactorized.word.weight.shape == (vocab, hidden)


@pytest.mark.parametrize("name,layers,hidden", [("xs", 4, 256), ("s", 6, 256), ("m", 6, 384)])
def test_presets_geometry_and_at_most_a_fifth_of_the_teacher(name, layers, hidden):
    preset = PRESETS[name]
    assert (preset.layers, preset.hidden) == (layers, hidden)
    assert preset.hidden % preset.heads == 0
    teacher = SimpleNamespace(max_position_embeddings=514, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0,
                              eos_token_id=2)
    config = student_config(preset, 60000, teacher)
    assert config.num_hidden_layers == layers and config.hidden_size == hidden and config.vocab_size == 60000
    with torch.device("meta"):  # shapes only: no memory, no init time
        model = PolynerStudentForTokenClassification(config)
    parameters = count_parameters(model)
    assert parameters <= 117.5e6 / 5, f"{name}: {parameters:,} parameters"
    words = model.student.embeddings
    assert words.word.weight.numel() + words.projection.weight.numel() == 60000 * preset.rank + preset.rank * hidden


def test_same_width_student_starts_as_the_teacher_layers_and_classifier(tokenizer):
    teacher = build_tiny_model(tokenizer, seed=3)
    geometry = StudentGeometry(layers=2, hidden=32, heads=2, ffn=64, rank=0)
    config = student_config(geometry, len(tokenizer), teacher.config)
    student = PolynerStudentForTokenClassification(config)
    state = teacher.state_dict()
    assert copy_teacher_layers(student, state, "bert.") == [0, 1]
    assert copy_teacher_classifier(student, state, teacher.config.id2label)
    assert torch.equal(student.classifier.weight, teacher.classifier.weight)
    assert torch.equal(student.student.layers[1].output.weight, teacher.bert.encoder.layer[1].output.dense.weight)
    shuffled = {i: label for i, label in enumerate(reversed(list(teacher.config.id2label.values())))}
    assert not copy_teacher_classifier(student, state, shuffled)  # another label order: keep the fresh head
    narrow = PolynerStudentForTokenClassification(student_config(
        StudentGeometry(layers=2, hidden=16, heads=2, ffn=32, rank=0), len(tokenizer), teacher.config))
    assert copy_teacher_layers(narrow, state, "bert.") == []
    assert not copy_teacher_classifier(narrow, state, teacher.config.id2label)


def _layer_io(teacher, ids, mask, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The input and output hidden states of one teacher layer."""
    seen = {}
    layer = teacher.bert.encoder.layer[index]
    handle = layer.register_forward_hook(lambda _m, args, out: seen.update(x=args[0], y=out[0] if isinstance(out, tuple) else out))
    with torch.no_grad():
        teacher(input_ids=ids, attention_mask=mask)
    handle.remove()
    return seen["x"], seen["y"]


def test_narrow_ffn_student_keeps_the_teachers_most_important_neurons(tokenizer):
    teacher = build_tiny_model(tokenizer, seed=5)
    dead = torch.arange(0, 64, 2)  # half the neurons of every layer write nothing: cutting them loses nothing
    with torch.no_grad():
        for layer in teacher.bert.encoder.layer:
            layer.output.dense.weight[:, dead] = 0.0
    ids, mask = random_batch(vocab=len(tokenizer))
    ranking = rank_ffn_neurons(teacher, [{"input_ids": ids, "attention_mask": mask}], [0, 1])
    assert set(ranking[0][:32].tolist()) == set(range(1, 64, 2))  # the live neurons rank first
    student = PolynerStudentForTokenClassification(student_config(
        StudentGeometry(layers=2, hidden=32, heads=2, ffn=32, rank=0), len(tokenizer), teacher.config)).eval()
    assert copy_teacher_layers(student, teacher.state_dict(), "bert.", ranking) == [0, 1]
    for index in (0, 1):  # each student layer computes what its teacher layer computes
        inputs, outputs = _layer_io(teacher, ids, mask, index)
        with torch.no_grad():
            ours = student.student.layers[index](inputs, mask[:, None, None, :].bool())
        assert torch.allclose(ours[mask.bool()], outputs[mask.bool()], atol=1e-5)
    # without a ranking, weight norms decide, which also finds the dead neurons here
    fresh = PolynerStudentForTokenClassification(student.config)
    assert copy_teacher_layers(fresh, teacher.state_dict(), "bert.") == [0, 1]
    assert torch.equal(fresh.student.layers[0].intermediate.weight, student.student.layers[0].intermediate.weight)


def test_teacher_layer_picks_are_evenly_spaced_and_include_both_ends():
    assert teacher_layer_picks(12, 4) == [0, 4, 7, 11]
    assert teacher_layer_picks(12, 1) == [0]
    assert teacher_layer_picks(2, 2) == [0, 1]


@pytest.mark.parametrize("targets,expected", [("top", [1, 2]), ("aligned", [0, 1])])
def test_representation_targets_choose_the_cached_teacher_states(targets, expected, tiny_model_dir, tmp_path):
    config = DistillConfig(teacher=str(tiny_model_dir), out=str(tmp_path / "o"), geometry=TINY_GEOMETRY,
                           representation_targets=targets)
    assert Distiller(config).teacher_state_indices() == expected  # 1-layer student of a 2-layer teacher


def test_unknown_representation_targets_are_refused():
    with pytest.raises(ValueError, match="representation_targets"):
        DistillConfig(teacher="t", out="o", representation_targets="middle")


def test_include_gold_languages_adds_every_gold_training_language(gold_tree):
    config = DistillConfig(teacher="t", out="o", languages=["de"], gold=str(gold_tree))
    assert with_gold_languages(config).languages == ["de"]
    wider = with_gold_languages(DistillConfig(teacher="t", out="o", languages=["de", "uk"], gold=str(gold_tree),
                                              include_gold_languages=True))
    assert wider.languages == ["de", "uk", "en", "ru"]


# --- the stage plan ----------------------------------------------------------------------------


def _config(**kw) -> DistillConfig:
    return DistillConfig(teacher="t", out="o", geometry={**TINY_GEOMETRY, "layers": 3}, **kw)


def test_plan_stages_order_and_trainable_groups():
    config = _config()
    stages = plan_stages(config)
    assert parameter_groups(3) == ["layer2", "layer1", "layer0", "embeddings"]
    first = stages[0]
    assert first.name.startswith("1") and first.loss == "representation"
    assert set(first.trainable) == {"layer0", "layer1", "layer2", "embeddings", "projections"}
    assert first.budget is config.representation
    assert (stages[1].loss, stages[1].trainable) == ("logits", ("classifier",))
    logits = [s for s in stages if s.loss == "logits"]
    gold = [s for s in stages if s.loss == "gold"]
    assert len(stages) == 1 + len(logits) + len(gold)
    unfreezing = ("layer2", "layer1", "layer0", "embeddings")  # top layer first, embeddings last
    expected = [("classifier",) + unfreezing[:j] for j in range(5)]
    assert [s.trainable for s in logits] == expected
    assert [s.trainable for s in gold] == expected
    assert all(s.budget is config.logits for s in logits) and all(s.budget is config.gold_labels for s in gold)
    assert stages.index(gold[0]) > stages.index(logits[-1])  # gold labels come last
    assert len({s.name for s in stages}) == len(stages)


def test_gold_stages_unfreeze_only_the_top_groups_asked_for():
    full = plan_stages(_config())
    two = plan_stages(_config(gold_unfreeze=2))
    assert [s.name for s in two] == [s.name for s in full if s.name not in ("4-gold-unfreeze-3", "4-gold-unfreeze-4")]
    assert two[-1].trainable == ("classifier", "layer2", "layer1")
    assert [s.name for s in plan_stages(_config(gold_unfreeze=0))][-1] == "4-gold"
    assert plan_stages(_config(gold_unfreeze=9)) == full
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="gold_unfreeze must be a whole number >= 0 or None"):
            _config(gold_unfreeze=bad)


def test_logit_stages_unfreeze_only_the_top_groups_asked_for():
    full = plan_stages(_config())
    three = plan_stages(_config(logits_unfreeze=3))
    assert [s.name for s in three] == [s.name for s in full
                                       if not s.name.startswith("3-logits-unfreeze-") or int(s.name[-1]) <= 3]
    assert [s for s in three if s.loss == "gold"] == [s for s in full if s.loss == "gold"]
    assert plan_stages(_config(logits_unfreeze=9)) == full
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="logits_unfreeze must be a whole number >= 0 or None"):
            _config(logits_unfreeze=bad)


def test_plan_without_representation_stage():
    stages = plan_stages(_config(use_representation_stage=False))
    assert all(s.loss != "representation" for s in stages)
    assert stages[0].name == "2-logits"
    assert [s.name for s in stages] == [s.name for s in plan_stages(_config())][1:]


def test_set_trainable_freezes_everything_else():
    student = tiny_student(layers=3)
    model = DistillationModel(student, teacher_width=24)
    assert len(model.projections) == 4
    group_of = model.groups()
    names = set(group_of.values())
    assert names == {"embeddings", "layer0", "layer1", "layer2", "classifier", "projections"}
    for stage in plan_stages(_config()):
        trainable = model.set_trainable(stage.trainable)
        assert {id(p) for p in trainable} == {id(p) for p in model.parameters() if p.requires_grad}
        for name, param in model.named_parameters():
            assert param.requires_grad == (group_of[name] in stage.trainable), (stage.name, name)
    model.set_trainable(("classifier",))
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"student.classifier.weight",
                                                                           "student.classifier.bias"}
    with pytest.raises(ValueError, match=r"unknown parameter groups \['layer3'\]"):
        model.set_trainable(("classifier", "layer3"))  # a group the student does not have is not silently frozen


# --- losses ------------------------------------------------------------------------------------


def test_masked_mse_ignores_padded_positions():
    g = torch.Generator().manual_seed(1)
    prediction, target = torch.randn(2, 5, 3, generator=g), torch.randn(2, 5, 3, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    loss = masked_mse(prediction, target, mask)
    keep = mask.bool()
    assert torch.allclose(loss, ((prediction[keep] - target[keep]) ** 2).mean())
    prediction2, target2 = prediction.clone(), target.clone()
    prediction2[1, 2:] = 1e3
    target2[1, 2:] = -7.0
    assert torch.allclose(masked_mse(prediction2, target2, mask), loss)
    assert masked_mse(prediction, prediction.clone(), mask) == 0
    assert masked_mse(prediction, target, torch.zeros_like(mask)) == 0  # nothing to compare: no NaN


def test_representation_loss_zero_when_projected_states_match():
    student = tiny_student(layers=2, hidden=16)
    model = DistillationModel(student, teacher_width=16).eval()
    with torch.no_grad():
        for param in student.student.layers.parameters():  # layers that really change the states
            param.normal_(0, 0.5, generator=torch.Generator().manual_seed(3))
        for projection in model.projections:
            projection.weight.copy_(torch.eye(16))
            projection.bias.zero_()
    ids, mask = random_batch()
    with torch.no_grad():
        states = student.student(ids, mask).hidden_states
    teacher = torch.stack(states, dim=2)  # [B, L, states, width], bottom to top
    batch = {"input_ids": ids, "attention_mask": mask, "teacher_hidden": teacher}
    assert representation_loss(model, batch).item() == pytest.approx(0.0, abs=1e-10)
    shifted = teacher.clone()
    shifted[:, :, 1] += 1.0  # one state off by one everywhere: MSE 1 for that state, mean over 3 states
    assert representation_loss(model, {**batch, "teacher_hidden": shifted}).item() == pytest.approx(1 / 3, rel=1e-5)
    swapped = teacher.flip(2)  # states in the wrong order do not match
    assert representation_loss(model, {**batch, "teacher_hidden": swapped}).item() > 0.1
    assert LOSSES["representation"] is representation_loss


def test_representation_loss_gradient_reaches_only_trainable_groups():
    student = tiny_student(layers=2, hidden=16)
    model = DistillationModel(student, teacher_width=24).train()
    model.set_trainable(("layer1", "projections"))
    ids, mask = random_batch()
    teacher = torch.randn(3, 7, 3, 24, generator=torch.Generator().manual_seed(2))
    representation_loss(model, {"input_ids": ids, "attention_mask": mask, "teacher_hidden": teacher}).backward()
    group_of = model.groups()
    for name, param in model.named_parameters():
        if group_of[name] in ("layer1", "projections"):
            assert param.grad is not None, name
        else:
            assert param.grad is None, name
    assert any(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if group_of[n] == "layer1")


def test_anchored_gold_loss_adds_the_weighted_logit_loss_of_the_transfer_batch():
    model = DistillationModel(tiny_student(layers=2, hidden=16), teacher_width=16).eval()  # no dropout: comparable
    ids, mask = random_batch()
    labels = torch.randint(0, len(ID2LABEL), ids.shape, generator=torch.Generator().manual_seed(4))
    gold = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    anchor_ids, anchor_mask = random_batch(seed=5)
    teacher_logits = torch.randn(*anchor_ids.shape, len(ID2LABEL), generator=torch.Generator().manual_seed(6))
    transfer = {"input_ids": anchor_ids, "attention_mask": anchor_mask, "teacher_logits": teacher_logits}
    batch = {**gold, **{ANCHOR + key: value for key, value in transfer.items()}}
    expected = gold_loss(model, gold) + 0.25 * logit_loss(model, transfer)
    assert torch.allclose(anchored_gold_loss(0.25)(model, batch), expected)
    assert torch.allclose(anchored_gold_loss(0.0)(model, batch), gold_loss(model, gold))
    # a gold stage takes the anchored loss only when the weight is set; the other stages keep theirs
    stages = {s.loss: s for s in plan_stages(_config())}
    assert stage_loss(stages["gold"], _config()) is gold_loss
    assert stage_loss(stages["logits"], _config(gold_logit_weight=1.0)) is logit_loss
    anchored = stage_loss(stages["gold"], _config(gold_logit_weight=0.25))
    assert torch.allclose(anchored(model, batch), expected)
    for bad in (-1, True, "1", float("inf"), float("nan")):
        with pytest.raises(ValueError, match="gold_logit_weight must be a finite number >= 0"):
            _config(gold_logit_weight=bad)


def test_silver_labels_setting_is_checked():
    assert _config().silver_labels == "all" and _config(silver_labels="no-gold").silver_labels == "no-gold"
    with pytest.raises(ValueError, match="unknown silver_labels 'none'"):
        _config(silver_labels="none")


def test_lowercase_share_is_checked():
    assert _config().lowercase_share == 0.0 and _config(lowercase_share=0.25).lowercase_share == 0.25
    with pytest.raises(ValueError, match="lowercase_share must be between 0 and 1, not -0.1"):
        _config(lowercase_share=-0.1)


# --- teacher cache ------------------------------------------------------------------------------


@pytest.fixture()
def cache_inputs(tokenizer):
    teacher = build_tiny_model(tokenizer)
    rng = np.random.default_rng(0)
    keep = np.sort(rng.choice(np.arange(5, len(tokenizer)), size=120, replace=False))
    keep = np.concatenate([np.arange(5), keep])  # specials first, as trimming keeps them
    ids = [rng.integers(5, len(keep), size=int(n)).astype(np.int32) for n in rng.integers(2, 14, size=21)]
    return SimpleNamespace(teacher=teacher, keep=keep, ids=ids, langs=["en", "de", "ru"] * 7, pad=1)


class CountingTeacher(torch.nn.Module):
    """A teacher that records how many sentences each of its batches holds."""

    def __init__(self, teacher, rows: list):
        super().__init__()
        self.config, self.inner, self.rows = teacher.config, teacher, rows

    def forward(self, **kwargs):
        self.rows.append(len(kwargs["input_ids"]))
        return self.inner(**kwargs)


def interrupt_teacher_after(monkeypatch, teacher, batches: int):
    """Make ``teacher`` raise KeyboardInterrupt after ``batches`` batches; return its forward and the call list."""
    original, calls = teacher.forward, []

    def failing(*args, **kwargs):
        if len(calls) == batches:
            raise KeyboardInterrupt("simulated interruption")
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(teacher, "forward", failing)
    return original, calls


def _build(folder, inp, **kw):
    return build_teacher_cache(folder, inp.teacher, "tiny-teacher", inp.ids, inp.keep, inp.langs, 2, inp.pad,
                               batch_size=4, chunk_batches=1, **kw)


def test_teacher_cache_holds_top_states_and_logits(tmp_path, cache_inputs):
    inp = cache_inputs
    cache = _build(tmp_path / "cache", inp)
    assert len(cache) == len(inp.ids) and cache.langs == inp.langs
    assert cache.hidden.shape[1:] == (2, 32) and cache.logits.shape[1] == 7
    with torch.no_grad():
        for i in (0, 5, 20):
            teacher_ids = torch.from_numpy(inp.keep[inp.ids[i]].astype(np.int64))[None]
            out = inp.teacher(input_ids=teacher_ids, attention_mask=torch.ones_like(teacher_ids),
                              output_hidden_states=True)
            a, z = cache.span(i)
            np.testing.assert_array_equal(cache.ids[a:z], inp.ids[i])
            np.testing.assert_allclose(np.asarray(cache.logits[a:z], np.float32), out.logits[0].numpy(),
                                       atol=3e-3, rtol=1e-2)
            top = torch.stack(out.hidden_states[-2:], dim=2)[0].numpy()  # [L, 2, width], bottom to top
            np.testing.assert_allclose(np.asarray(cache.hidden[a:z], np.float32), top, atol=3e-3, rtol=1e-2)
            # not the bottom states: the cache really holds the topmost ones
            assert not np.allclose(np.asarray(cache.hidden[a:z, 0], np.float32), out.hidden_states[0][0].numpy(),
                                   atol=1e-2)
    batch = cache.batch([3, 0, 7], inp.pad, with_hidden=True)
    width = max(len(inp.ids[i]) for i in (3, 0, 7))
    assert batch["input_ids"].shape == (3, width) and batch["teacher_hidden"].shape == (3, width, 2, 32)
    assert batch["attention_mask"].sum(1).tolist() == [len(inp.ids[i]) for i in (3, 0, 7)]
    assert (batch["input_ids"][batch["attention_mask"] == 0] == inp.pad).all()
    assert "teacher_hidden" not in cache.batch([0], inp.pad, with_hidden=False)


def test_a_teacher_cache_of_other_pieces_is_refused_not_overwritten(tmp_path, cache_inputs):
    """Code that reads the transfer text otherwise gives other pieces: the run stops, naming why, and the outputs it
    would have wiped (hours of teacher passes for a real run) stay."""
    from polyner.distill.teacher_cache import StaleTeacherCacheError

    inp = cache_inputs
    _build(tmp_path / "cache", inp)
    before = (tmp_path / "cache" / "logits.f16").read_bytes()
    other = list(inp.ids)
    other[3] = other[3][:-1]  # one piece fewer in one sentence
    with pytest.raises(StaleTeacherCacheError, match=r"pieces.*move the folder away"):
        build_teacher_cache(tmp_path / "cache", inp.teacher, "tiny-teacher", other, inp.keep, inp.langs, 2, inp.pad,
                            batch_size=4, chunk_batches=1)
    with pytest.raises(StaleTeacherCacheError, match=r"teacher states \[1, 2\], and this run matches \[0, 2\]"):
        _build(tmp_path / "cache", inp, state_indices=[0, 2])
    assert (tmp_path / "cache" / "logits.f16").read_bytes() == before
    assert len(_build(tmp_path / "cache", inp)) == len(inp.ids)  # the run that built it goes on


def test_teacher_cache_reuses_an_earlier_cache_for_a_subset(tmp_path, cache_inputs):
    inp = cache_inputs
    full = _build(tmp_path / "full", inp)
    subset = SimpleNamespace(**{**vars(inp), "ids": inp.ids[3:15:2], "langs": inp.langs[3:15:2]})

    class NoTeacher(torch.nn.Module):  # the copy must not run the teacher
        config = inp.teacher.config

        def forward(self, **kwargs):
            raise AssertionError("teacher ran")

    subset.teacher = NoTeacher()
    reused = _build(tmp_path / "subset", subset, reuse_from=tmp_path / "full")
    for i, j in enumerate(range(3, 15, 2)):
        (a, z), (fa, fz) = reused.span(i), full.span(j)
        np.testing.assert_array_equal(reused.logits[a:z], full.logits[fa:fz])
        np.testing.assert_array_equal(reused.hidden[a:z], full.hidden[fa:fz])
    extra = SimpleNamespace(**{**vars(inp), "ids": inp.ids[:3] + [np.array([7, 8, 9, 10, 11, 12, 13], np.int32)],
                               "langs": inp.langs[:4]})
    rows_run = []
    extra.teacher = CountingTeacher(inp.teacher, rows_run)  # the teacher runs on the new sentence only
    computed = _build(tmp_path / "extra", extra, reuse_from=tmp_path / "full")
    assert rows_run == [1]
    a, z = computed.span(3)
    assert z - a == 7 and np.abs(np.asarray(computed.logits[a:z], np.float32)).sum() > 0
    for i in range(3):  # the shared sentences are copied
        (a, z), (fa, fz) = computed.span(i), full.span(i)
        np.testing.assert_array_equal(computed.hidden[a:z], full.hidden[fa:fz])
    assert _build(tmp_path / "extra", extra, reuse_from=tmp_path / "full") and rows_run == [1]  # complete: no rerun


def test_teacher_cache_resumes_after_interruption(tmp_path, cache_inputs, monkeypatch):
    inp = cache_inputs
    whole = _build(tmp_path / "whole", inp)
    original, calls = interrupt_teacher_after(monkeypatch, inp.teacher, 2)
    with pytest.raises(KeyboardInterrupt):
        _build(tmp_path / "resumed", inp)
    meta = json.loads((tmp_path / "resumed" / "meta.json").read_text())
    assert meta["batches_done"] == 2 and not meta["complete"]
    with pytest.raises(ValueError, match="incomplete"):
        open_teacher_cache(tmp_path / "resumed")

    calls.clear()
    monkeypatch.setattr(inp.teacher, "forward", lambda *a, **k: (calls.append(1), original(*a, **k))[1])
    resumed = _build(tmp_path / "resumed", inp)
    assert len(calls) == 6 - 2  # 21 sentences in batches of 4: only the 4 batches not yet done are run
    np.testing.assert_array_equal(np.asarray(resumed.logits), np.asarray(whole.logits))
    np.testing.assert_array_equal(np.asarray(resumed.hidden), np.asarray(whole.hidden))
    calls.clear()
    _build(tmp_path / "resumed", inp)  # complete: nothing to recompute
    assert calls == []


def test_teacher_cache_reuse_matches_sentences_on_the_teachers_pieces(tmp_path, cache_inputs):
    """Two runs with other vocabularies: the same student ids are other text (not copied), other student ids of the
    same teacher pieces are the same text (copied)."""
    inp = cache_inputs
    full = _build(tmp_path / "full", inp)
    assert np.array_equal(np.load(tmp_path / "full" / "keep_ids.npy"), inp.keep)
    shifted = np.concatenate([inp.keep[:5], np.roll(inp.keep[5:], 1)])  # student id i is now teacher piece keep[i-1]
    same_ids = SimpleNamespace(**{**vars(inp), "keep": shifted})
    rows_run = []
    same_ids.teacher = CountingTeacher(inp.teacher, rows_run)
    _build(tmp_path / "other-text", same_ids, reuse_from=tmp_path / "full")
    assert sum(rows_run) == len(inp.ids)  # nothing copied: those ids are other pieces now
    position = {int(t): i for i, t in enumerate(shifted)}
    recoded = [np.array([position[int(inp.keep[k])] for k in ids], np.int32) for ids in inp.ids]
    same_text = SimpleNamespace(**{**vars(same_ids), "ids": recoded})
    rows_run.clear()
    copied = _build(tmp_path / "same-text", same_text, reuse_from=tmp_path / "full")
    assert rows_run == []
    np.testing.assert_array_equal(np.asarray(copied.logits), np.asarray(full.logits))


def test_teacher_cache_partly_reused_resumes_on_the_sentences_left(tmp_path, cache_inputs, monkeypatch):
    inp = cache_inputs
    half = SimpleNamespace(**{**vars(inp), "ids": inp.ids[:10], "langs": inp.langs[:10]})
    _build(tmp_path / "half", half)
    whole = _build(tmp_path / "whole", inp)
    original, calls = interrupt_teacher_after(monkeypatch, inp.teacher, 1)
    with pytest.raises(KeyboardInterrupt):  # 10 sentences copied, 11 for the teacher: 3 batches, stopped after 1
        _build(tmp_path / "grown", inp, reuse_from=tmp_path / "half")
    calls.clear()
    monkeypatch.setattr(inp.teacher, "forward", lambda *a, **k: (calls.append(1), original(*a, **k))[1])
    grown = _build(tmp_path / "grown", inp, reuse_from=tmp_path / "half")
    assert len(calls) == 2
    np.testing.assert_allclose(np.asarray(grown.logits, np.float32), np.asarray(whole.logits, np.float32), atol=3e-3)
    np.testing.assert_allclose(np.asarray(grown.hidden, np.float32), np.asarray(whole.hidden, np.float32), atol=3e-3)


def test_teacher_cache_without_hidden_states(tmp_path, cache_inputs):
    cache = _build(tmp_path / "c", cache_inputs, store_hidden=False)
    assert cache.hidden is None
    assert "teacher_hidden" not in cache.batch([0, 1], 1, with_hidden=True)


def test_teacher_cache_adds_hidden_states_when_a_later_run_needs_them(tmp_path, cache_inputs):
    """A --no-stage1 run followed by a run with stage 1 in the same folder must get hidden states."""
    _build(tmp_path / "c", cache_inputs, store_hidden=False)
    cache = _build(tmp_path / "c", cache_inputs, store_hidden=True)
    assert cache.hidden is not None and cache.hidden.shape[1:] == (2, 32)
    assert "teacher_hidden" in cache.batch([0, 1], 1, with_hidden=True)


# --- transfer set ------------------------------------------------------------------------------


@pytest.fixture()
def unlabeled_dir(tmp_path) -> Path:
    folder = tmp_path / "unlabeled"
    folder.mkdir()
    (folder / "en.txt").write_text("\n".join(SAMPLE_TEXTS[:3]) + "\n\n", encoding="utf-8")
    (folder / "de.txt").write_text(SAMPLE_TEXTS[2] + "\n", encoding="utf-8")
    (folder / "ru.txt").write_text("\n".join(SAMPLE_TEXTS[3:5]) + "\n", encoding="utf-8")
    (folder / "uk.txt").write_text(SAMPLE_TEXTS[14] + "\n", encoding="utf-8")
    return folder


def test_missing_languages_are_all_named(unlabeled_dir, gold_tree):
    with pytest.raises(MissingLanguageError) as caught:
        build_transfer_set(["en", "xx", "yy"], [unlabeled_dir / "en.txt"], None, 10, 10, 0, None)
    named = re.search(r"language\(s\) ([^:]*):", str(caught.value)).group(1)
    assert named.split(", ") == ["xx", "yy"]
    assert isinstance(caught.value, ValueError)
    # gold training text alone is enough for a language (ru has no unlabeled file given here)
    transfer = build_transfer_set(["en", "ru"], [unlabeled_dir / "en.txt"], gold_tree, 10, 10, 0, None)
    assert {s.lang for s in transfer} == {"en", "ru"}


def test_language_text_scale_multiplies_one_languages_text(unlabeled_dir, gold_tree):
    def counts(scale):
        transfer = build_transfer_set(["en", "de"], [unlabeled_dir], gold_tree, 1, 1, 0, None, text_scale=scale)
        return {lang: sum(s.lang == lang for s in transfer) for lang in ("en", "de")}

    plain = counts(None)
    assert plain == counts({})
    with pytest.raises(ValueError, match="language_text_scale names language\\(s\\) fr"):
        counts({"fr": 3.0})
    doubled = counts({"en": 2})
    assert doubled == {"en": 2 * plain["en"], "de": plain["de"]}  # one more unlabeled line and one more gold sentence
    with pytest.raises(ValueError, match="language_text_scale"):
        DistillConfig(teacher="t", out="o", language_text_scale={"en": 0})
    with pytest.raises(ValueError, match="language_text_scale"):
        DistillConfig(teacher="t", out="o", language_text_scale={"en": "2"})
    with pytest.raises(ValueError, match="quote language codes"):
        DistillConfig(teacher="t", out="o", language_text_scale={False: 2})  # YAML's `no: 2`
    assert DistillConfig(teacher="t", out="o", language_text_scale=None).language_text_scale == {}


def test_unlabeled_files_accepts_files_folders_and_pairs(tmp_path, unlabeled_dir):
    other = tmp_path / "other"
    other.mkdir()
    (other / "fr.txt").write_text("Bonjour Paris.\n", encoding="utf-8")
    (other / "swahili_news.txt").write_text("Habari Nairobi.\n", encoding="utf-8")
    found = unlabeled_files([unlabeled_dir, other / "fr.txt", f"sw={other / 'swahili_news.txt'}"],
                            ["en", "de", "fr", "sw"])
    assert found == {"en": [unlabeled_dir / "en.txt"], "de": [unlabeled_dir / "de.txt"], "fr": [other / "fr.txt"],
                     "sw": [other / "swahili_news.txt"]}  # ru, uk not requested
    assert unlabeled_files([str(unlabeled_dir)], ["ru"]) == {"ru": [unlabeled_dir / "ru.txt"]}
    with pytest.raises(FileNotFoundError):
        unlabeled_files([f"sw={tmp_path / 'nope.txt'}"], ["sw"])
    with pytest.raises(FileNotFoundError):
        unlabeled_files([tmp_path / "en.txt"], ["en"])


def test_turkish_lines_written_without_turkish_letters_are_left_out(tmp_path):
    """73% of our unlabeled Turkish lost its letters (Hi itirazm yok); such lines are not transfer text, while
    short lines, proper Turkish and other languages' lines stay."""
    import random

    from polyner.distill.transfer import read_lines

    stripped = "Cemil iek tasarnn TBMM'ye sevkinden nce ieriinde deiiklik yaplmadn dedi."
    proper = "Cemil Çiçek, tasarının TBMM'ye sevkinden önce içeriğinde değişiklik yapılmadığını söyledi."
    short = "Ankara Kalesi"
    path = tmp_path / "tr.txt"
    path.write_text("\n".join([stripped, proper, short, ""]), encoding="utf-8")
    assert sorted(read_lines([path], 10, random.Random(0), "tr")) == sorted([proper, short])
    assert len(read_lines([path], 10, random.Random(0), "az")) == 3  # no expected letters named for it
    assert len(read_lines([path], 10, random.Random(0))) == 3


def test_transfer_set_origins_and_augmentation_switch(unlabeled_dir, gold_tree):
    args = (LANGS, [unlabeled_dir], gold_tree, 10, 10)
    plain = build_transfer_set(*args, 0, None)
    assert {s.origin for s in plain} == {"unlabeled", "gold"}
    assert {(s.lang, s.origin) for s in plain} >= {("en", "unlabeled"), ("en", "gold"), ("uk", "unlabeled")}
    assert sum(s.origin == "unlabeled" and s.lang == "en" for s in plain) == 3  # empty lines skipped
    augmented = build_transfer_set(*args, 2, None)
    assert {s.origin for s in augmented} == {"unlabeled", "gold", "augmented"}
    assert [s for s in augmented if s.origin != "augmented"] == plain
    for sentence in augmented:
        assert sentence.words and all(isinstance(w, str) and w and not w.isspace() for w in sentence.words)
        assert sentence.lang in LANGS
    assert build_transfer_set(*args, 2, None) == augmented  # seeded


def test_transfer_text_takes_sources_in_turn_and_entities_first():
    """A language's gold (or silver) text is drawn from each of its sources in turn, not in proportion to their
    sizes, and a source's sentences with entities come before those without."""
    import random

    from polyner.data.iob2 import Sentence
    from polyner.distill.transfer import balanced_sample

    big = [Sentence(["w"], ["O"], "ru", "big") for _ in range(50)] + [Sentence(["Ivan"], ["B-PER"], "ru", "big")]
    small = [Sentence(["Oslo"], ["B-LOC"], "ru", "small"), Sentence(["x"], ["O"], "ru", "small")]
    picked = balanced_sample(big + small, 4, random.Random(0))
    assert sorted(s.source for s in picked) == ["big", "big", "small", "small"]
    assert [s.words for s in picked if s.source == "big"][0] == ["Ivan"]  # the big source's entity sentence first
    assert [s.words for s in picked if s.source == "small"] == [["Oslo"], ["x"]]
    assert len(balanced_sample(big + small, 100)) == 53  # everything when the limit allows
    assert balanced_sample(big + small, 0) == []


def test_gold_transfer_text_is_split_as_the_tagger_splits_raw_text(tmp_path, cjk_tokenizer):
    """Character-level Chinese gold (as MSRA zh) enters the transfer set in the words the tagger cuts from the text."""
    from conftest import CJK_TEXTS
    from polyner.tagging.words import segment_words, tokenizer_run_splitter

    text = CJK_TEXTS[1]
    folder = tmp_path / "gold" / "msra_like" / "zh"
    folder.mkdir(parents=True)
    tags = ["O", "O", "O", "B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "O"]
    (folder / "train.iob2").write_text("".join(f"{c}\t{t}\n" for c, t in zip(text, tags)), encoding="utf-8")
    split_run = tokenizer_run_splitter(cjk_tokenizer)
    transfer = build_transfer_set(["zh"], [], tmp_path / "gold", 0, 10, 0, None, split_run=split_run)
    assert [s.words for s in transfer] == [[text[a:b] for a, b in segment_words(text, split_run)]]
    assert "北京" in transfer[0].words


def test_transfer_words_are_recut_with_the_students_pieces(cjk_tokenizer):
    """The transfer set is cut with the teacher's pieces before the student's vocabulary exists; the student is fed
    its words as its own tagger cuts them (the teacher's 在北京 is 在 + 北京 for a vocabulary without that piece)."""
    from polyner.distill.trainer import student_words
    from polyner.distill.transfer import TransferSentence

    transfer = [TransferSentence(["他", "曾", "在北京", "大学"], "zh", "gold"),
                TransferSentence(["Angela", "Merkel"], "de", "unlabeled")]
    assert student_words(transfer, cjk_tokenizer) == [["他", "曾", "在", "北京", "大学"], ["Angela", "Merkel"]]


def test_distiller_transfer_set_follows_use_augmented(tmp_path, tiny_model_dir, unlabeled_dir, gold_tree):
    def origins(**kw):
        config = DistillConfig(teacher=str(tiny_model_dir), out=str(tmp_path / "out"), languages=LANGS,
                               unlabeled=[str(unlabeled_dir)], gold=str(gold_tree), augmented_per_language=2,
                               threads=1, **kw)
        return {s.origin for s in Distiller(config).transfer_set()}

    assert origins(use_augmented=False) == {"unlabeled", "gold"}
    assert origins() == {"unlabeled", "gold", "augmented"}  # a changed recipe rebuilds the cached transfer set


# --- tokenizer check ----------------------------------------------------------------------------


def test_check_tokenizers_refuses_a_foreign_vocabulary(tmp_path, tokenizer):
    from polyner.distill.vocab import count_pieces, select_vocabulary, trim_tokenizer

    counts = count_pieces(tokenizer, texts=SAMPLE_TEXTS[:4])
    keep = np.asarray(select_vocabulary(tokenizer, counts, keep_single_chars=False), dtype=np.int64)
    student, _ = trim_tokenizer(tokenizer, keep.tolist(), tmp_path / "student")
    check_tokenizers(tokenizer, student, keep)  # the right pair passes

    shuffled = keep.copy()
    shuffled[10:] = shuffled[10:][::-1]
    with pytest.raises(TokenizerMismatchError, match="mismatch") as caught:
        check_tokenizers(tokenizer, student, shuffled)
    assert "differ from the teacher" in str(caught.value)

    counts2 = count_pieces(tokenizer, texts=SAMPLE_TEXTS[5:9])
    keep2 = np.asarray(select_vocabulary(tokenizer, counts2, keep_single_chars=False), dtype=np.int64)
    other, _ = trim_tokenizer(tokenizer, keep2.tolist(), tmp_path / "other")
    with pytest.raises(TokenizerMismatchError, match="not trimmed from this teacher|differ from the teacher"):
        check_tokenizers(tokenizer, other, keep)
    other_piece = next(i for i in range(len(tokenizer) - 1, 0, -1) if i not in set(keep.tolist()))
    swapped_one = np.sort(np.concatenate([keep[:-3], [other_piece], keep[-2:]]))  # same size, one piece foreign
    with pytest.raises(TokenizerMismatchError, match="differ from the teacher"):
        check_tokenizers(tokenizer, student, swapped_one)
    with pytest.raises(TokenizerMismatchError, match="not trimmed"):
        check_tokenizers(tokenizer, student, keep[:-1])


# --- configuration ------------------------------------------------------------------------------


def test_marked_section_takes_the_text_between_markers():
    from polyner.distill.package import marked_section

    page = "# report\nintro\n<!-- polyner:speed -->\n| a | b |\n<!-- /polyner:speed -->\nafter"
    assert marked_section(page, "speed") == "| a | b |"
    assert marked_section("| only | table |\n", "speed") == "| only | table |"


def test_config_from_yaml_with_nested_budgets(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("teacher: /models/teacher\nout: /models/student\npreset: xs\nlanguages: [de, sw]\n"
                    "use_representation_stage: false\n"
                    "representation: {steps: 50, eval_every: 10}\n"
                    "logits:\n  steps: 20\n  patience: 2\n"
                    "gold_labels: {steps: 5, lr: 0.00002}\n", encoding="utf-8")
    config = DistillConfig.from_file(path)
    assert (config.teacher, config.preset, config.languages) == ("/models/teacher", "xs", ["de", "sw"])
    assert config.student == PRESETS["xs"] and not config.use_representation_stage
    assert isinstance(config.logits, StageBudget)
    assert (config.representation.steps, config.representation.eval_every) == (50, 10)
    assert (config.logits.steps, config.logits.patience) == (20, 2)
    assert (config.gold_labels.steps, config.gold_labels.lr) == (5, 2e-5)
    # what the file leaves out keeps the recipe's value for that stage
    default = DistillConfig(teacher="t", out="o")
    assert config.logits.lr == default.logits.lr and config.logits.eval_every == default.logits.eval_every
    assert config.gold_labels.eval_every == default.gold_labels.eval_every
    assert DistillConfig.from_file(path, preset="m", seed=None).preset == "m"  # overrides win, None ignored


RECIPES = sorted((Path(__file__).resolve().parents[1] / "distill" / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_loads_and_plans_its_stages(recipe):
    """The recipes the README and docs/results.md name are valid configs (a misspelt key would stop a run)."""
    config = DistillConfig.from_file(recipe, teacher="t", out="o")
    stages = plan_stages(config)
    assert stages[0].name == ("1-representation" if config.use_representation_stage else "2-logits")
    assert stages[-1].loss == "gold" and config.student.hidden % config.student.heads == 0


def test_a_recipe_starts_from_its_base(tmp_path):
    """``base:`` reads another recipe first; the recipe's own settings win, nested ones key by key."""
    (tmp_path / "parent.yaml").write_text("preset: xs\nseed: 5\nlogits: {steps: 20, lr: 0.001}\n"
                                          "geometry: {layers: 2, hidden: 64, heads: 2, ffn: 128, rank: 32}\n")
    (tmp_path / "child.yaml").write_text("base: parent.yaml\nseed: 7\nlogits: {steps: 9}\ngeometry: {rank: 16}\n")
    child = DistillConfig.from_file(tmp_path / "child.yaml", teacher="t", out="o")
    assert (child.preset, child.seed) == ("xs", 7)
    assert (child.logits.steps, child.logits.lr) == (9, 0.001)
    assert child.student == StudentGeometry(layers=2, hidden=64, heads=2, ffn=128, rank=16)
    assert DistillConfig.from_file(tmp_path / "child.yaml", teacher="t", out="o", seed=1).seed == 1


def test_a_recipe_replaces_what_is_not_an_encoder_or_budget(tmp_path):
    (tmp_path / "parent.yaml").write_text("language_text_scale: {ar: 2, he: 2}\nlogits: {steps: 20, lr: 0.001}\n"
                                          "geometry: {layers: 2, hidden: 64, heads: 2, ffn: 128, rank: 32}\n")
    (tmp_path / "child.yaml").write_text("base: parent.yaml\nlanguage_text_scale: {ar: 3}\nlogits: {}\n")
    child = DistillConfig.from_file(tmp_path / "child.yaml", teacher="t", out="o")
    assert child.language_text_scale == {"ar": 3}
    assert child.logits == DistillConfig(teacher="t", out="o").logits  # an empty budget: the recipe defaults
    (tmp_path / "child.yaml").write_text("base: parent.yaml\nlanguage_text_scale:\npreset: xs\n")
    child = DistillConfig.from_file(tmp_path / "child.yaml", teacher="t", out="o")
    assert child.language_text_scale == {} and child.student == PRESETS["xs"]


def test_recipe_base_errors_name_the_file(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ValueError, match="cycle"):
        DistillConfig.from_file(tmp_path / "a.yaml", teacher="t", out="o")
    (tmp_path / "b.yaml").write_text("sed: 3\n")
    with pytest.raises(ValueError, match=r"b\.yaml: unknown distillation settings \['sed'\]"):
        DistillConfig.from_file(tmp_path / "a.yaml", teacher="t", out="o")
    (tmp_path / "a.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        DistillConfig.from_file(tmp_path / "a.yaml", teacher="t", out="o")
    (tmp_path / "a.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        DistillConfig.from_file(tmp_path / "a.yaml", teacher="t", out="o")


def test_text_runs_is_full_rank_at_rank_192():
    """student-v7's recipe changes one thing of student-v6's: the embedding rank."""
    folder = RECIPES[0].parent
    text_runs = DistillConfig.from_file(folder / "text-runs.yaml", teacher="t", out="o")
    full_rank = DistillConfig.from_file(folder / "full-rank.yaml", teacher="t", out="o")
    assert text_runs.student.rank == 192 and full_rank.student.rank == 384
    assert replace(text_runs, geometry={**text_runs.geometry, "rank": 384}) == full_rank


def test_the_recipes_are_found():
    assert {"all-data", "full-rank", "text-runs"} <= {p.stem for p in RECIPES}


def test_config_from_json_round_trip_and_unknown_keys(tmp_path):
    config = DistillConfig(teacher="t", out="o", geometry=TINY_GEOMETRY, logits=StageBudget(steps=7, lr=1e-3))
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(config.to_dict()), encoding="utf-8")
    assert DistillConfig.from_file(path) == config
    path.write_text(json.dumps({"teacher": "t", "out": "o", "represntation_steps": 5}), encoding="utf-8")
    with pytest.raises(ValueError, match="represntation_steps"):
        DistillConfig.from_file(path)
    path.write_text(json.dumps({"teacher": "t", "out": "o", "logits": {"step": 5}}), encoding="utf-8")
    with pytest.raises(ValueError, match="step"):
        DistillConfig.from_file(path)
    path.write_text(json.dumps({"teacher": "t", "out": "o", "geometry": {**TINY_GEOMETRY, "depth": 2}}))
    with pytest.raises(ValueError, match="depth"):
        DistillConfig.from_file(path)
    with pytest.raises(ValueError, match="preset"):
        DistillConfig(teacher="t", out="o", preset="xl")


# --- whole runs ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("distill")
    teacher = root / "teacher"
    build_tiny_model(tokenizer).save_pretrained(teacher)
    tokenizer.save_pretrained(teacher)
    unlabeled = root / "unlabeled"
    unlabeled.mkdir()
    (unlabeled / "en.txt").write_text("\n".join(SAMPLE_TEXTS[:6]) + "\n", encoding="utf-8")
    (unlabeled / "de.txt").write_text("\n".join(SAMPLE_TEXTS[2:4]) + "\n", encoding="utf-8")
    (unlabeled / "ru.txt").write_text("\n".join(SAMPLE_TEXTS[3:5]) + "\n", encoding="utf-8")
    (unlabeled / "uk.txt").write_text(SAMPLE_TEXTS[14] + "\n", encoding="utf-8")
    return SimpleNamespace(root=root, teacher=teacher, unlabeled=unlabeled, gold=write_gold_tree(root / "gold"))


def run_config(ws, out: Path, **kw) -> DistillConfig:
    settings = dict(teacher=str(ws.teacher), out=str(out), languages=LANGS, unlabeled=[str(ws.unlabeled)],
                    gold=str(ws.gold), geometry=TINY_GEOMETRY, min_piece_count=1, max_vocab=None,
                    representation=StageBudget(steps=4, eval_every=2), logits=StageBudget(steps=2, eval_every=1),
                    gold_labels=StageBudget(steps=2, eval_every=1), batch_size=4, threads=1,
                    augmented_per_language=2)
    settings.update(kw)
    return DistillConfig(**settings)


PEAK = 4  # the dev evaluation that scores best (stage 3-logits-unfreeze-2, step 1, with a 1-layer student)


class ScriptedDev:
    """Wraps Distiller.dev_f1: runs the real evaluation, returns a scripted score peaking at call PEAK,
    keeps the student weights of that call; ``fail_at`` simulates an interruption at that call."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls = 0
        self.real: list[float] = []
        self.best_weights: dict | None = None
        self.fail_at = fail_at
        self.original = Distiller.dev_f1

    def __call__(self, distiller, model, tokenizer, dev):
        if self.calls == self.fail_at:
            self.fail_at = None
            raise KeyboardInterrupt("simulated interruption")
        real, by_language = self.original(distiller, model, tokenizer, dev)
        self.real.append(real)
        if self.calls == PEAK:
            self.best_weights = {k: v.detach().clone() for k, v in model.student.state_dict().items()}
        score = 50.0 - 4.0 * abs(self.calls - PEAK)
        self.calls += 1
        return score, by_language


def run_scripted(config: DistillConfig, script: ScriptedDev) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Distiller, "dev_f1", lambda self, *a: script(self, *a))
        return distill(config)


@pytest.fixture(scope="module")
def distilled(workspace):
    script = ScriptedDev()
    out = run_scripted(run_config(workspace, workspace.root / "student"), script)
    return SimpleNamespace(out=out, script=script, log=json.loads((out / "training_log.json").read_text()))


def test_a_bf16_run_trains_under_autocast(workspace, tmp_path, monkeypatch):
    """--bf16 reaches every stage's loop, and the student it writes is float32 and loads."""
    import polyner
    from polyner.training import engine

    seen = []
    original = engine.train_loop

    def spy(settings, *args, **kwargs):
        seen.append(settings.bf16)
        return original(settings, *args, **kwargs)

    monkeypatch.setattr("polyner.distill.trainer.train_loop", spy)
    out = run_scripted(run_config(workspace, tmp_path / "bf16", bf16=True, use_representation_stage=False),
                       ScriptedDev())
    assert seen and all(seen)
    weights = load_file(str(out / "model.safetensors"))
    assert all(t.dtype == torch.float32 for t in weights.values() if t.is_floating_point())
    text = "Angela Merkel visited Paris."
    (entities,) = polyner.load(out)([text])
    assert all(text[e["start"]:e["end"]] == e["text"] and e["label"] in ("PER", "ORG", "LOC") for e in entities)


def test_bucketed_batches_are_cut_by_length(workspace, tmp_path, monkeypatch):
    """bucket: N consecutive batches come from one draw sorted by length (less padding), in transfer and gold
    stages alike."""
    from polyner.training import engine

    lengths = {}
    original = engine.train_loop

    def spy(settings, model, optimizer, scheduler, step, *args, **kwargs):
        lengths[settings.log_prefix] = [step.batch(k)["attention_mask"].sum(1).tolist() for k in range(4)]
        return original(settings, model, optimizer, scheduler, step, *args, **kwargs)

    monkeypatch.setattr("polyner.distill.trainer.train_loop", spy)
    out = run_scripted(run_config(workspace, tmp_path / "bucketed", bucket=4, use_representation_stage=False),
                       ScriptedDev())
    assert {"2-logits", "4-gold"} <= set(lengths) and (out / "model.safetensors").exists()
    for stage, batches in lengths.items():
        ranges = sorted((min(b), max(b)) for b in batches)
        assert all(high <= low for (_, high), (low, _) in zip(ranges, ranges[1:])), (stage, batches)
        assert ranges[0][0] < ranges[-1][1], (stage, batches)  # the draw had sentences of several lengths


def test_bucket_setting_is_checked():
    assert _config().bucket == 1 and _config(bucket=16).bucket == 16
    for bad in (0, True, 2.5):
        with pytest.raises(ValueError, match="bucket must be a whole number >= 1"):
            _config(bucket=bad)


def test_anchored_gold_stages_train_on_gold_and_transfer_batches(workspace, tmp_path, monkeypatch):
    """gold_logit_weight: each gold-stage batch carries a transfer batch with the teacher's logits, and the run ends
    with a student as usual."""
    from polyner.training import engine

    keys, anchor_moves_loss = {}, {}
    original = engine.train_loop

    def spy(settings, model, optimizer, scheduler, step, *args, **kwargs):
        batch = step.batch(0)
        keys[settings.log_prefix] = set(batch)
        if "labels" in batch:  # the loss the stage trains on is not the gold cross-entropy alone
            model.eval()
            with torch.no_grad():
                anchor_moves_loss[settings.log_prefix] = not torch.allclose(step.loss(model, batch),
                                                                            gold_loss(model, batch))
            model.train()
        return original(settings, model, optimizer, scheduler, step, *args, **kwargs)

    monkeypatch.setattr("polyner.distill.trainer.train_loop", spy)
    out = run_scripted(run_config(workspace, tmp_path / "anchored", gold_logit_weight=0.5,
                                  use_representation_stage=False), ScriptedDev())
    assert keys["4-gold"] >= {"input_ids", "labels", ANCHOR + "input_ids", ANCHOR + "teacher_logits"}
    assert not any(key.startswith(ANCHOR) for key in keys["2-logits"])
    assert anchor_moves_loss and all(anchor_moves_loss.values())
    assert (out / "model.safetensors").exists()


def test_run_writes_a_loadable_student(distilled):
    import polyner

    out = distilled.out
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "polyner_student"
    assert config["architectures"] == ["PolynerStudentForTokenClassification"]
    assert {int(k): v for k, v in config["id2label"].items()} == ID2LABEL
    assert (config["num_hidden_layers"], config["hidden_size"], config["embedding_rank"]) == (1, 32, 16)
    distill_config = json.loads((out / "distill_config.json").read_text())
    assert config["ner_max_length"] == distill_config["max_length"]  # the Tagger reads it in its training length
    assert config["ner_unspaced_runs"] == "words"  # as its teacher reads runs of Han, kana, Thai (no setting)
    for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json", "training_log.json"):
        assert (out / name).is_file(), name
    assert not (out / "pytorch_model.bin").exists()
    tagger = polyner.load(out)
    assert tagger.config.max_length == distill_config["max_length"]
    results = tagger(["Angela Merkel visited Paris.", "Путин приехал в Москву."])
    assert len(results) == 2
    for text, entities in zip(["Angela Merkel visited Paris.", "Путин приехал в Москву."], results):
        for entity in entities:
            assert entity["label"] in ("PER", "ORG", "LOC") and text[entity["start"]:entity["end"]] == entity["text"]
    log = distilled.log
    assert log["vocabulary"] == config["vocab_size"] == len(np.load(out / "keep_ids.npy"))
    assert log["student_parameters"] < log["teacher_parameters"]
    origins = {json.loads(line)["origin"] for line in (out / "work" / "transfer.jsonl").read_text().splitlines()}
    assert origins == {"unlabeled", "gold", "augmented"}
    assert all(0.0 <= f1 <= 100.0 for f1 in distilled.script.real)  # seqeval F1 in percent
    # every dev evaluation records each language's F1 (where the student gains or loses, stage by stage)
    for entry in (e for e in distilled.log["history"] if "dev_f1" in e):
        assert set(entry["dev_f1_by_language"]) == {"en", "de", "ru"}  # the languages with gold dev
        assert all(0.0 <= f1 <= 100.0 for f1 in entry["dev_f1_by_language"].values())


def test_history_lists_the_stages_in_order(distilled, workspace):
    history = distilled.log["history"]
    names = [entry["stage"] for entry in history]
    seen = list(dict.fromkeys(names))
    assert seen == [s.name for s in plan_stages(run_config(workspace, "x"))]
    assert names == sorted(names, key=seen.index)  # each stage's entries together
    assert all("heldout_mse" in e for e in history if e["stage"].startswith("1"))
    assert all("dev_f1" in e for e in history if not e["stage"].startswith("1"))
    steps = [(e["stage"], e["step"]) for e in history]
    assert len(steps) == len(set(steps))


def test_dev_based_selection_keeps_the_best_checkpoint(distilled):
    log = distilled.log
    f1s = [e["dev_f1"] for e in log["history"] if "dev_f1" in e]
    assert len(f1s) == distilled.script.calls > PEAK
    assert log["best_dev_f1"] == max(f1s) == 50.0
    assert f1s.index(max(f1s)) == PEAK
    saved = trained_rows(distilled.out)
    assert saved.keys() == distilled.script.best_weights.keys()
    for name, value in distilled.script.best_weights.items():
        assert torch.equal(saved[name], value), name


WORD_ROWS = "student.embeddings.word.weight"


def trained_rows(out: Path) -> dict[str, torch.Tensor]:
    """The saved student's weights with only the word rows of the trimmed vocabulary it trained with (the rows the
    vocabulary completion added after training left out)."""
    weights = load_file(str(out / "model.safetensors"))
    completed, trimmed = np.load(out / "keep_ids.npy"), np.load(out / "work" / "vocab" / "keep_ids.npy")
    weights[WORD_ROWS] = weights[WORD_ROWS][torch.from_numpy(np.searchsorted(completed, trimmed))]
    return weights


def test_the_vocabulary_is_completed_with_the_teachers_han_and_kana_pieces(distilled, workspace):
    """After training, every Han/kana piece of the teacher's vocabulary the trimmed one lacked is added (rows mapped
    from the teacher's), the log and the card say so, and Han text is tagged with the new pieces whole."""
    import polyner
    from polyner.distill.package import vocabulary_completion_note
    from polyner.distill.vocab_completion import missing_han_kana_pieces
    from polyner.models.io import load_tokenizer

    teacher_tokenizer = load_tokenizer(workspace.teacher)
    trimmed = np.load(distilled.out / "work" / "vocab" / "keep_ids.npy")
    missing = missing_han_kana_pieces(teacher_tokenizer, trimmed, drop_particle_pieces=False)
    assert missing  # the tiny teacher knows Han pieces the run's text (en, de, ru, uk) lacks
    completed = np.load(distilled.out / "keep_ids.npy")
    assert completed.tolist() == sorted([*trimmed.tolist(), *missing])
    summary = distilled.log["vocabulary_completion"]
    assert summary["added"] == len(missing) and 0.0 <= summary["fit_r2"] <= 1.0
    note = vocabulary_completion_note(summary)
    assert f"{len(missing):,} of them the teacher's Han and kana pieces the trimmed vocabulary lacked" in note
    student_tokenizer = load_tokenizer(distilled.out)
    for teacher_id in missing:  # each new piece is read whole, as the teacher reads it
        piece = teacher_tokenizer.convert_ids_to_tokens(teacher_id)
        assert student_tokenizer.tokenize(piece.lstrip("\u2581")) == teacher_tokenizer.tokenize(piece.lstrip("\u2581"))
    rows = load_file(str(distilled.out / "model.safetensors"))[WORD_ROWS]
    config = json.loads((distilled.out / "config.json").read_text())
    assert rows.shape[0] == config["vocab_size"] == len(student_tokenizer) == len(completed)
    text = "他在" + teacher_tokenizer.convert_ids_to_tokens(missing[0]).lstrip("\u2581")
    assert len(polyner.load(distilled.out)([text])) == 1  # every id the tokenizer gives has its row


def test_same_seed_gives_identical_weights(distilled, workspace):
    out = run_scripted(run_config(workspace, workspace.root / "repeat"), ScriptedDev())
    first, second = load_file(str(distilled.out / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    assert json.loads((out / "training_log.json").read_text())["history"] == distilled.log["history"]


def without_train_loss(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k != "train_loss"}


def test_interrupted_run_resumes_where_it_stopped(distilled, workspace, monkeypatch):
    out = workspace.root / "resumed"
    config = run_config(workspace, out)
    stages_run: list[str] = []
    original_stage = Distiller.run_stage

    def counting(self, index, stage, *args):
        stages_run.append(stage.name)
        return original_stage(self, index, stage, *args)

    monkeypatch.setattr(Distiller, "run_stage", counting)
    heldout_calls = []
    original_heldout = Distiller.heldout_loss

    def failing_heldout(self, *args):
        if len(heldout_calls) == 1:  # stage 1 interrupted after its first checkpoint
            heldout_calls.append("failed")
            raise KeyboardInterrupt("simulated interruption")
        heldout_calls.append("ok")
        return original_heldout(self, *args)

    # 1. interrupted inside the first stage
    script = ScriptedDev(fail_at=3)  # later interrupted at the second evaluation of 3-logits-unfreeze-1
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Distiller, "heldout_loss", failing_heldout)
        with pytest.raises(KeyboardInterrupt):
            run_scripted(config, script)
    assert stages_run == ["1-representation"]
    # 2. resumed, then interrupted inside a later stage
    stages_run.clear()
    with pytest.raises(KeyboardInterrupt):
        run_scripted(config, script)
    assert stages_run == ["1-representation", "2-logits", "3-logits-unfreeze-1"]
    interrupted = json.loads((out / "work" / "state.json").read_text())
    assert interrupted["stage"] == 2 and interrupted["minutes"] > 0
    # 3. resumed to the end: completed stages are not run again
    stages_run.clear()
    run_scripted(config, script)
    assert stages_run == [s.name for s in plan_stages(config)][2:]
    log = json.loads((out / "training_log.json").read_text())
    assert log["minutes"] > interrupted["minutes"]  # the training time of every session, not the last one's
    # no entry lost or repeated, same scores (the smoothed train_loss restarts on resume: not compared)
    assert [without_train_loss(e) for e in log["history"]] == [without_train_loss(e) for e in distilled.log["history"]]
    resumed, whole = load_file(str(out / "model.safetensors")), load_file(str(distilled.out / "model.safetensors"))
    for name in whole:  # resuming is exact
        assert torch.equal(resumed[name], whole[name]), name
    # 4. a finished run reruns nothing and needs no teacher outputs: it saves its student again (here without the
    #    vocabulary completion), its training minutes kept
    stages_run.clear()
    monkeypatch.setattr("polyner.distill.trainer.build_teacher_cache", lambda *a, **k: pytest.fail("cache rebuilt"))
    run_scripted(replace(config, complete_han_kana=False), ScriptedDev())
    assert stages_run == []
    again = json.loads((out / "training_log.json").read_text())
    assert again["minutes"] == log["minutes"] and "vocabulary_completion" not in again
    assert np.array_equal(np.load(out / "keep_ids.npy"), np.load(out / "work" / "vocab" / "keep_ids.npy"))
    saved = load_file(str(out / "model.safetensors"))
    for name, value in trained_rows(distilled.out).items():
        assert torch.equal(saved[name], value), name


def test_a_finished_run_without_its_selected_student_says_so(distilled, workspace, tmp_path):
    import shutil

    out = tmp_path / "lost"
    shutil.copytree(distilled.out, out)
    (out / "work" / "best.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="stages are done but its selected student is gone"):
        distill(run_config(workspace, out))


@pytest.mark.parametrize("change, difference", [
    ({"seed": 14}, "seed: 13 in the checkpoint, 14 now"),
    ({"max_vocab": 500}, "max_vocab: None in the checkpoint, 500 now"),  # the vocabulary would be another
    ({"gold_text_per_language": 7}, "gold_text_per_language: 500 in the checkpoint, 7 now"),  # another transfer set
    ({"language_text_scale": {"de": 2}}, "language_text_scale"),  # unset in runs made before it: their identity holds
    ({"gold_logit_weight": 0.5}, "gold_logit_weight: 0.0 in the checkpoint, 0.5 now"),
    ({"silver_labels": "no-gold"}, "silver_labels: 'all' in the checkpoint, 'no-gold' now"),  # the gold stages' labels
    ({"lowercase_share": 0.2}, "lowercase_share: 0.0 in the checkpoint, 0.2 now"),
    ({"bucket": 4}, "bucket: 1 in the checkpoint, 4 now"),  # other sentences in each batch
])
def test_a_run_of_another_config_is_refused_before_anything_is_written(distilled, workspace, change, difference):
    from polyner.training.engine import ForeignCheckpointError

    before = {p: p.read_bytes() for p in distilled.out.rglob("*") if p.is_file()}
    with pytest.raises(ForeignCheckpointError, match=difference):
        distill(run_config(workspace, distilled.out, **change))
    assert {p: p.read_bytes() for p in distilled.out.rglob("*") if p.is_file()} == before


def test_a_checkpoint_from_before_a_setting_is_compared_at_its_old_value(distilled, workspace, tmp_path):
    """A run checkpointed before ``gold_logit_weight`` joined the run identity had none: it resumes with 0 and is
    refused with another weight, naming it."""
    import shutil

    from polyner.training.engine import ForeignCheckpointError

    out = tmp_path / "older"
    shutil.copytree(distilled.out, out)
    state_path = out / "work" / "checkpoint" / "state.json"
    state = json.loads(state_path.read_text())
    for added in ("gold_logit_weight", "lowercase_share", "bucket"):
        del state["fingerprint"][added]
    state_path.write_text(json.dumps(state))
    with pytest.raises(ForeignCheckpointError, match="gold_logit_weight: 0.0 in the checkpoint, 0.5 now"):
        distill(run_config(workspace, out, gold_logit_weight=0.5))
    with pytest.raises(ForeignCheckpointError, match="bucket: 1 in the checkpoint, 4 now"):  # its batches were unbucketed
        distill(run_config(workspace, out, bucket=4))
    before = (out / "model.safetensors").read_bytes()
    run_scripted(run_config(workspace, out), ScriptedDev())  # the same run: finished, nothing trains again
    assert (out / "model.safetensors").read_bytes() == before


def test_cli_distill_names_languages_without_text(tmp_path, tiny_model_dir):
    from polyner.cli import app

    (tmp_path / "en.txt").write_text(SAMPLE_TEXTS[0] + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, [
        "distill", "--teacher", str(tiny_model_dir), "--out", str(tmp_path / "out"), "--languages", "en,xx",
        "--unlabeled", str(tmp_path / "en.txt"), "--threads", "1", "--quiet", "--no-evaluate"])
    assert result.exit_code == 2, result.output
    assert "xx" in result.output and "Traceback" not in result.output
    assert re.search(r"language\(s\) xx:", result.output)


def test_cli_distill_silver_labels_option_is_checked(tmp_path, tiny_model_dir):
    """``--silver-labels`` sets the recipe setting of that name; an unknown value is a usage error naming both
    choices, before anything is built."""
    from polyner.cli import app

    result = CliRunner().invoke(app, [
        "distill", "--teacher", str(tiny_model_dir), "--out", str(tmp_path / "out"), "--silver-labels", "gold",
        "--quiet", "--no-evaluate"])
    assert result.exit_code == 2, result.output
    assert "unknown silver_labels 'gold': choose one of all, no-gold" in result.output
    assert not (tmp_path / "out").exists()


def test_card_command_rewrites_quality_and_speed_only(tmp_path):
    from typer.testing import CliRunner

    from polyner.cli import app
    from polyner.distill.model_card import QUALITY_HEADING

    folder = tmp_path / "model"
    folder.mkdir()
    card = folder / "README.md"
    card.write_text(f"# m\n\n## Model\n\n- keep me\n\n## {QUALITY_HEADING}\n\nold table\n\n## Speed\n\nold speed\n\n"
                    "## Training\n\n- keep me too\n", encoding="utf-8")
    results = tmp_path / "results.md"
    results.write_text("# Results\n\n<!-- polyner:other -->\nnot this\n<!-- /polyner:other -->\n\n"
                       "<!-- polyner:main -->\n| new | table |\n<!-- /polyner:main -->\n", encoding="utf-8")
    speed = tmp_path / "report.md"
    speed.write_text("intro\n<!-- polyner:speed -->\nnew speed\n<!-- /polyner:speed -->\n", encoding="utf-8")
    runner = CliRunner()
    ok = runner.invoke(app, ["card", str(folder), "--results", str(results), "--section", "main", "--speed", str(speed)])
    assert ok.exit_code == 0, ok.output
    text = card.read_text(encoding="utf-8")
    assert "| new | table |" in text and "new speed" in text
    assert "old table" not in text and "old speed" not in text and "not this" not in text
    assert "- keep me\n" in text and "- keep me too" in text
    assert text.index("## Model") < text.index("| new | table |") < text.index("new speed") < text.index("## Training")
    missing = runner.invoke(app, ["card", str(folder), "--results", str(results), "--section", "nope"])
    assert missing.exit_code == 2 and "no section 'nope'" in missing.output
    nothing = runner.invoke(app, ["card", str(folder)])
    assert nothing.exit_code == 2 and "nothing to write" in nothing.output
    no_card = runner.invoke(app, ["card", str(tmp_path), "--speed", str(speed)])
    assert no_card.exit_code == 2 and "no model card" in no_card.output


def test_pack_and_card_take_the_model_by_name_as_every_model_option(distilled, tmp_path):
    """``--model NAME`` (a model under $POLYNER_HOME/models) works in pack and card as in tag and export."""
    from typer.testing import CliRunner

    from polyner.cli import app
    from polyner.home import polyner_home

    models = polyner_home() / "models"
    models.mkdir(parents=True, exist_ok=True)
    (models / "tiny-student").symlink_to(distilled.out, target_is_directory=True)
    runner = CliRunner()
    packed = runner.invoke(app, ["pack", "--model", "tiny-student", "--out", str(tmp_path / "shipped"), "--quiet"])
    assert packed.exit_code == 0, packed.output
    assert (tmp_path / "shipped" / "model.onnx").exists() and (tmp_path / "shipped" / "README.md").exists()
    (models / "shipped").symlink_to(tmp_path / "shipped", target_is_directory=True)
    speed = tmp_path / "speed.md"
    speed.write_text("<!-- polyner:speed -->\nfresh speed table\n<!-- /polyner:speed -->\n", encoding="utf-8")
    carded = runner.invoke(app, ["card", "--model", "shipped", "--speed", str(speed)])
    assert carded.exit_code == 0, carded.output
    assert "fresh speed table" in (tmp_path / "shipped" / "README.md").read_text(encoding="utf-8")
    missing = runner.invoke(app, ["pack", "--model", "no-such-model", "--out", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "no model 'no-such-model'" in missing.output


def test_card_says_how_the_onnx_model_is_quantized(tmp_path):
    from polyner.distill.model_card import quantization_lines

    assert quantization_lines(tmp_path) == []  # torch weights: nothing to say
    record = tmp_path / "onnx_export.json"
    record.write_text(json.dumps({"quantization": None}))
    assert quantization_lines(tmp_path) == []
    record.write_text(json.dumps({"quantization": "int8", "per_channel": True}))  # written before per-token existed
    assert "can change with the other texts in its batch" in quantization_lines(tmp_path)[0]
    record.write_text(json.dumps({"quantization": "int8", "per_channel": False, "activation_scales": "per-token"}))
    (line,) = quantization_lines(tmp_path)
    assert "one scale per matrix" in line and "the same entities alone and in a batch" in line


def test_card_metadata_licence_and_refreshed_f1(tmp_path):
    """The front matter's licence follows the data (NonCommercial sources: not a free licence) and `polyner card`
    keeps the model-index F1 in step with the quality table it writes."""
    import yaml

    from polyner.distill.model_card import card_licence, refresh_model_card, write_model_card

    assert card_licence(["wikigold", "masakhaner2"])["license"] == "other"
    assert card_licence(["wikigold", "turku_ner"]) == {"license": "cc-by-sa-4.0"}
    assert card_licence(["wikigold"]) == {"license": "cc-by-4.0"}
    table = "| lang | sentences | entities | F1 teacher | F1 student |\n|---|---|---|---|---|\n| **macro** | 1 | 1 | 9 | {} |"
    path = write_model_card(tmp_path, title="t", languages=["de", "sw"], gold_sources=["masakhaner2"], unlabeled=[],
                            geometry="g", parameters=1, teacher="x", teacher_parameters=2, size_mb=1.0,
                            results_markdown=table.format("61.50"))
    meta = yaml.safe_load(path.read_text().split("---\n")[1])
    assert meta["language"] == ["de", "sw"] and meta["license_name"] == "noncommercial"
    assert meta["datasets"] == ["masakhaner2"] and meta["model-index"][0]["results"][0]["metrics"][0]["value"] == 61.5
    refresh_model_card(tmp_path, table.format("63.25"))
    meta = yaml.safe_load(path.read_text().split("---\n")[1])
    assert meta["model-index"][0]["results"][0]["metrics"][0]["value"] == 63.25
    assert "do not use it commercially" in path.read_text()
    # packed without figures (no model-index yet), then given its quality table
    (tmp_path / "bare").mkdir()
    bare = write_model_card(tmp_path / "bare", title="bare student", languages=["de"], gold_sources=["wikigold"],
                            unlabeled=[], geometry="g", parameters=1, teacher="x", teacher_parameters=2, size_mb=1.0)
    assert "model-index" not in bare.read_text()
    refresh_model_card(tmp_path / "bare", table.format("70.10"))
    meta = yaml.safe_load(bare.read_text().split("---\n")[1])
    assert meta["model-index"][0]["name"] == "bare student"
    assert meta["model-index"][0]["results"][0]["metrics"][0]["value"] == 70.1 and meta["license"] == "cc-by-4.0"


def test_pack_ships_onnx_int8_with_a_card_naming_window_and_licences(distilled, tmp_path):
    """`polyner pack` writes the shipped form: an int8 ONNX model, no torch file, no training files, a card with
    Hugging Face metadata, the same window; the torch weights come back from the ONNX model."""
    import yaml
    from typer.testing import CliRunner

    import polyner
    from polyner.cli import app
    from polyner.models.onnx_backend import OnnxTokenClassifier, is_int8

    out = tmp_path / "shipped"
    results = tmp_path / "results.md"
    results.write_text("| lang | sentences | entities | F1 teacher | F1 student |\n|---|---|---|---|---|\n"
                       "| en | 2 | 3 | 80.00 | 70.00 |\n| **macro** | 2 | 3 | 80.00 | 70.00 |\n")
    result = CliRunner().invoke(app, ["pack", str(distilled.out), "--out", str(out), "--title", "tiny student",
                                      "--results", str(results), "--quiet"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    window = json.loads((distilled.out / "distill_config.json").read_text())["max_length"]
    assert config["ner_max_length"] == window and "auto_map" not in config
    assert is_int8(out) and not (out / "model.safetensors").exists()
    assert not (out / "work").exists() and not (out / "keep_ids.npy").exists()
    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["language"] == json.loads((distilled.out / "distill_config.json").read_text())["languages"]
    assert meta["pipeline_tag"] == "token-classification" and "onnx" in meta["tags"] and meta["license"]
    assert meta["model-index"][0]["results"][0]["metrics"][0]["value"] == 70.0
    body = card.split("---\n", 2)[2]
    assert body.lstrip().startswith("# tiny student") and f"windows of {window} pieces" in body
    assert "## Training data and licences" in body and "`input_ids` and `attention_mask`" in body
    assert "activations quantized per token: a text gets the same entities alone and in a batch" in body
    tagger = polyner.load(out)
    assert isinstance(tagger.model, OnnxTokenClassifier) and tagger.config.max_length == window
    text = "Angela Merkel visited Paris."
    assert all(text[e["start"]:e["end"]] == e["text"] for e in tagger(text))
    torch_tagger = polyner.load(out, backend="torch")  # the weights read back from the int8 model
    assert not isinstance(torch_tagger.model, OnnxTokenClassifier)
    assert all(text[e["start"]:e["end"]] == e["text"] for e in torch_tagger(text))


def test_a_packed_student_reads_runs_without_spaces_as_the_torch_student(cjk_tokenizer, tmp_path):
    """ner_unspaced_runs survives `polyner pack`: the packed ONNX model (int8 as shipped, and fp32) reads Han runs
    as text, is fed the very pieces the torch student it was packed from is fed, and (fp32) tags the same."""
    import polyner
    from polyner.agreement import entity_keys
    from polyner.distill.package import pack_model
    from tiny_student import save_tiny_student

    student = save_tiny_student(cjk_tokenizer, tmp_path / "student")
    config = json.loads((student / "config.json").read_text())
    (student / "config.json").write_text(json.dumps({**config, "ner_unspaced_runs": "text"}))

    def tagged(folder):
        tagger = polyner.load(folder)
        fed, logits = [], tagger.classifier.logits

        def spy(ids, mask):
            fed.extend(row[m.astype(bool)].tolist() for row, m in zip(ids, mask))
            return logits(ids, mask)

        tagger.classifier.logits = spy
        return tagger.unspaced_runs, fed, [entity_keys(e) for e in tagger(CJK_TEXTS)]

    runs, pieces, entities = tagged(student)
    assert runs == "text" and sum(map(len, entities)) > 0
    for kind in ("int8", "fp32"):
        packed = pack_model(student, tmp_path / kind, kind)
        assert json.loads((packed / "config.json").read_text())["ner_unspaced_runs"] == "text"
        packed_runs, packed_pieces, packed_entities = tagged(packed)
        assert packed_runs == "text" and packed_pieces == pieces  # "words" would add a bare ▁ before every word
        if kind == "fp32":  # int8 may move a label
            assert packed_entities == entities


def test_transfer_set_takes_silver_text_when_asked(unlabeled_dir, gold_tree, tmp_path):
    silver = tmp_path / "silver" / "wikiann" / "fr"
    silver.mkdir(parents=True)
    (silver / "train.iob2").write_text("Paris\tB-LOC\nest\tO\nbelle\tO\n\nLyon\tB-LOC\naussi\tO\n",
                                       encoding="utf-8")
    with pytest.raises(MissingLanguageError, match="fr"):  # without silver text, fr has nothing
        build_transfer_set(["en", "fr"], [unlabeled_dir / "en.txt"], gold_tree, 10, 10, 0, None)
    transfer = build_transfer_set(["en", "fr"], [unlabeled_dir / "en.txt"], gold_tree, 10, 10, 0, None,
                                  silver=tmp_path / "silver", silver_text_per_language=1)
    fr = [s for s in transfer if s.lang == "fr"]
    assert len(fr) == 1 and fr[0].origin == "silver" and fr[0].words in (["Paris", "est", "belle"], ["Lyon", "aussi"])


def test_run_with_silver_and_a_language_balanced_vocabulary(workspace):
    """Silver adds transfer text and stage-4 labels, never dev; the vocabulary counts every text per language."""
    silver = workspace.root / "silver" / "wikiann" / "uk"
    silver.mkdir(parents=True, exist_ok=True)
    (silver / "train.iob2").write_text("Київ\tB-LOC\nвеликий\tO\n\nЛьвів\tB-LOC\nгарний\tO\n", encoding="utf-8")
    out = workspace.root / "silver-student"
    config = run_config(workspace, out, silver=str(workspace.root / "silver"), silver_text_per_language=5,
                        vocab_balance_alpha=0.5, max_vocab=None)
    script = ScriptedDev()
    dev_langs = []
    original = script.original

    def recording(distiller, model, tokenizer, dev):
        dev_langs.append({s.lang for s in dev})
        return original(distiller, model, tokenizer, dev)

    script.original = recording
    run_scripted(config, script)
    transfer = [json.loads(line) for line in (out / "work" / "transfer.jsonl").read_text().splitlines()]
    assert {t["origin"] for t in transfer if t["lang"] == "uk"} >= {"silver"}
    assert dev_langs and all("uk" not in langs for langs in dev_langs)
    from polyner.models.io import load_tokenizer

    student, teacher = load_tokenizer(out), load_tokenizer(workspace.teacher)
    words = ["Львів", "гарний", "Київ"]  # silver-only text: its pieces are in the vocabulary
    assert student.convert_ids_to_tokens(student(words, is_split_into_words=True)["input_ids"]) == \
        teacher.convert_ids_to_tokens(teacher(words, is_split_into_words=True)["input_ids"])


def test_a_student_reads_runs_without_spaces_as_its_teacher_does(workspace, tmp_path):
    """A teacher trained to read Han/kana runs as text (ner_unspaced_runs) passes that to its student: the transfer
    set, the gold stages and the student's config all read them so."""
    import shutil

    teacher = tmp_path / "teacher-text"
    shutil.copytree(workspace.teacher, teacher)
    config = json.loads((teacher / "config.json").read_text())
    (teacher / "config.json").write_text(json.dumps({**config, "ner_unspaced_runs": "text"}))
    seen = []
    import polyner.distill.trainer as trainer

    original = trainer.word_pieces

    def word_pieces_spy(tokenizer, sentences, unspaced_runs="words"):
        seen.append(unspaced_runs)
        return original(tokenizer, sentences, unspaced_runs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer, "word_pieces", word_pieces_spy)
        out = run_scripted(run_config(workspace, tmp_path / "student", teacher=str(teacher)), ScriptedDev())
    assert seen == ["text"]  # the transfer set
    assert json.loads((out / "config.json").read_text())["ner_unspaced_runs"] == "text"
    import polyner

    assert polyner.load(out).unspaced_runs == "text"


def test_heldout_loss_is_the_mean_per_position_whatever_the_order(monkeypatch):
    """Stage 1 keeps its checkpoint on this figure: batching the held-out sentences by length must not change it."""
    import polyner.distill.trainer as trainer

    lengths = [3, 9, 1, 5, 7, 2, 8]
    values = [np.arange(n, dtype=np.float32) + 10 * i for i, n in enumerate(lengths)]

    class Cache:
        def span(self, i):
            return 0, lengths[i]

        def batch(self, indices, pad, with_hidden):
            width = max(lengths[i] for i in indices)
            mask = torch.zeros(len(indices), width, dtype=torch.long)
            value = torch.zeros(len(indices), width)
            for row, i in enumerate(indices):
                mask[row, :lengths[i]] = 1
                value[row, :lengths[i]] = torch.from_numpy(values[i])
            return {"input_ids": mask.clone(), "attention_mask": mask, "value": value}

    def mean_over_positions(model, batch):
        return (batch["value"] * batch["attention_mask"]).sum() / batch["attention_mask"].sum()

    monkeypatch.setitem(trainer.LOSSES, "probe", mean_over_positions)
    stage = SimpleNamespace(loss="probe")
    model = torch.nn.Linear(1, 1)
    expected = float(np.concatenate(values).mean())
    for batch_size, order in ((3, [0, 1, 2, 3, 4, 5, 6]), (2, [6, 2, 4, 0, 5, 1, 3]), (7, [3, 1, 0, 6, 5, 4, 2])):
        owner = SimpleNamespace(config=SimpleNamespace(batch_size=batch_size),
                                parallel=SimpleNamespace(to_device=lambda batch: batch))
        assert Distiller.heldout_loss(owner, model, Cache(), order, stage, 0) == pytest.approx(expected)
    assert model.training
