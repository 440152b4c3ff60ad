"""GLUE / SQuAD 2.0 on the student: heads, metrics, readers, SQuAD windows and span mapping, fine-tuning,
inference and the CLI, all on tiny models and tiny data written here."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from polyner.models.io import ModelDirectoryError, ner_config_kwargs
from polyner.models.student import PolynerStudentConfig, PolynerStudentForTokenClassification
from polyner.tasks import heads, sources
from polyner.tasks.finetune import FinetuneConfig, finetune_glue, finetune_squad
from polyner.tasks.glue import GlueExample, get_task, glue_metrics, load_glue, read_glue_tsv, subsample
from polyner.tasks.squad import (QAFeatures, WindowConfig, answer_span, best_spans, build_features,
                                 read_squad_json, truncate_question)
from polyner.tasks.squad_metric import (best_threshold, exact_match, normalize_answer, squad_v2_evaluate,
                                        token_f1)

CONTEXT = "Angela Merkel visited Paris with Emmanuel Macron on Monday. The United Nations met in New York."


def tiny_student_config(tokenizer, **extra) -> PolynerStudentConfig:
    return PolynerStudentConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, embedding_rank=16, max_position_embeddings=256,
                                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                pad_token_id=tokenizer.pad_token_id, **extra)


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory, tokenizer) -> Path:
    """A tiny distilled-NER-like student (token classifier) in HF layout."""
    folder = tmp_path_factory.mktemp("student")
    torch.manual_seed(0)
    PolynerStudentForTokenClassification(tiny_student_config(tokenizer, **ner_config_kwargs())).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_glue(root: Path) -> Path:
    """Tiny GLUE files in the original TSV layouts (CoLA without header, MRPC with a BOM, RTE string labels)."""
    good = ["a good film", "good and fine", "very good", "good acting", "good fun", "a good story"]
    bad = ["a bad film", "bad and dull", "very bad", "bad acting", "bad noise", "a bad story"]
    files = {
        "SST-2/train.tsv": "sentence\tlabel\n" + "".join(f"{g}\t1\n{b}\t0\n" for g, b in zip(good, bad))
                           + "a row without its label\n",
        "SST-2/dev.tsv": "sentence\tlabel\n" + "".join(f"{g} here\t1\n{b} here\t0\n"
                                                      for g, b in zip(good[:3], bad[:3])),
        "CoLA/train.tsv": "".join(f"src\t1\t\t{g}.\nsrc\t0\t*\t{b} the.\n" for g, b in zip(good, bad)),
        "CoLA/dev.tsv": "".join(f"src\t1\t\t{g}.\nsrc\t0\t*\t{b} the.\n" for g, b in zip(good[:2], bad[:2])),
        "MRPC/train.tsv": "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
                          + "".join(f"{i % 2}\t{i}\t{i + 100}\t{g}\t{b if i % 2 == 0 else g}\n"
                                    for i, (g, b) in enumerate(zip(good, bad))),
        "STS-B/train.tsv": "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
                           + "".join(f"{i}\tmain\tf\t2012\t{i}\tnone\tnone\t{g}\t{b}\t{i * 0.8:.1f}\n"
                                     for i, (g, b) in enumerate(zip(good, bad))),
        "RTE/train.tsv": "index\tsentence1\tsentence2\tlabel\n"
                         + "".join(f"{i}\t{g}\t{g if i % 2 else b}\t{'entailment' if i % 2 else 'not_entailment'}\n"
                                   for i, (g, b) in enumerate(zip(good, bad))),
    }
    files["MRPC/dev.tsv"] = files["MRPC/train.tsv"]
    files["STS-B/dev.tsv"] = files["STS-B/train.tsv"]
    files["RTE/dev.tsv"] = files["RTE/train.tsv"]
    for name, body in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(body, encoding="utf-8")
    return root


def write_squad(root: Path) -> Path:
    """Tiny SQuAD 2.0 train/dev JSON: answerable and unanswerable questions over two contexts."""
    second = "Marie Curie worked at the University of Paris. She was born in Warsaw."
    qas = [("Who visited Paris?", CONTEXT, "Angela Merkel"), ("Where did Merkel go?", CONTEXT, "Paris"),
           ("Where did the United Nations meet?", CONTEXT, "New York"),
           ("Who was born in Warsaw?", second, "Marie Curie"),
           ("Where was Curie born?", second, "Warsaw"), ("Who visited Rome?", CONTEXT, None),
           ("Where did Curie die?", second, None)]
    paragraphs: dict[str, list] = {}
    for n, (question, context, answer) in enumerate(qas):
        qa = {"id": f"q{n}", "question": question, "is_impossible": answer is None,
              "answers": [] if answer is None else [{"text": answer, "answer_start": context.index(answer)}]}
        if answer is None:
            qa["plausible_answers"] = [{"text": "Paris", "answer_start": context.index("Paris")}]
        paragraphs.setdefault(context, []).append(qa)
    payload = {"version": "v2.0", "data": [{"title": "Tiny", "paragraphs": [
        {"context": c, "qas": q} for c, q in paragraphs.items()]}]}
    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev"):
        (root / f"{split}-v2.0.json").write_text(json.dumps(payload), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory) -> Path:
    return write_glue(tmp_path_factory.mktemp("glue"))


@pytest.fixture(scope="module")
def squad_dir(tmp_path_factory) -> Path:
    return write_squad(tmp_path_factory.mktemp("squad"))


# --- heads -------------------------------------------------------------------------------------------------

def _batch(tokenizer, texts):
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    return encoded["input_ids"], encoded["attention_mask"]


@pytest.mark.parametrize("labels", [("negative", "positive"), ()])
def test_sequence_head_trains_and_round_trips(tmp_path, tokenizer, labels):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    config = tiny_student_config(tokenizer, **heads.label_kwargs(labels))
    model = heads.PolynerStudentForSequenceClassification(config)
    ids, mask = _batch(tokenizer, ["a good film", "a bad film", "very good", "very bad"])
    target = torch.tensor([1, 0, 1, 0]) if labels else torch.tensor([4.5, 0.5, 4.0, 1.0])
    out = model(ids, mask)
    assert out.logits.shape == (4, len(labels) or 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = model(ids, mask, labels=target).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    model.eval().save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(loaded).__name__ == "PolynerStudentForSequenceClassification"
    assert torch.allclose(loaded(ids, mask).logits, model(ids, mask).logits, atol=1e-6)
    assert loaded.config.problem_type == ("single_label_classification" if labels else "regression")


def test_qa_head_trains_and_round_trips(tmp_path, tokenizer):
    from transformers import AutoModelForQuestionAnswering

    torch.manual_seed(0)
    model = heads.PolynerStudentForQuestionAnswering(tiny_student_config(tokenizer))
    ids, mask = _batch(tokenizer, ["Angela Merkel visited Paris", "The United Nations met in New York"])
    starts, ends = torch.tensor([3, 0]), torch.tensor([4, 0])
    out = model(ids, mask)
    assert out.start_logits.shape == out.end_logits.shape == ids.shape
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = model(ids, mask, start_positions=starts, end_positions=ends).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    # a position outside the window is ignored rather than an error
    assert torch.isfinite(model(ids, mask, start_positions=torch.tensor([500, 3]),
                                end_positions=torch.tensor([500, 4])).loss)
    model.eval().save_pretrained(tmp_path)
    loaded = AutoModelForQuestionAnswering.from_pretrained(tmp_path).eval()
    assert type(loaded).__name__ == "PolynerStudentForQuestionAnswering"
    assert torch.allclose(loaded(ids, mask).start_logits, model.eval()(ids, mask).start_logits, atol=1e-6)


def test_heads_keep_the_encoder_of_a_ner_student_and_of_a_bert(student_dir, tiny_model_dir):
    from safetensors.torch import load_file

    saved = load_file(str(student_dir / "model.safetensors"))
    for kind in ("classify", "qa"):
        model = heads.load_encoder_with_head(student_dir, kind, ("a", "b", "c"))
        state = model.state_dict()
        encoder = [k for k in saved if k.startswith("student.")]
        assert encoder and all(torch.equal(state[k], saved[k]) for k in encoder)
    bert = heads.load_encoder_with_head(tiny_model_dir, "classify", ("a", "b"))
    assert type(bert).__name__ == "BertForSequenceClassification" and bert.config.num_labels == 2
    assert type(heads.load_encoder_with_head(tiny_model_dir, "qa")).__name__ == "BertForQuestionAnswering"
    with pytest.raises(ValueError, match="unknown head"):
        heads.load_encoder_with_head(student_dir, "ner")


def test_mean_pooling_ignores_padding_and_is_what_a_new_head_gets(tmp_path, student_dir):
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert torch.equal(heads.pool(hidden, mask, "mean"), torch.tensor([[2.0, 3.0]]))
    assert torch.equal(heads.pool(hidden, mask, "first"), torch.tensor([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="unknown pooling"):
        heads.pool(hidden, mask, "max")
    model = heads.load_encoder_with_head(student_dir, "classify", ("a", "b"))
    assert model.config.classifier_pooling == "mean"
    ids = torch.tensor([[0, 5, 6, 2, 1, 1]])
    padded = model.eval()(ids, torch.tensor([[1, 1, 1, 1, 0, 0]])).logits
    trimmed = model(ids[:, :4], torch.ones(1, 4, dtype=torch.long)).logits
    assert torch.allclose(padded, trimmed, atol=1e-5)  # padding changes nothing
    model.save_pretrained(tmp_path)  # a trained head keeps its pooling, whatever is asked for now
    assert heads.load_encoder_with_head(tmp_path, "classify", ("a", "b"), pooling="first").config.classifier_pooling == "mean"
    first = heads.load_encoder_with_head(student_dir, "classify", ("a", "b"), pooling="first")
    assert first.config.classifier_pooling == "first"


# --- GLUE metrics and readers ---------------------------------------------------------------------------------

def test_glue_metrics_on_hand_made_cases():
    assert glue_metrics(get_task("sst2"), [1, 0, 1, 1], [1, 0, 0, 1]) == {"accuracy": 75.0}
    mrpc = glue_metrics(get_task("mrpc"), [1, 1, 0, 0], [1, 0, 1, 0])
    assert mrpc == {"f1": 50.0, "accuracy": 50.0}
    # TP=2 TN=1 FP=1 FN=0: MCC = (2*1 - 1*0) / sqrt(3*2*2*1)
    cola = glue_metrics(get_task("cola"), [1, 0, 1, 1], [1, 0, 0, 1])
    assert cola["mcc"] == pytest.approx(100 * 2 / math.sqrt(12))
    stsb = glue_metrics(get_task("stsb"), [1.0, 2.0, 3.0], [1.0, 4.0, 9.0])
    assert stsb["spearman"] == pytest.approx(100.0)
    assert stsb["pearson"] == pytest.approx(100 * 8 / math.sqrt(2 * 294 / 9))
    assert glue_metrics(get_task("stsb"), [2.0, 2.0, 2.0], [1.0, 4.0, 9.0])["pearson"] == 0.0
    with pytest.raises(ValueError, match="predictions"):
        glue_metrics(get_task("sst2"), [1], [1, 0])


def test_constant_baselines_are_the_floor_of_each_metric():
    from polyner.tasks.glue import constant_baseline
    from polyner.tasks.squad import SquadExample, no_answer_baseline

    train = [GlueExample("a", "b", 1)] * 3 + [GlueExample("c", "d", 0)]
    dev = [GlueExample("e", "f", label) for label in (1, 1, 1, 0)]
    # always "equivalent": precision 3/4, recall 1 -> F1 6/7
    assert constant_baseline(get_task("mrpc"), train, dev) == {"f1": pytest.approx(600 / 7), "accuracy": 75.0}
    assert constant_baseline(get_task("cola"), train, dev)["mcc"] == 0.0
    scores = [GlueExample("a", "b", s) for s in (1.0, 2.0, 4.0)]
    assert constant_baseline(get_task("stsb"), scores, scores) == {"pearson": 0.0, "spearman": 0.0}
    with pytest.raises(ValueError, match="baseline"):
        constant_baseline(get_task("sst2"), [], dev)
    questions = [SquadExample("1", "q", "c", ["x"], [0]), SquadExample("2", "q", "c"), SquadExample("3", "q", "c")]
    assert no_answer_baseline(questions)["best_f1"] == pytest.approx(200 / 3)


def test_task_names_and_subsampling():
    assert get_task("SST-2") is get_task("sst2") and get_task("STS_B").is_regression
    with pytest.raises(ValueError, match="unknown GLUE task"):
        get_task("wnli")
    items = list(range(100))
    sample = subsample(items, 10, seed=1)
    assert len(sample) == 10 and sample == sorted(sample) and sample == subsample(items, 10, seed=1)
    assert subsample(items, None, 1) is items and subsample(items, 500, 1) is items


def test_local_glue_readers(glue_dir, caplog):
    sst2, where = load_glue(get_task("sst2"), "train", glue_dir, use_hub=False)
    assert len(sst2) == 12 and where.endswith("SST-2/train.tsv") and "skipped 1 malformed" in caplog.text
    assert sst2[0] == GlueExample("a good film", None, 1)
    cola = read_glue_tsv(get_task("cola"), glue_dir / "CoLA" / "train.tsv")
    assert cola[1] == GlueExample("a bad film the.", None, 0)
    mrpc = read_glue_tsv(get_task("mrpc"), glue_dir / "MRPC" / "train.tsv")  # header with a BOM
    assert mrpc[1] == GlueExample("good and fine", "good and fine", 1)
    stsb, _ = load_glue(get_task("stsb"), "dev", glue_dir / "STS-B", use_hub=False)  # the task folder itself
    assert stsb[2].label == pytest.approx(1.6) and stsb[2].text_b == "very bad"
    rte = read_glue_tsv(get_task("rte"), glue_dir / "RTE" / "train.tsv")
    assert [e.label for e in rte[:2]] == [1, 0]  # not_entailment = 1, entailment = 0 as on the hub
    with pytest.raises(FileNotFoundError, match="QQP"):
        load_glue(get_task("qqp"), "train", glue_dir, use_hub=False)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_glue(get_task("sst2"), "train", glue_dir / "nowhere", use_hub=False)


def test_hub_is_not_dialled_offline_and_failures_fall_back(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(sources.socket, "create_connection",
                        lambda *a, **k: pytest.fail("offline, yet the hub was dialled"))
    assert sources.hub_reachable() is False
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    for name in sources.OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sources, "hub_reachable", lambda timeout=2.0: True)
    monkeypatch.setattr(sources, "shared_data_dir", lambda name: tmp_path)

    def broken_hub():
        raise ConnectionError("no network")

    data, origin = sources.load_with_fallback(broken_hub, lambda root: ["local", root], None, "glue")
    assert data == ["local", tmp_path] and origin == str(tmp_path)
    assert sources.load_with_fallback(lambda: ["hub"], lambda root: [], None, "glue") == (["hub"], "hub")
    monkeypatch.setattr(sources, "shared_data_dir", lambda name: None)
    with pytest.raises(FileNotFoundError, match="--data"):
        sources.load_with_fallback(broken_hub, lambda root: [], None, "glue")


# --- SQuAD metric ---------------------------------------------------------------------------------------------

def test_squad_normalization_em_and_f1_by_hand():
    assert normalize_answer("The  Quick, brown fox!") == "quick brown fox"
    assert normalize_answer("an apple a day") == "apple day"
    assert exact_match("the Eiffel Tower", "Eiffel tower.") == 1
    assert token_f1("the cat sat", "a cat sat down") == pytest.approx(0.8)  # P 2/3, R 1
    assert token_f1("cat", "dog") == 0.0
    assert token_f1("", "") == 1.0 and token_f1("", "something") == 0.0 and token_f1("cat", "") == 0.0


def test_squad_v2_evaluate_by_hand():
    gold = {"a": ["Paris", "the city of Paris"], "b": ["New York"], "c": [], "d": [], "e": ["Marie Curie"]}
    predictions = {"a": "city of Paris", "b": "York", "c": "", "d": "Rome", "e": "Curie"}
    # EM: a 1 (second gold), b 0, c 1, d 0, e 0; F1: a 1, b 2/3, c 1, d 0, e 2/3
    result = squad_v2_evaluate(gold, predictions)
    assert result["exact"] == pytest.approx(100 * 2 / 5)
    assert result["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1 + 0 + 2 / 3) / 5)
    assert result["HasAns_total"] == 3 and result["NoAns_total"] == 2
    assert result["HasAns_exact"] == pytest.approx(100 / 3) and result["NoAns_f1"] == pytest.approx(50.0)
    assert result["missing"] == 0
    partial = squad_v2_evaluate(gold, {"a": "Paris", "c": ""})
    assert partial["total"] == 2 and partial["missing"] == 3 and partial["exact"] == 100.0


def test_squad_no_answer_threshold_by_hand():
    gold = {"a": ["Paris"], "b": ["York"], "c": [], "d": []}
    predictions = {"a": "Paris", "b": "London", "c": "Rome", "d": "Oslo"}
    na_probs = {"a": 0.1, "b": 0.3, "c": 0.6, "d": 0.2}
    # raw EM: a 1, b 0, c 0, d 0. Start at 2 (c, d right as no answer); answering in na order:
    # a (+1) -> 3, d (-1) -> 2, b (+0) -> 2, c (-1) -> 1; best 3 of 4 at threshold 0.1
    assert best_threshold(predictions, {"a": 1, "b": 0, "c": 0, "d": 0}, na_probs,
                          {"a": True, "b": True, "c": False, "d": False}) == (75.0, 0.1)
    result = squad_v2_evaluate(gold, predictions, na_probs, threshold=0.25)
    # threshold 0.25: c (0.6) becomes no answer -> right; a answered right; b, d wrong
    assert result["exact"] == 50.0
    assert result["best_exact"] == 75.0 and result["best_exact_thresh"] == 0.1
    assert result["best_f1"] == 75.0
    with pytest.raises(ValueError, match="no-answer probability"):
        squad_v2_evaluate(gold, predictions, {"a": 0.1})


# --- SQuAD windows and span mapping ---------------------------------------------------------------------------

def test_read_squad_json(squad_dir):
    examples = read_squad_json(squad_dir / "dev-v2.0.json")
    assert len(examples) == 7 and sum(e.is_impossible for e in examples) == 2
    first = examples[0]
    assert first.context[slice(*answer_span(first))] == first.answers[0] == "Angela Merkel"
    bad = squad_dir / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="no questions"):
        read_squad_json(bad)


def test_long_context_windows_with_stride_and_labels(tokenizer):
    config = WindowConfig(max_length=40, doc_stride=8, max_query_length=10)
    context = " ".join([CONTEXT] * 4)
    answer_start = context.index("Paris", len(CONTEXT) * 2)  # in the third copy
    span = (answer_start, answer_start + len("Paris"))
    features = build_features(tokenizer, ["Where did Merkel go?"], [context], [span], config)
    assert len(features) > 3 and all(len(ids) <= 40 for ids in features.input_ids)
    windows = [[o for o in offsets if o is not None] for offsets in features.offsets]
    for left, right in zip(windows, windows[1:]):
        assert left[-8:] == right[:8]  # neighbours share doc_stride pieces
    labelled = 0
    for f in range(len(features)):
        start, end = features.start_positions[f], features.end_positions[f]
        if start == features.cls_index[f]:
            assert end == start
            assert not (windows[f][0][0] <= span[0] and windows[f][-1][1] >= span[1])
        else:
            labelled += 1
            offsets = features.offsets[f]
            assert context[offsets[start][0]:offsets[end][1]].strip() == "Paris"
    assert labelled >= 1


def test_empty_context_and_overlong_question(tokenizer):
    config = WindowConfig(max_length=32, doc_stride=4, max_query_length=8)
    long_question = "Where did Angela Merkel and Emmanuel Macron meet the United Nations in New York?"
    assert len(tokenizer(truncate_question(tokenizer, long_question, 8), add_special_tokens=False)["input_ids"]) <= 8
    features = build_features(tokenizer, [long_question, "Who?"], [CONTEXT, ""], [(22, 27), None], config)
    assert set(features.example_index) == {0, 1} and all(len(ids) <= 32 for ids in features.input_ids)
    empty = [f for f in range(len(features)) if features.example_index[f] == 1]
    assert len(empty) == 1 and all(o is None for o in features.offsets[empty[0]])
    assert features.start_positions[empty[0]] == features.cls_index[empty[0]]
    with pytest.raises(ValueError, match="doc_stride"):
        WindowConfig(max_length=32, doc_stride=30, max_query_length=8).check(tokenizer)
    with pytest.raises(ValueError, match="no room"):
        WindowConfig(max_length=10, doc_stride=1, max_query_length=8).check(tokenizer)


def test_best_spans_map_back_to_characters():
    context = "Paris  is big"
    # a hand-made window: <s> q </s> </s> Paris is big </s>; the "is" piece's offsets include no space
    features = QAFeatures(input_ids=[[0, 9, 2, 2, 10, 11, 12, 2]] * 2, example_index=[0, 1],
                          offsets=[[None, None, None, None, (0, 5), (7, 9), (10, 13), None]] * 2,
                          cls_index=[0, 0], start_positions=[0, 0], end_positions=[0, 0])
    low = -10.0
    start = [[low] * 8, [5.0] + [low] * 7]
    end = [[low] * 8, [5.0] + [low] * 7]
    start[0][5], end[0][6] = 4.0, 4.0  # "is big"
    start[0][0], end[0][0] = 0.0, 0.0
    import numpy as np

    spans = best_spans([context, context], features, [np.array(s) for s in start], [np.array(e) for e in end],
                       WindowConfig(max_answer_length=5, n_best=3))
    assert (spans[0].text, spans[0].start, spans[0].end) == ("is big", 7, 13)
    assert context[spans[0].start:spans[0].end] == spans[0].text
    assert spans[0].na_prob == pytest.approx(1 / (1 + math.exp(8.0)))
    assert spans[1].na_prob > 0.5  # the null score (10) beats every span (-20)
    none = best_spans([""], QAFeatures([[0, 9, 2]], [0], [[None, None, None]], [0], [0], [0]),
                      [np.zeros(3)], [np.zeros(3)], WindowConfig())
    assert none[0].text == "" and none[0].na_prob == 1.0


# --- inference ------------------------------------------------------------------------------------------------

class KeywordQAModel(torch.nn.Module):
    """A stand-in QA model: the piece "▁Paris" is the answer; anything else scores below the CLS (no answer)."""

    def __init__(self, tokenizer) -> None:
        super().__init__()
        self.keyword = tokenizer.convert_tokens_to_ids("\u2581Paris")
        self.config = SimpleNamespace(num_labels=2, qa_max_length=24, qa_doc_stride=4, qa_max_query_length=8,
                                      qa_null_threshold=0.5)

    def forward(self, input_ids, attention_mask):
        logits = torch.where(input_ids == self.keyword, 10.0, -5.0)
        logits[:, 0] = 0.0
        return SimpleNamespace(start_logits=logits, end_logits=logits.clone())


def test_question_answerer_bad_input_gives_no_answer(tokenizer):
    from polyner.tasks.inference import QuestionAnswerer

    qa = QuestionAnswerer(KeywordQAModel(tokenizer), tokenizer)
    context = "The United Nations met in New York. " * 6 + "Angela Merkel visited Paris on Monday."
    found = qa("Where did Merkel go?", context)
    assert found["answer"] == "Paris" and context[found["start"]:found["end"]] == "Paris"
    assert found["start"] > 100  # in a later window of the long context
    assert qa("Where did Merkel go? " * 40, context)["answer"] == "Paris"  # question longer than the window
    missing = qa("Where did Merkel go?", "The United Nations met in New York.")
    assert missing["answer"] == "" and missing["score"] > 0.5
    assert qa("Where?", "") == {"answer": "", "start": 0, "end": 0, "score": 1.0}
    assert qa("   ", context)["answer"] == ""
    batch = qa(["Where?", "Where?"], [context, "   "])
    assert [b["answer"] for b in batch] == ["Paris", ""]
    with pytest.raises(TypeError, match="question"):
        qa(3, context)
    with pytest.raises(TypeError, match="bytes"):
        qa("Where?", b"bytes")
    with pytest.raises(TypeError, match="both"):
        qa("Where?", [context])
    with pytest.raises(ValueError, match="questions for"):
        qa(["a", "b"], [context])


# --- fine-tuning, loading, CLI ----------------------------------------------------------------------------------

def _glue_config(student_dir, glue_dir, out, task="sst2", **extra) -> FinetuneConfig:
    settings = dict(task=task, out=str(out), model=str(student_dir), data=str(glue_dir), use_hub=False,
                    steps=4, batch_size=4, eval_every=2, lr=1e-3, threads=1, seed=3)
    settings.update(extra)
    return FinetuneConfig(**settings)


def test_finetune_glue_saves_the_best_on_dev_and_loads(tmp_path, student_dir, glue_dir):
    import polyner

    record = finetune_glue(_glue_config(student_dir, glue_dir, tmp_path / "sst2"))
    out = tmp_path / "sst2"
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json"} <= {p.name for p in out.iterdir()}
    assert not (out / "checkpoint").exists()
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["best"]["accuracy"] == max(h["accuracy"] for h in saved["history"]) == record["best"]["accuracy"]
    assert [h["step"] for h in saved["history"]] == [2, 4] and saved["train_size"] == 12
    classifier = polyner.load(out, task="classify")
    single = classifier("a good film")
    assert single["label"] in ("negative", "positive") and 0.5 <= single["score"] <= 1.0
    assert len(classifier(["a good film", ("good", "bad")])) == 2
    with pytest.raises(TypeError):
        classifier(3)
    regression = finetune_glue(_glue_config(student_dir, glue_dir, tmp_path / "stsb", task="stsb"))
    assert set(regression["best"]) == {"pearson", "spearman"}
    value = polyner.load(tmp_path / "stsb", task="classify")(("a good film", "a bad film"))
    assert value["label"] == "score" and isinstance(value["score"], float)


def test_finetune_resumes_exactly(tmp_path, student_dir, glue_dir, monkeypatch):
    from safetensors.torch import load_file

    straight = tmp_path / "straight"
    finetune_glue(_glue_config(student_dir, glue_dir, straight, keep_checkpoint=True, save_every=2))
    resumed = tmp_path / "resumed"
    real_clip, calls = torch.nn.utils.clip_grad_norm_, []

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_clip(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        finetune_glue(_glue_config(student_dir, glue_dir, resumed, keep_checkpoint=True, save_every=2))
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", real_clip)
    assert json.loads((resumed / "checkpoint" / "state.json").read_text())["step"] == 2
    finetune_glue(_glue_config(student_dir, glue_dir, resumed, keep_checkpoint=True, save_every=2))
    a = load_file(str(straight / "checkpoint" / "weights.safetensors"))
    b = load_file(str(resumed / "checkpoint" / "weights.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    with pytest.raises(ValueError, match="another run"):
        finetune_glue(_glue_config(student_dir, glue_dir, resumed, keep_checkpoint=True, seed=4))


@pytest.mark.parametrize("rows,batch,processes", [(10, 4, 1), (9, 4, 1), (9, 4, 2), (10, 4, 2), (8, 4, 2), (3, 4, 2),
                                                 (13, 4, 4), (14, 4, 4)])
def test_every_batch_of_an_epoch_can_be_shared_by_the_processes(rows, batch, processes):
    from polyner.tasks.finetune import batches_per_epoch
    from polyner.training.distributed import DistributedContext

    per_epoch = batches_per_epoch(rows, batch, processes)
    sizes = [len(range(rows)[i * batch:(i + 1) * batch]) for i in range(per_epoch)]
    for size in sizes:  # the global batches run_training draws; none is refused by a rank
        shares = [DistributedContext(rank=r, world_size=processes, initialized=True).shard(list(range(size)))
                  for r in range(processes)]
        assert sum(map(len, shares)) == size
    left_out = rows - sum(sizes)
    assert left_out == 0 if processes == 1 else left_out < processes  # one process: every row, as before


def test_too_few_rows_for_the_processes_is_an_error():
    from polyner.tasks.finetune import batches_per_epoch

    with pytest.raises(ValueError, match="cannot be shared by 4"):
        batches_per_epoch(3, 8, 4)
    with pytest.raises(ValueError, match="0 training rows"):
        batches_per_epoch(0, 8, 1)


def test_finetune_squad_and_ask(tmp_path, student_dir, squad_dir):
    import polyner

    config = FinetuneConfig(task="squad", out=str(tmp_path / "qa"), model=str(student_dir), data=str(squad_dir),
                            use_hub=False, steps=3, batch_size=4, eval_every=3, max_length=32, doc_stride=8,
                            max_query_length=10, threads=1)
    record = finetune_squad(config)
    assert {"exact", "f1", "best_exact", "best_f1", "best_f1_thresh", "HasAns_total"} <= set(record["best"])
    assert record["best"]["total"] == 7 and record["train_size"] > 7  # contexts longer than a window
    saved = json.loads((tmp_path / "qa" / "config.json").read_text())
    assert saved["qa_null_threshold"] == record["best"]["best_f1_thresh"] and saved["qa_max_length"] == 32
    assert set(json.loads((tmp_path / "qa" / "dev_predictions.json").read_text())) == {f"q{i}" for i in range(7)}
    qa = polyner.load(tmp_path / "qa", task="qa")
    answer = qa("Where did Merkel go?", CONTEXT)
    assert set(answer) == {"answer", "start", "end", "score"}
    assert CONTEXT[answer["start"]:answer["end"]] == answer["answer"]
    assert qa("Where?", "")["answer"] == ""


def test_load_refuses_models_without_the_head(student_dir):
    import polyner

    with pytest.raises(ModelDirectoryError, match="polyner finetune squad"):
        polyner.load(student_dir, task="qa")
    with pytest.raises(ModelDirectoryError, match="SequenceClassification"):
        polyner.load(student_dir, task="classify")
    with pytest.raises(ValueError, match="unknown task"):
        polyner.load(student_dir, task="translate")


def test_cli_finetune_glue_and_squad_write_one_results_table(tmp_path, student_dir, glue_dir, squad_dir):
    from polyner.cli import app
    from polyner.tasks.report import read_runs

    runner = CliRunner()
    results = tmp_path / "results.md"
    common = ["--model", str(student_dir), "--no-hub", "--steps", "2", "--batch-size", "4", "--threads", "1",
              "--name", "tiny-student", "--results", str(results), "--quiet"]
    run = runner.invoke(app, ["finetune", "glue", "--task", "MRPC", "--data", str(glue_dir),
                              "--out", str(tmp_path / "mrpc"), *common])
    assert run.exit_code == 0, run.output
    line = json.loads(run.stdout.strip().splitlines()[-1])
    assert line["task"] == "mrpc" and set(line["best"]) == {"f1", "accuracy"}
    run = runner.invoke(app, ["finetune", "squad", "--data", str(squad_dir), "--out", str(tmp_path / "squad"),
                              "--max-length", "32", "--doc-stride", "8", "--max-query-length", "10", *common])
    assert run.exit_code == 0, run.output
    text = results.read_text()
    assert text.count("<!-- polyner:finetune-glue-squad -->") == 1
    assert "| tiny-student |" in text and "XtremeDistil-l6-h256 (paper) | 13M | 91.2" in text
    runs = {r["task"]: r for r in read_runs(results)}
    assert set(runs["mrpc"]["baseline"]) == {"f1", "accuracy"} and "best_f1" in runs["squad"]["baseline"]
    assert "constant baseline |" in text
    assert {(r["name"], r["task"]) for r in read_runs(results)} == {("tiny-student", "mrpc"),
                                                                  ("tiny-student", "squad")}
    bad = runner.invoke(app, ["finetune", "glue", "--task", "wnli", *common])
    assert bad.exit_code == 2 and "unknown GLUE task" in bad.output
    missing = runner.invoke(app, ["finetune", "glue", "--task", "qnli", "--data", str(glue_dir),
                                  "--out", str(tmp_path / "qnli"), *common])
    assert missing.exit_code == 2 and "QNLI" in missing.output
