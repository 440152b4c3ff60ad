"""Completing a trained student's vocabulary with the teacher's Han and kana pieces (distill/vocab_completion.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from polyner.distill.vocab_completion import (complete_rows, complete_student, is_han_or_kana,
                                              missing_han_kana_pieces)


def test_new_rows_follow_the_linear_map_and_kept_rows_stay():
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(20, 6))
    mapping, bias = rng.normal(size=(6, 3)), rng.normal(size=3)
    keep = np.array([0, 1, 2, 5, 6, 8, 9, 11, 12, 13, 15, 17])
    student = teacher[keep] @ mapping + bias
    completion = complete_rows(teacher, keep, student, [16, 3, 10])
    assert completion.keep_ids.tolist() == sorted([*keep.tolist(), 3, 10, 16]) and completion.added == 3
    assert completion.fit_r2 == pytest.approx(1.0)
    rows = dict(zip(completion.keep_ids.tolist(), completion.word_rows))
    for i in (3, 10, 16):
        np.testing.assert_allclose(rows[i], teacher[i] @ mapping + bias, rtol=1e-4, atol=1e-4)
    for position, i in enumerate(keep):
        np.testing.assert_allclose(rows[int(i)], student[position], rtol=1e-6, atol=1e-6)


def test_a_poor_fit_says_so():
    rng = np.random.default_rng(1)
    teacher, keep = rng.normal(size=(60, 4)), np.arange(50)
    completion = complete_rows(teacher, keep, rng.normal(size=(50, 3)), [55])
    assert completion.fit_r2 < 0.5


def test_rows_and_ids_must_agree():
    teacher = np.zeros((10, 4))
    with pytest.raises(ValueError, match="3 student rows for 4 kept pieces"):
        complete_rows(teacher, np.arange(4), np.zeros((3, 2)), [5])
    with pytest.raises(ValueError, match="must not be among the kept"):
        complete_rows(teacher, np.arange(4), np.zeros((4, 2)), [2])


def test_han_and_kana_pieces_are_recognised():
    assert is_han_or_kana("华为") and is_han_or_kana("\u2581东京") and is_han_or_kana("トヨタ") and is_han_or_kana("々")
    assert not is_han_or_kana("\u2581") and not is_han_or_kana("東京2") and not is_han_or_kana("Tokyo")
    assert not is_han_or_kana("서울")  # Korean is written with spaces


@pytest.fixture(scope="module")
def teacher_tokenizer():
    """A Unigram tokenizer whose vocabulary has Han words, a particle-glued piece, kana and Latin pieces."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = ["\u2581", "华为", "普京", "在北京", "北京", "トヨタ", "\u2581Paris", "华", "为", "普", "京", "在", "北"]
    vocab = [(t, 0.0) for t in ("<s>", "<pad>", "</s>", "<unk>")] + [(p, -2.0) for p in pieces]
    tok = Tokenizer(models.Unigram(vocab, unk_id=3))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>")


def test_missing_pieces_are_the_han_and_kana_ones_the_student_lacks(teacher_tokenizer):
    ids = {p: teacher_tokenizer.convert_tokens_to_ids(p) for p in ("华为", "普京", "在北京", "トヨタ", "北京")}
    keep = np.array(sorted({0, 1, 2, 3, 4, ids["北京"]} | {teacher_tokenizer.convert_tokens_to_ids(c)
                                                         for c in "华为普京在北"}))
    found = missing_han_kana_pieces(teacher_tokenizer, keep, drop_particle_pieces=True)
    assert found == sorted([ids["华为"], ids["普京"], ids["トヨタ"]])  # not 在北京 (a particle glued on), not ▁Paris
    assert ids["在北京"] in missing_han_kana_pieces(teacher_tokenizer, keep, drop_particle_pieces=False)


def test_a_completed_student_reads_the_new_pieces_whole(teacher_tokenizer, tmp_path):
    """The student grows its word rows (the padding row stays the padding piece's), the trimmed tokenizer of the
    completed ids reads 华为 as one piece, and the saved student loads with it."""
    from polyner.distill.vocab import trim_tokenizer
    from polyner.models.student import PolynerStudentConfig, PolynerStudentForTokenClassification

    vocab = len(teacher_tokenizer)
    teacher = torch.nn.Module()
    teacher_rows = torch.nn.Embedding(vocab, 8)
    teacher.get_input_embeddings = lambda: teacher_rows
    keep = np.array([i for i in range(vocab) if teacher_tokenizer.convert_ids_to_tokens(i) not in ("华为", "トヨタ")])
    config = PolynerStudentConfig(vocab_size=len(keep), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, embedding_rank=4, max_position_embeddings=32, pad_token_id=1)
    student = PolynerStudentForTokenClassification(config)
    before = student.get_input_embeddings().weight.detach().clone()
    completion = complete_student(student, teacher, teacher_tokenizer, keep, drop_particle_pieces=True)
    assert completion is not None and completion.added == 2 and student.config.vocab_size == vocab
    grown = student.get_input_embeddings()
    assert grown.weight.shape[0] == len(completion.keep_ids) and grown.padding_idx == 1
    kept_rows = {int(i): row for i, row in zip(completion.keep_ids, grown.weight.detach())}
    for position, i in enumerate(keep):
        assert torch.equal(kept_rows[int(i)], before[position])
    student_tokenizer, _ = trim_tokenizer(teacher_tokenizer, completion.keep_ids.tolist(), tmp_path)
    assert student_tokenizer.tokenize("华为") == ["\u2581", "华为"]
    student.save_pretrained(tmp_path)
    again = PolynerStudentForTokenClassification.from_pretrained(tmp_path)
    assert torch.equal(again.get_input_embeddings().weight, grown.weight)
    assert complete_student(again, teacher, teacher_tokenizer, completion.keep_ids, True) is None
