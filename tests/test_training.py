"""Teacher fine-tuning: outputs in HF layout, dev selection, exact resume, sampling, checkpoints."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import build_tiny_model
from polyner.labels import ID2LABEL, LABEL2ID
from polyner.training.checkpoint import load_checkpoint, save_checkpoint
from polyner.training.sampling import MixedLanguageSampler
from polyner.training.teacher import TeacherTrainingConfig, train_teacher


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory, tokenizer) -> Path:
    """A headless tiny BertModel (no classifier, no label maps) saved with the tokenizer."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("encoder")
    torch.manual_seed(2)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _config(teacher: Path, gold: Path, out: Path, max_steps: int = 4, **overrides) -> TeacherTrainingConfig:
    settings = dict(teacher=str(teacher), gold=str(gold), out=str(out), max_steps=max_steps, eval_every=2,
                    save_every=2, dev_per_lang=5, batch_size=4, max_length=32, threads=1)
    settings.update(overrides)
    return TeacherTrainingConfig(**settings)


def _final_weights(out: Path) -> dict[str, torch.Tensor]:
    """The weights after the last step (model.safetensors holds the best-on-dev step instead)."""
    return load_file(str(out / "checkpoint" / "weights.safetensors"))


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=0, atol=1e-7), key


# --- train_teacher ---------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["token_classifier", "headless_encoder"])
def test_train_teacher_writes_hf_layout(which, teacher_dir, encoder_dir, gold_tree, tmp_path):
    import polyner

    teacher = teacher_dir if which == "token_classifier" else encoder_dir
    out = tmp_path / "out"
    assert train_teacher(_config(teacher, gold_tree, out)) == out

    config = json.loads((out / "config.json").read_text())
    assert {int(k): v for k, v in config["id2label"].items()} == ID2LABEL
    assert config["label2id"] == LABEL2ID
    assert (out / "model.safetensors").is_file()
    assert (out / "tokenizer.json").is_file() and (out / "tokenizer_config.json").is_file()
    assert json.loads((out / "training_config.json").read_text())["max_steps"] == 4

    state = json.loads((out / "training_state.json").read_text())
    assert state["step"] == 4
    assert [h["step"] for h in state["history"]] == [2, 4]
    for entry in state["history"]:
        assert set(entry) >= {"step", "loss", "dev_f1"}
        assert np.isfinite(entry["loss"]) and 0 <= entry["dev_f1"] <= 100
    assert state["best_step"] in (2, 4)
    assert state["best_f1"] == max(h["dev_f1"] for h in state["history"])
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == [
        "optimizer.pt", "rng.safetensors", "state.json", "weights.safetensors"]
    assert not list(out.glob("checkpoint.*"))  # no .partial / .old left behind

    # the result is a polyner model
    tagger = polyner.load(out)
    assert tagger.id2label == ID2LABEL
    assert len(tagger.tag_words([["Angela", "Merkel", "visited", "Paris"]])[0]) == 4


def test_train_teacher_can_switch_how_the_model_reads_runs_without_spaces(teacher_dir, gold_tree, tmp_path):
    import polyner

    kept = train_teacher(_config(teacher_dir, gold_tree, tmp_path / "kept", max_steps=2))
    assert json.loads((kept / "config.json").read_text())["ner_unspaced_runs"] == "words"  # as the model it starts from
    text = train_teacher(_config(kept, gold_tree, tmp_path / "text", max_steps=2, unspaced_runs="text"))
    assert json.loads((text / "config.json").read_text())["ner_unspaced_runs"] == "text"
    assert polyner.load(text).unspaced_runs == "text"
    again = train_teacher(_config(text, gold_tree, tmp_path / "again", max_steps=2))
    assert json.loads((again / "config.json").read_text())["ner_unspaced_runs"] == "text"  # kept by a further round
    assert json.loads((again / "training_config.json").read_text())["unspaced_runs"] == "text"  # recorded as resolved
    # the same run whether the mode was named or taken from the model: asking for it explicitly resumes the run
    train_teacher(_config(text, gold_tree, tmp_path / "again", max_steps=4, unspaced_runs="text"))
    assert json.loads((again / "training_state.json").read_text())["step"] == 4
    with pytest.raises(ValueError, match="unspaced_runs must be one of 'words', 'text', not 'chars'"):
        train_teacher(_config(teacher_dir, gold_tree, tmp_path / "bad", unspaced_runs="chars"))


def test_train_teacher_trains_body_and_head_but_not_word_embeddings(teacher_dir, gold_tree, tmp_path):
    before = load_file(str(teacher_dir / "model.safetensors"))
    out = tmp_path / "out"
    train_teacher(_config(teacher_dir, gold_tree, out))
    after = _final_weights(out)
    word = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(before[word], after[word])  # frozen by default
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])
    assert not torch.equal(before["bert.encoder.layer.0.attention.self.query.weight"],
                           after["bert.encoder.layer.0.attention.self.query.weight"])


def test_train_teacher_is_deterministic(teacher_dir, gold_tree, tmp_path):
    train_teacher(_config(teacher_dir, gold_tree, tmp_path / "a"))
    train_teacher(_config(teacher_dir, gold_tree, tmp_path / "b"))
    _assert_same_weights(_final_weights(tmp_path / "a"), _final_weights(tmp_path / "b"))
    train_teacher(_config(teacher_dir, gold_tree, tmp_path / "c", seed=14))
    c = _final_weights(tmp_path / "c")
    assert not torch.equal(c["classifier.weight"], _final_weights(tmp_path / "a")["classifier.weight"])


def test_train_teacher_keeps_the_best_dev_checkpoint(teacher_dir, gold_tree, tmp_path, monkeypatch):
    """model.safetensors holds the weights of the step with the best dev macro F1, not the last step."""
    from polyner.training import engine
    import polyner.training.teacher as teacher_module
    from polyner.evaluate import Scores

    script = {2: 10.0, 4: 30.0, 6: 20.0}
    dev_langs: list[list[str]] = []
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    real_save = engine.save_checkpoint

    def fake_evaluate(tag_words, sentences):
        dev_langs.append(sorted({s.lang for s in sentences}))
        f1 = script[2 * len(dev_langs)]
        return {"en": Scores(f1, f1, f1, 1, 1), "de": Scores(f1, f1, f1, 1, 1)}

    def recording_save(folder, model, optimizer, scheduler, state):
        snapshots[state["step"]] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        real_save(folder, model, optimizer, scheduler, state)

    monkeypatch.setattr(teacher_module, "evaluate_by_language", fake_evaluate)
    monkeypatch.setattr(engine, "save_checkpoint", recording_save)
    out = tmp_path / "out"
    train_teacher(_config(teacher_dir, gold_tree, out, max_steps=6))

    assert dev_langs == [["de", "en", "ru"]] * 3  # dev sentences of every language
    state = json.loads((out / "training_state.json").read_text())
    assert [(h["step"], h["dev_f1"]) for h in state["history"]] == [(2, 10.0), (4, 30.0), (6, 20.0)]
    assert state["best_f1"] == 30.0 and state["best_step"] == 4
    saved = load_file(str(out / "model.safetensors"))
    assert sorted(snapshots) == [2, 4, 6]
    _assert_same_weights(saved, {k: snapshots[4][k] for k in saved})
    assert not torch.equal(saved["classifier.weight"], snapshots[6]["classifier.weight"])


def test_train_teacher_filters_languages_and_sources(teacher_dir, gold_tree, tmp_path, monkeypatch):
    import polyner.training.teacher as teacher_module

    seen: list[list[str]] = []
    real_sampler = teacher_module.MixedLanguageSampler

    def recording_sampler(langs, *args, **kwargs):
        seen.append(list(langs))
        return real_sampler(langs, *args, **kwargs)

    monkeypatch.setattr(teacher_module, "MixedLanguageSampler", recording_sampler)
    train_teacher(_config(teacher_dir, gold_tree, tmp_path / "a", max_steps=2, langs=["en", "ru"]))
    train_teacher(_config(teacher_dir, gold_tree, tmp_path / "b", max_steps=2, exclude_sources=["src_b"]))
    assert sorted(g.rsplit("/", 1)[1] for g in seen[0]) == ["en", "en", "ru"]
    assert sorted(g.rsplit("/", 1)[1] for g in seen[1]) == ["de", "en", "en"]
    assert all(g.startswith("gold/") for g in seen[0] + seen[1])
    with pytest.raises(ValueError, match="no gold train files"):
        train_teacher(_config(teacher_dir, gold_tree, tmp_path / "c", langs=["fr"]))


# --- resume ----------------------------------------------------------------------------------------


class _Interrupted(Exception):
    pass


def test_resume_after_interruption_matches_uninterrupted_run(teacher_dir, gold_tree, tmp_path, monkeypatch):
    """A 6-step run killed right after its step-4 checkpoint and restarted ends where an uninterrupted run ends."""
    from polyner.training import engine

    real_save = engine.save_checkpoint

    def save_then_die(folder, model, optimizer, scheduler, state):
        real_save(folder, model, optimizer, scheduler, state)
        if state["step"] == 4:
            raise _Interrupted

    resumed = tmp_path / "resumed"
    monkeypatch.setattr(engine, "save_checkpoint", save_then_die)
    with pytest.raises(_Interrupted):
        train_teacher(_config(teacher_dir, gold_tree, resumed, max_steps=6))
    monkeypatch.setattr(engine, "save_checkpoint", real_save)
    assert json.loads((resumed / "checkpoint" / "state.json").read_text())["step"] == 4
    assert not (resumed / "training_state.json").exists()

    steps: list[int] = []
    real_batch = MixedLanguageSampler.batch
    monkeypatch.setattr(MixedLanguageSampler, "batch",
                        lambda self, step, size: steps.append(step) or real_batch(self, step, size))
    train_teacher(_config(teacher_dir, gold_tree, resumed, max_steps=6))
    assert steps == [4, 5]

    straight = tmp_path / "straight"
    train_teacher(_config(teacher_dir, gold_tree, straight, max_steps=6))
    _assert_same_weights(_final_weights(resumed), _final_weights(straight))
    a = json.loads((resumed / "training_state.json").read_text())
    b = json.loads((straight / "training_state.json").read_text())
    assert [h["step"] for h in a["history"]] == [h["step"] for h in b["history"]] == [2, 4, 6]
    assert [h["dev_f1"] for h in a["history"]] == [h["dev_f1"] for h in b["history"]]
    assert (a["best_step"], a["best_f1"]) == (b["best_step"], b["best_f1"])


def test_resume_with_more_steps_continues_from_checkpoint(teacher_dir, gold_tree, tmp_path, monkeypatch):
    out = tmp_path / "out"
    train_teacher(_config(teacher_dir, gold_tree, out, max_steps=4))
    first = json.loads((out / "training_state.json").read_text())
    assert first["step"] == 4 and [h["step"] for h in first["history"]] == [2, 4]

    steps: list[int] = []
    real_batch = MixedLanguageSampler.batch
    monkeypatch.setattr(MixedLanguageSampler, "batch",
                        lambda self, step, size: steps.append(step) or real_batch(self, step, size))
    train_teacher(_config(teacher_dir, gold_tree, out, max_steps=6))
    assert steps == [4, 5]  # only the two new steps are trained
    state = json.loads((out / "training_state.json").read_text())
    assert state["step"] == 6
    assert [h["step"] for h in state["history"]] == [2, 4, 6]
    assert state["history"][:2] == first["history"]  # earlier history kept as it was
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 6

    # nothing left to do: a third call trains no step and keeps the state
    steps.clear()
    train_teacher(_config(teacher_dir, gold_tree, out, max_steps=6))
    assert steps == []
    assert json.loads((out / "training_state.json").read_text()) == state


def test_resume_with_more_steps_follows_the_new_schedule(teacher_dir, gold_tree, tmp_path):
    """Extending max_steps on resume continues on the new learning-rate schedule (not the old one's 0.0)."""
    from polyner.training.engine import CheckpointPlan, resume
    from polyner.training.teacher import _model, _optimizer, run_identity

    out = tmp_path / "out"
    train_teacher(_config(teacher_dir, gold_tree, out, max_steps=4))
    longer = _config(teacher_dir, gold_tree, out, max_steps=6)
    model = _model(longer)
    optimizer, scheduler = _optimizer(model, longer)
    state = resume(CheckpointPlan(out / "checkpoint", run_identity(longer)), model, optimizer, scheduler)
    assert state["step"] == 4
    expected = [base * rule(4) for base, rule in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx(expected)
    assert all(lr > 0 for lr in expected)


def test_checkpoint_of_the_loop_before_the_merge_resumes_with_more_steps(teacher_dir, gold_tree, tmp_path, caplog):
    """A checkpoint folder as train_teacher wrote it before the one training loop (state.json with best_f1 and no
    run identity; the weights, optimizer and RNG files unchanged) resumes, with another max_steps, like one of today."""
    old, new = tmp_path / "old", tmp_path / "new"
    for out in (old, new):
        train_teacher(_config(teacher_dir, gold_tree, out, max_steps=4))
    state = json.loads((old / "checkpoint" / "state.json").read_text())
    legacy = {"step": 4, "best_f1": state["best_score"],
              "history": [{k: h[k] for k in ("step", "loss", "dev_f1", "minutes", "dev_f1_by_language")}
                          for h in state["history"]],
              "elapsed_seconds": state["elapsed_seconds"], "best_step": state["best_step"]}
    assert legacy["history"] == state["history"]  # the history entries kept their layout
    (old / "checkpoint" / "state.json").write_text(json.dumps(legacy, indent=2))
    assert sorted(p.name for p in (old / "checkpoint").iterdir()) == [
        "optimizer.pt", "rng.safetensors", "state.json", "weights.safetensors"]

    with caplog.at_level("WARNING"):
        train_teacher(_config(teacher_dir, gold_tree, old, max_steps=6))
    assert "records no run identity" in caplog.text
    train_teacher(_config(teacher_dir, gold_tree, new, max_steps=6))
    _assert_same_weights(_final_weights(old), _final_weights(new))
    _assert_same_weights(load_file(str(old / "model.safetensors")), load_file(str(new / "model.safetensors")))
    a = json.loads((old / "training_state.json").read_text())
    b = json.loads((new / "training_state.json").read_text())
    assert [h["step"] for h in a["history"]] == [h["step"] for h in b["history"]] == [2, 4, 6]
    assert [h["dev_f1"] for h in a["history"]] == [h["dev_f1"] for h in b["history"]]
    assert (a["best_step"], a["best_f1"]) == (b["best_step"], b["best_f1"])
    # from now on the checkpoint records the run's identity
    assert json.loads((old / "checkpoint" / "state.json").read_text())["fingerprint"]["seed"] == 13


def test_a_checkpoint_of_another_run_is_refused(teacher_dir, gold_tree, tmp_path):
    from polyner.errors import UserError

    out = tmp_path / "out"
    train_teacher(_config(teacher_dir, gold_tree, out, max_steps=2))
    before = [(out / name).read_text() for name in ("checkpoint/state.json", "training_config.json")]
    with pytest.raises(UserError, match=r"another run \(batch_size: 4 in the checkpoint, 2 now; seed: 13 in the "
                                        r"checkpoint, 14 now\)"):
        train_teacher(_config(teacher_dir, gold_tree, out, max_steps=4, seed=14, batch_size=2))
    assert [(out / name).read_text() for name in ("checkpoint/state.json", "training_config.json")] == before
    train_teacher(_config(teacher_dir, gold_tree, out, max_steps=4, eval_every=4, threads=2))  # the rhythm may change
    assert json.loads((out / "training_state.json").read_text())["step"] == 4


def test_a_teacher_checkpoint_from_before_lowercase_share_resumes_and_trains_on_copies(teacher_dir, gold_tree,
                                                                                       tmp_path, caplog):
    """A checkpoint written before ``lowercase_share`` joined the run identity had none: it resumes at 0 and is
    refused with another share; a run with a share trains on the extra lower-cased sentences."""
    from polyner.errors import UserError

    out = tmp_path / "out"
    train_teacher(_config(teacher_dir, gold_tree, out, max_steps=2))
    state_path = out / "checkpoint" / "state.json"
    state = json.loads(state_path.read_text())
    del state["fingerprint"]["lowercase_share"]
    state_path.write_text(json.dumps(state))
    with pytest.raises(UserError, match=r"lowercase_share: 0.0 in the checkpoint, 0.5 now"):
        train_teacher(_config(teacher_dir, gold_tree, out, max_steps=4, lowercase_share=0.5))
    train_teacher(_config(teacher_dir, gold_tree, out, max_steps=4))
    assert json.loads((out / "training_state.json").read_text())["step"] == 4
    sizes = []
    for name, share in (("plain", 0.0), ("lower", 1.0)):
        caplog.clear()
        with caplog.at_level("INFO"):
            train_teacher(_config(teacher_dir, gold_tree, tmp_path / name, max_steps=2, lowercase_share=share))
        sizes.append(int(re.search(r"training on (\d+) sentences", caplog.text).group(1)))
    assert sizes[1] == 2 * sizes[0] > 0  # every sentence once more, lower-cased
    with pytest.raises(ValueError, match="lowercase_share must be between 0 and 1"):
        _config(teacher_dir, gold_tree, tmp_path / "bad", lowercase_share=2.0)


def test_train_teacher_takes_the_teacher_by_name(teacher_dir, gold_tree, tmp_path):
    """``--teacher NAME`` finds a teacher under $POLYNER_HOME/teachers (where ``polyner teacher build`` puts it), as
    ``--model NAME`` does; a name that is nowhere fails naming it, before anything is written."""
    from polyner.errors import UserError
    from polyner.home import polyner_home

    teachers = polyner_home() / "teachers"
    teachers.mkdir(parents=True, exist_ok=True)
    (teachers / "tiny-teacher").symlink_to(teacher_dir, target_is_directory=True)
    out = train_teacher(_config(Path("tiny-teacher"), gold_tree, tmp_path / "out", max_steps=2))
    assert (out / "model.safetensors").exists()
    assert json.loads((out / "training_config.json").read_text())["teacher"] == "tiny-teacher"
    with pytest.raises(UserError, match="no model 'no-such-teacher'"):
        train_teacher(_config(Path("no-such-teacher"), gold_tree, tmp_path / "other", max_steps=2))
    assert not (tmp_path / "other").exists()


def test_train_teacher_logs_progress_as_before(teacher_dir, gold_tree, tmp_path, caplog):
    """Runs are watched through their log: the progress and dev lines keep their logger and their format."""
    import re

    with caplog.at_level("INFO", logger="polyner"):
        train_teacher(_config(teacher_dir, gold_tree, tmp_path / "out", max_steps=4, log_every=2))
    lines = [(r.name, r.getMessage()) for r in caplog.records if r.name == "polyner.training.teacher"]
    progress = [m for _, m in lines if re.fullmatch(r"step \d+/4 \(\d+\.\d%\): loss \d+\.\d{4}, \d+\.\d\d s/step, "
                                                   r"ETA \d+h\d\dm", m)]
    assert [m.split("/")[0] for m in progress] == ["step 2", "step 4"] and "(50.0%)" in progress[0]
    dev = [m for _, m in lines if re.fullmatch(r"step \d+: loss \d+\.\d{4}, dev macro F1 \d+\.\d\d", m)]
    assert [m.split(":")[0] for m in dev] == ["step 2", "step 4"]


# --- sampling --------------------------------------------------------------------------------------

LANGS = ["en"] * 400 + ["de"] * 100 + ["ru"] * 25 + ["fr"] * 1


def test_sampler_is_a_function_of_seed_and_step():
    a = MixedLanguageSampler(LANGS, alpha=0.5, seed=13)
    b = MixedLanguageSampler(list(LANGS), alpha=0.5, seed=13)
    assert a.batch(7, 16) == b.batch(7, 16) == a.batch(7, 16)
    # order of calls does not matter: step 3 after step 9 is step 3
    b.batch(9, 16)
    assert b.batch(3, 16) == a.batch(3, 16)
    assert a.batch(7, 16) != a.batch(8, 16)
    assert a.batch(7, 16) != MixedLanguageSampler(LANGS, alpha=0.5, seed=14).batch(7, 16)
    batch = a.batch(0, 32)
    assert len(batch) == 32 and all(isinstance(i, int) and 0 <= i < len(LANGS) for i in batch)


def test_sampler_mixes_languages_with_alpha_weights():
    sampler = MixedLanguageSampler(LANGS, alpha=0.5, seed=0)
    assert sampler.langs == ["de", "en", "fr", "ru"]
    per_batch = [{LANGS[i] for i in sampler.batch(step, 16)} for step in range(50)]
    assert sum(len(langs) >= 2 for langs in per_batch) >= 45  # batches mix languages

    counts = {lang: 0 for lang in sampler.langs}
    for step in range(400):
        for i in sampler.batch(step, 16):
            counts[LANGS[i]] += 1
    total = sum(counts.values())
    weights = {"en": 20.0, "de": 10.0, "ru": 5.0, "fr": 1.0}  # size ** 0.5
    for lang, w in weights.items():
        assert counts[lang] / total == pytest.approx(w / sum(weights.values()), abs=0.02), lang
    assert counts["fr"] > 0  # the smallest language is seen


def test_sampler_alpha_extremes():
    uniform = MixedLanguageSampler(LANGS, alpha=0.0, seed=1)
    proportional = MixedLanguageSampler(LANGS, alpha=1.0, seed=1)
    np.testing.assert_allclose(uniform.probs, [0.25] * 4)
    np.testing.assert_allclose(proportional.probs, np.array([100, 400, 1, 25]) / 526)
    picks = [LANGS[i] for step in range(100) for i in uniform.batch(step, 8)]
    assert picks.count("fr") == pytest.approx(200, rel=0.2)


def test_sampler_needs_data():
    with pytest.raises(ValueError):
        MixedLanguageSampler([])


# --- checkpoints -----------------------------------------------------------------------------------


def _train_steps(model, optimizer, scheduler, steps: int, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        ids = torch.randint(5, model.config.vocab_size, (3, 9), generator=generator)
        labels = torch.randint(0, 7, (3, 9), generator=generator)
        model(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()


def _setup(tokenizer, seed: int):
    torch.set_num_threads(1)  # tiny matrices: threads only add contention (conftest resets this per test)
    model = build_tiny_model(tokenizer, seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    return model, optimizer, scheduler


def test_checkpoint_round_trip(tokenizer, tmp_path):
    model, optimizer, scheduler = _setup(tokenizer, seed=0)
    _train_steps(model, optimizer, scheduler, 3)
    folder = tmp_path / "checkpoint"
    state = {"step": 3, "best_f1": 12.5, "history": [{"step": 2, "loss": 1.0}]}
    save_checkpoint(folder, model, optimizer, scheduler, state)
    expected_rand = torch.rand(4)

    other, other_optimizer, other_scheduler = _setup(tokenizer, seed=1)
    assert not torch.equal(other.classifier.weight, model.classifier.weight)
    torch.manual_seed(999)
    assert load_checkpoint(folder, other, other_optimizer, other_scheduler) == state

    _assert_same_weights(other.state_dict(), model.state_dict())
    assert torch.equal(torch.rand(4), expected_rand)  # torch RNG restored
    assert other_scheduler.last_epoch == scheduler.last_epoch == 3
    assert [g["lr"] for g in other_optimizer.param_groups] == [g["lr"] for g in optimizer.param_groups]
    saved, loaded = optimizer.state_dict()["state"], other_optimizer.state_dict()["state"]
    assert saved.keys() == loaded.keys() and saved
    for key in saved:
        assert torch.equal(saved[key]["exp_avg"], loaded[key]["exp_avg"])
        assert torch.equal(saved[key]["exp_avg_sq"], loaded[key]["exp_avg_sq"])
        assert float(saved[key]["step"]) == float(loaded[key]["step"]) == 3

    # continuing both gives the same weights: the optimizer state really was restored
    _train_steps(model, optimizer, scheduler, 2, seed=5)
    _train_steps(other, other_optimizer, other_scheduler, 2, seed=5)
    _assert_same_weights(other.state_dict(), model.state_dict())


def test_checkpoint_overwrite_and_absent(tokenizer, tmp_path):
    model, optimizer, scheduler = _setup(tokenizer, seed=0)
    folder = tmp_path / "checkpoint"
    assert load_checkpoint(folder, model, optimizer, scheduler) is None
    save_checkpoint(folder, model, optimizer, scheduler, {"step": 1})
    _train_steps(model, optimizer, scheduler, 1)
    save_checkpoint(folder, model, optimizer, scheduler, {"step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]  # no .partial / .old left
    fresh, fresh_optimizer, fresh_scheduler = _setup(tokenizer, seed=3)
    assert load_checkpoint(folder, fresh, fresh_optimizer, fresh_scheduler) == {"step": 2}
    _assert_same_weights(fresh.state_dict(), model.state_dict())


def test_train_teacher_with_silver_trains_on_it_and_selects_on_gold_only(teacher_dir, gold_tree, tmp_path,
                                                                          monkeypatch):
    import polyner.training.teacher as teacher_module

    silver = tmp_path / "silver" / "wikiann" / "fr"
    silver.mkdir(parents=True)
    (silver / "train.iob2").write_text("Paris\tB-LOC\nest\tO\nbelle\tO\n", encoding="utf-8")
    (silver / "dev.iob2").write_text("Lyon\tB-LOC\n", encoding="utf-8")
    seen_groups, seen_dev = [], []
    real_sampler, real_eval = teacher_module.MixedLanguageSampler, teacher_module.evaluate_by_language

    def recording_sampler(groups, *args, **kwargs):
        seen_groups.append((list(groups), kwargs["weights"]))
        return real_sampler(groups, *args, **kwargs)

    def recording_eval(tag_words, sentences):
        sentences = list(sentences)
        seen_dev.append({s.lang for s in sentences})
        return real_eval(tag_words, sentences)

    monkeypatch.setattr(teacher_module, "MixedLanguageSampler", recording_sampler)
    monkeypatch.setattr(teacher_module, "evaluate_by_language", recording_eval)
    out = tmp_path / "out"
    train_teacher(_config(teacher_dir, gold_tree, out, max_steps=2, silver=str(tmp_path / "silver"),
                          silver_weight=0.3, bucket=2, bf16=True))
    groups, weights = seen_groups[0]
    assert "silver/wikiann/fr" in groups and weights["silver/wikiann/fr"] == 0.3
    assert weights["gold/src_a/en"] == 1.0
    assert seen_dev and all("fr" not in langs for langs in seen_dev)  # silver never selects
    assert json.loads((out / "training_config.json").read_text())["silver"] == str(tmp_path / "silver")
    history = json.loads((out / "training_state.json").read_text())["history"]
    assert set(history[-1]["dev_f1_by_language"]) == {"de", "en", "ru"}
