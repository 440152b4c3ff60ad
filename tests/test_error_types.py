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

