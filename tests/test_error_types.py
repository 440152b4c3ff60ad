"""benchmarks/error_types.py: how it counts kinds of errors and the words at entity edges."""
from __future__ import annotations


def test_error_types_count_each_gold_entity_once():
    """Correct, wrong label, other edges, missed; found entities that overlap no gold entity are spurious."""
    from benchmarks.error_types import classify

    gold = {(0, 2, "PER"), (3, 4, "LOC"), (5, 7, "ORG"), (8, 9, "LOC")}
    found = {(0, 2, "PER"), (3, 4, "ORG"), (5, 6, "ORG"), (10, 11, "PER"), (12, 14, "LOC")}
    assert classify(gold, found) == {"correct": 1, "type": 1, "boundary": 1, "missed": 1, "spurious": 2}
    assert sum(classify(set(), set()).values()) == 0


def test_edge_words_name_what_a_boundary_error_adds_or_drops():
    from benchmarks.error_types import edge_words

    words = ["the", "team", "of", "Brazil", "football", "won"]
    gold = {(1, 4, "ORG")}
    assert edge_words(words, gold, {(1, 5, "ORG")}) == {"+ after: football": 1}
    assert edge_words(words, gold, {(0, 3, "ORG")}) == {"+ before: the": 1, "- last: Brazil": 1}
    assert edge_words(words, gold, {(1, 4, "PER")}) == {}  # same words: a type error, not a boundary one


def test_raw_text_gap_scores_both_readings_on_the_same_character_spans():
    """benchmarks/raw_text_gap.py: word spans become character spans of the text it tags, joined as it joins it."""
    from benchmarks.raw_text_gap import char_spans, f1

    words = ["Angela", "Merkel", "in", "Ankara'da"]
    assert char_spans(words, {(0, 2, "PER"), (3, 4, "LOC")}, " ") == {(0, 13, "PER"), (17, 26, "LOC")}
    assert char_spans(["索尼", "公司", "在"], {(0, 2, "ORG")}, "") == {(0, 4, "ORG")}
    gold = [{(0, 13, "PER"), (17, 26, "LOC")}]
    assert f1(gold, [{(0, 13, "PER"), (17, 23, "LOC")}]) == 50.0  # Ankara for Ankara'da: strict, not found
    assert f1([set()], [set()]) == 0.0


def test_raw_text_gap_ends_gold_names_as_the_tagger_does():
    from benchmarks.raw_text_gap import without_case_endings

    text = "Dün Ankara'da ve Angela Merkel EU:n"
    gold = {(4, 13, "LOC"), (17, 30, "PER"), (31, 35, "ORG")}
    assert without_case_endings(text, gold) == {(4, 10, "LOC"), (17, 30, "PER"), (31, 33, "ORG")}
