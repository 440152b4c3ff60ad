"""Word-level evaluation: strict IOB2 scores, per-language grouping, macro average, results tables."""
from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from polyner.data.iob2 import Sentence, discover_gold, read_gold
from polyner.evaluate import ResultTable, Scores, evaluate_by_language, macro, score_tags, write_section
from polyner.evaluation_run import EvaluationRequest, run_evaluation


def _close(scores: Scores, precision: float, recall: float, f1: float) -> None:
    assert scores.precision == pytest.approx(precision, abs=1e-6)
    assert scores.recall == pytest.approx(recall, abs=1e-6)
    assert scores.f1 == pytest.approx(f1, abs=1e-6)


# --- score_tags ------------------------------------------------------------------------------------


def test_score_tags_perfect():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    scores = score_tags(gold, [list(g) for g in gold])
    _close(scores, 100, 100, 100)
    assert scores.sentences == 2 and scores.entities == 3


def test_score_tags_partial_match_is_wrong():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    predicted = [["B-PER", "O", "O", "B-LOC"]]  # PER is one word short
    _close(score_tags(gold, predicted), 50, 50, 50)
    too_long = [["B-PER", "I-PER", "I-PER", "B-LOC"]]  # PER swallows a word
    _close(score_tags(gold, too_long), 50, 50, 50)


def test_score_tags_known_counts():
    gold = [["B-PER", "I-PER", "O", "B-ORG", "I-ORG"], ["B-LOC", "O"]]
    predicted = [["B-PER", "I-PER", "O", "B-ORG", "O"], ["B-LOC", "B-PER"]]
    # predicted: PER right, ORG partial (wrong), LOC right, PER spurious -> 2 of 4; gold has 3
    p, r = 2 / 4, 2 / 3
    scores = score_tags(gold, predicted)
    _close(scores, 100 * p, 100 * r, 100 * 2 * p * r / (p + r))
    assert scores.entities == 3 and scores.sentences == 2


def test_score_tags_wrong_type_is_wrong():
    _close(score_tags([["B-PER", "O"]], [["B-ORG", "O"]]), 0, 0, 0)


def test_score_tags_adjacent_entities_must_be_split():
    gold = [["B-LOC", "B-LOC"]]
    _close(score_tags(gold, [["B-LOC", "I-LOC"]]), 0, 0, 0)
    _close(score_tags(gold, [["B-LOC", "B-LOC"]]), 100, 100, 100)


def test_score_tags_orphan_prediction_starts_an_entity():
    gold = [["B-PER", "I-PER", "O", "B-LOC", "O"]]
    # I-PER with no opener is read as B-PER (as the decoder reads it), so the entity is found;
    # seqeval's strict mode alone would drop it.
    _close(score_tags(gold, [["I-PER", "I-PER", "O", "I-LOC", "O"]]), 100, 100, 100)
    # an I- of another type after an entity starts a new entity of its own type
    _close(score_tags([["B-PER", "B-LOC"]], [["B-PER", "I-LOC"]]), 100, 100, 100)
    # an orphan I-X inside O still yields an entity: here a spurious one
    _close(score_tags([["B-PER", "O", "O"]], [["B-PER", "O", "I-ORG"]]), 50, 100, 100 * 2 / 3)


def test_score_tags_nothing_predicted_or_nothing_to_find():
    scores = score_tags([["B-PER", "O"]], [["O", "O"]])
    _close(scores, 0, 0, 0)
    assert scores.entities == 1
    empty = score_tags([["O", "O"]], [["B-LOC", "O"]])
    _close(empty, 0, 0, 0)
    assert empty.entities == 0


# --- per language and macro ------------------------------------------------------------------------


def test_evaluate_by_language_groups_sentences():
    sentences = [
        Sentence(["Paris", "is"], ["B-LOC", "O"], "fr"),
        Sentence(["Angela", "Merkel"], ["B-PER", "I-PER"], "de"),
        Sentence(["Lyon", "too"], ["B-LOC", "O"], "fr"),
        Sentence(["Berlin"], ["B-LOC"], "de"),
    ]
    calls: list[list[list[str]]] = []

    def tag_words(batch):
        calls.append(batch)
        # right on French; on German the person is found but Berlin is called an ORG
        return [{"Paris": ["B-LOC", "O"], "Lyon": ["B-LOC", "O"], "Angela": ["B-PER", "I-PER"],
                 "Berlin": ["B-ORG"]}[words[0]] for words in batch]

    results = evaluate_by_language(tag_words, sentences)
    assert list(results) == ["de", "fr"]
    assert calls == [[["Angela", "Merkel"], ["Berlin"]], [["Paris", "is"], ["Lyon", "too"]]]
    _close(results["fr"], 100, 100, 100)
    _close(results["de"], 50, 50, 50)
    assert (results["de"].sentences, results["de"].entities) == (2, 2)
    assert (results["fr"].sentences, results["fr"].entities) == (2, 2)


def test_sentences_read_as_text_are_scored_on_character_spans():
    """--input text: the words joined as raw text (by nothing in Chinese), gold names ended as the tagger ends them
    (Ankara'da: Ankara), a strict match on (start, end, label)."""
    from polyner.evaluate import evaluate_text_by_language, gold_char_spans, sentence_text

    assert sentence_text(["Angela", "Merkel", "in", "Ankara'da"], "tr") == ("Angela Merkel in Ankara'da", [0, 7, 14, 17])
    assert sentence_text(["索尼", "公司", "在"], "zh") == ("索尼公司在", [0, 2, 4])
    words = ["Dün", "Ankara'da", "Angela", "Merkel", "konuştu"]  # ş: a Turkish text
    tags = ["O", "B-LOC", "B-PER", "I-PER", "O"]
    assert gold_char_spans(words, tags, sentence_text(words, "tr")[1]) == {(4, 10, "LOC"), (14, 27, "PER")}
    assert gold_char_spans(["to", "Sana'a"], ["O", "B-LOC"], [0, 3]) == {(3, 9, "LOC")}  # not Turkish: whole
    sentences = [Sentence(words, tags, "tr"), Sentence(["索尼", "公司"], ["B-ORG", "I-ORG"], "zh")]
    seen = []

    def tag_texts(texts):
        seen.extend(texts)
        answers = {"Dün Ankara'da Angela Merkel konuştu": [{"start": 4, "end": 10, "label": "LOC"},  # right
                                                   {"start": 14, "end": 20, "label": "PER"}],  # Angela alone: wrong
                   "索尼公司": [{"start": 0, "end": 4, "label": "ORG"}]}
        return [answers[text] for text in texts]

    results = evaluate_text_by_language(tag_texts, sentences)
    assert seen == ["Dün Ankara'da Angela Merkel konuştu", "索尼公司"]
    _close(results["tr"], 50, 50, 50)
    _close(results["zh"], 100, 100, 100)
    assert (results["tr"].sentences, results["tr"].entities) == (1, 2)


def test_macro_is_unweighted_mean():
    scores = {"en": Scores(100.0, 80.0, 90.0, 1000, 5000), "de": Scores(20.0, 40.0, 30.0, 10, 12),
              "ru": Scores(60.0, 0.0, 0.0, 5, 7)}
    m = macro(scores)
    _close(m, 60, 40, 40)  # a weighted mean would be close to en's scores
    assert (m.sentences, m.entities) == (1015, 5019)
    empty = macro({})
    _close(empty, 0, 0, 0)


# --- tables and the results file -------------------------------------------------------------------


def _rows(markdown: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in markdown.splitlines()]


def test_result_table_one_model():
    table = ResultTable("test", ["tiny"], [{"ru": Scores(50, 25, 100 / 3, 3, 4), "en": Scores(100, 100, 100, 2, 3)}])
    rows = _rows(table.markdown())
    assert rows[0] == ["lang", "sentences", "entities", "P", "R", "F1"]
    assert set("".join(rows[1])) <= set("-")
    assert rows[2] == ["en", "2", "3", "100.00", "100.00", "100.00"]
    assert rows[3] == ["ru", "3", "4", "50.00", "25.00", "33.33"]
    assert rows[4] == ["**macro**", "5", "7", "75.00", "62.50", "66.67"]
    assert len(rows) == 5


def test_result_table_several_models_one_f1_column_each():
    a = {"en": Scores(90, 90, 90, 2, 3), "de": Scores(10, 10, 10, 1, 2)}
    b = {"en": Scores(70, 70, 70, 2, 3)}  # no German results
    rows = _rows(ResultTable("dev", ["a", "b"], [a, b]).markdown())
    assert rows[0] == ["lang", "sentences", "entities", "F1 a", "F1 b"]
    assert rows[2] == ["de", "1", "2", "10.00", "-"]
    assert rows[3] == ["en", "2", "3", "90.00", "70.00"]
    assert rows[4] == ["**macro**", "3", "5", "50.00", "70.00"]
    assert len(rows) == 5
    assert all(len(r) == 5 for r in rows)


def test_write_section_creates_replaces_and_keeps_others(tmp_path):
    path = tmp_path / "docs" / "results.md"
    write_section(path, "alpha", "first alpha")
    write_section(path, "beta", "the beta table\n")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Results")
    assert text.index("first alpha") < text.index("the beta table")

    path.write_text(text.replace("# Results\n", "# Results\n\nHand-written notes.\n"), encoding="utf-8")
    write_section(path, "alpha", "second alpha")
    text = path.read_text(encoding="utf-8")
    assert "first alpha" not in text
    assert text.count("<!-- polyner:alpha -->") == 1 and text.count("<!-- /polyner:alpha -->") == 1
    assert "<!-- polyner:alpha -->\nsecond alpha\n<!-- /polyner:alpha -->" in text
    assert "<!-- polyner:beta -->\nthe beta table\n<!-- /polyner:beta -->" in text
    assert "Hand-written notes." in text
    assert text.index("second alpha") < text.index("the beta table")  # replaced in place


def test_write_section_names_are_literal(tmp_path):
    path = tmp_path / "r.md"
    write_section(path, "a.b:dev", "one")
    write_section(path, "axb:dev", "two")  # '.' must not match 'x'
    write_section(path, "a.b:dev", "three \\1 $x")  # replacement text is not a regex template
    text = path.read_text(encoding="utf-8")
    assert "one" not in text and "two" in text and "three \\1 $x" in text


# --- whole runs ------------------------------------------------------------------------------------


def _lang_rows(text: str) -> dict[str, list[list[str]]]:
    found: dict[str, list[list[str]]] = {}
    for row in _rows("\n".join(line for line in text.splitlines() if line.startswith("| "))):
        found.setdefault(row[0], []).append(row)
    return found


def test_cli_evaluate_writes_rows_per_language(tiny_model_dir, gold_tree, tmp_path):
    from polyner.cli import app

    results = tmp_path / "results.md"
    args = ["evaluate", str(tiny_model_dir), "--gold", str(gold_tree), "--split", "dev,test",
            "--write", str(results)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    text = results.read_text(encoding="utf-8")
    assert text.count(f"<!-- polyner:{tiny_model_dir.name}:dev-test -->") == 1
    assert re.search(r"### \S+ on dev\n", text) and re.search(r"### \S+ on test\n", text)
    rows = _lang_rows(text)
    # one row per language and split, with the sentence and entity counts of the gold tree
    assert [r[:3] for r in rows["en"]] == [["en", "2", "3"]] * 2
    assert [r[:3] for r in rows["de"]] == [["de", "1", "2"]] * 2
    assert [r[:3] for r in rows["ru"]] == [["ru", "1", "2"]] * 2
    assert len(rows["**macro**"]) == 2
    assert "data" not in rows and all(len(r) == 6 for group in rows.values() for r in group[1:])
    assert "| de |" in result.stdout and "decoded by viterbi" in text
    argmax = CliRunner().invoke(app, [*args, "--decoding", "argmax", "--section", "argmax"])
    assert argmax.exit_code == 0 and "decoded by argmax" in argmax.stdout
    windowed = CliRunner().invoke(app, [*args, "--max-length", "16", "--section", "window-16"])
    assert windowed.exit_code == 0 and f"windows of at most ({tiny_model_dir.name} 16) pieces" in windowed.stdout
    assert f"({tiny_model_dir.name} 128)" in text  # the model names no window: the Tagger's 128
    too_short = CliRunner().invoke(app, [*args, "--max-length", "2"])
    assert too_short.exit_code == 2 and "max_length must be an int of at least 4" in too_short.stderr
    unknown = CliRunner().invoke(app, [*args, "--decoding", "beam"])
    assert unknown.exit_code == 2 and "unknown decoding" in unknown.stderr

    # a second run replaces its own section
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert results.read_text(encoding="utf-8").count(f"<!-- polyner:{tiny_model_dir.name}:dev-test -->") == 1


def test_cli_evaluate_prints_and_writes_nothing_unless_asked(tiny_model_dir, gold_tree, tmp_path, monkeypatch):
    """Without --write the tables go to stdout only: nothing appears in the directory it is run from."""
    from polyner.cli import app

    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    result = CliRunner().invoke(app, ["evaluate", str(tiny_model_dir), "--gold", str(gold_tree),
                                      "--languages", "de,ru", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert set(_lang_rows(result.stdout)) == {"lang", "**macro**", "de", "ru"}
    assert "written to" not in result.stdout
    assert list(here.iterdir()) == []


def test_cli_evaluate_reads_sentences_as_text(tiny_model_dir, gold_tree):
    from polyner.cli import app

    args = ["evaluate", str(tiny_model_dir), "--gold", str(gold_tree), "--languages", "de,ru", "--no-progress"]
    result = CliRunner().invoke(app, [*args, "--input", "text"])
    assert result.exit_code == 0, result.output
    assert "Read as raw text" in result.stdout and set(_lang_rows(result.stdout)) == {"lang", "**macro**", "de", "ru"}
    wrong = CliRunner().invoke(app, [*args, "--input", "texts"])
    assert wrong.exit_code == 2 and "--input (reading) must be one of words, text, not 'texts'" in wrong.stderr


def test_cli_evaluate_langs_and_errors(tiny_model_dir, gold_tree, tmp_path):
    """The older spellings (--data, --langs, --results) still work."""
    from polyner.cli import app

    results = tmp_path / "results.md"
    ok = CliRunner().invoke(app, ["evaluate", str(tiny_model_dir), "--data", str(gold_tree), "--langs", "ru",
                                  "--section", "only-ru", "--results", str(results)])
    assert ok.exit_code == 0, ok.output
    rows = _lang_rows(results.read_text(encoding="utf-8"))
    assert set(rows) == {"lang", "**macro**", "ru"}

    missing = CliRunner().invoke(app, ["evaluate", str(tmp_path / "no-model"), "--data", str(gold_tree),
                                       "--results", str(results)])
    assert missing.exit_code == 2
    assert str(tmp_path / "no-model") in missing.stderr

    no_files = CliRunner().invoke(app, ["evaluate", str(tiny_model_dir), "--data", str(gold_tree), "--langs", "fr",
                                        "--results", str(results)])
    assert no_files.exit_code == 2
    assert "no test files" in no_files.stderr


class _Oracle:
    """A stand-in tagger that knows the gold tags of every sentence of the gold tree."""

    def __init__(self, gold_tree, drop_entities: bool = False, max_length: int | None = None) -> None:
        from types import SimpleNamespace

        self.config = SimpleNamespace(max_length=max_length or 128)  # as a Tagger reads a model without a window
        self.answers = {tuple(s.words): s.tags for s in read_gold(discover_gold(gold_tree))}
        self.drop = drop_entities

    def tag_words(self, sentences):
        return [["O"] * len(words) if self.drop else list(self.answers[tuple(words)]) for words in sentences]


def _load_with(monkeypatch, load) -> None:
    """Every model spec run_evaluation resolves builds ``load(model, **tagger options)`` (a stand-in tagger)."""
    from types import SimpleNamespace

    from polyner.spec import ModelSpec

    from polyner.loading import model_name

    def resolve(model, backend=None, threads=None, **options):
        return SimpleNamespace(build=lambda: load(model, **options), name=model_name(model))

    monkeypatch.setattr(ModelSpec, "resolve", staticmethod(resolve))


def test_run_evaluation_scores_each_model(gold_tree, tmp_path, monkeypatch):
    loaded = []

    def fake_load(path, batch_size=32, decoding="viterbi", max_length=None):
        loaded.append((path, batch_size, decoding, max_length))
        return _Oracle(gold_tree, drop_entities=path == "blind", max_length=max_length)

    _load_with(monkeypatch, fake_load)
    results = tmp_path / "results.md"
    body = run_evaluation(EvaluationRequest(models=["oracle", "blind"], data=str(gold_tree), splits=["dev"],
                                            names=["gold", "none"], results=str(results), batch_size=7))
    assert loaded == [("oracle", 7, "viterbi", None), ("blind", 7, "viterbi", None)]
    assert "decoded by viterbi; windows of at most (gold 128, none 128) pieces" in body
    rows = _lang_rows(body)
    assert rows["lang"][0] == ["lang", "sentences", "entities", "F1 gold", "F1 none"]
    for lang in ("de", "en", "ru", "**macro**"):
        assert rows[lang][0][3:] == ["100.00", "0.00"]
    assert body.strip() in results.read_text(encoding="utf-8")
    assert "<!-- polyner:gold-none:dev -->" in results.read_text(encoding="utf-8")


def test_run_evaluation_single_file_and_name_mismatch(gold_tree, tmp_path, monkeypatch):
    _load_with(monkeypatch, lambda path, batch_size=32, decoding="viterbi", max_length=None:
               _Oracle(gold_tree, max_length=max_length))
    one_file = gold_tree / "src_a" / "en" / "test.iob2"
    body = run_evaluation(EvaluationRequest(models=["m"], data=str(one_file), results=str(tmp_path / "r.md"),
                                            max_sentences=1))
    rows = _lang_rows(body)
    assert rows["en"][0] == ["en", "1", "2", "100.00", "100.00", "100.00"]  # language from the path
    with pytest.raises(ValueError, match="2 models but 1 names"):
        run_evaluation(EvaluationRequest(models=["m", "n"], data=str(gold_tree), names=["x"],
                                         results=str(tmp_path / "r.md")))
    # unnamed columns carry the name the model tags under: the shipped default's folder is polyner-default
    from polyner.loading import DEFAULT_MODEL_DIR

    body = run_evaluation(EvaluationRequest(models=[str(DEFAULT_MODEL_DIR), "runs/m"], data=str(one_file)))
    assert _lang_rows(body)["lang"][0][-2:] == ["F1 polyner-default", "F1 m"]


def test_run_evaluation_reports_silver_apart_and_the_41_language_coverage(gold_tree, tmp_path, monkeypatch):
    silver = tmp_path / "silver"

    def write(path, rows):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n\n".join("\n".join(f"{w}\t{t}" for w, t in zip(s.split(), g.split())) for s, g in rows)
                        + "\n", encoding="utf-8")

    write(silver / "wikiann" / "vi" / "train.iob2", [("Hà Nội lớn", "B-LOC I-LOC O")])
    write(silver / "wikiann" / "vi" / "dev.iob2", [("Hà Nội lớn", "B-LOC I-LOC O"), ("Huế đẹp", "B-LOC O")])
    write(silver / "wikineural" / "de" / "test.iob2", [("Bonn ist klein", "B-LOC O O")])
    answers = {("Hà", "Nội", "lớn"): ["B-LOC", "I-LOC", "O"], ("Huế", "đẹp"): ["B-LOC", "O"],
               ("Bonn", "ist", "klein"): ["B-LOC", "O", "O"]}

    class Oracle(_Oracle):
        def tag_words(self, sentences):
            seen = []
            for words in sentences:
                seen.append(list(answers.get(tuple(words)) or self.answers[tuple(words)]))
            return seen

    _load_with(monkeypatch, lambda path, batch_size=32, decoding="viterbi", max_length=None:
               Oracle(gold_tree, max_length=max_length))
    body = run_evaluation(EvaluationRequest(models=["m"], data=str(gold_tree), silver=str(silver), coverage=True,
                                            results=str(tmp_path / "r.md")))
    gold_part, silver_part = body.split("on silver test")[0], body.split("on silver test")[1].split("### Per")[0]
    assert "wikiann/vi (dev as test)" in silver_part and "wikineural/de" in silver_part
    silver_rows = _lang_rows(silver_part)
    assert silver_rows["vi"][0][1] == "1"  # the dev sentence that is also in train is left out
    assert "vi" not in _lang_rows(gold_part)
    coverage = {line.split(" | ")[0].strip("| "): line for line in body.split("### Per")[1].splitlines()
                if line.startswith("| ") and not line.startswith("| lang")}
    assert len(coverage) == 41
    assert "silver train" in coverage["vi"] and "100.00" in coverage["vi"]
    assert coverage["de"].count("100.00") == 2  # gold test and silver test
    assert coverage["bs"] == "| bs | none | no test data | no test data |"
