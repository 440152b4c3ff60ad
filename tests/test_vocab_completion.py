"""Completing a trained student's vocabulary with the teacher's Han and kana pieces (distill/vocab_completion.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from polyner.distill.vocab import is_han_or_kana
from polyner.distill.vocab_completion import complete_rows, complete_student, missing_han_kana_pieces


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


def han_tokenizer(specials_last: bool = False):
    """A Unigram tokenizer whose vocabulary has Han words, a particle-glued piece, kana and Latin pieces (the special
    tokens first, as XLM-R's, or after the words)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = [(p, -2.0) for p in ("\u2581", "华为", "普京", "在北京", "北京", "トヨタ", "\u2581Paris",
                                  "华", "为", "普", "京", "在", "北")]
    specials = [(t, 0.0) for t in ("<s>", "<pad>", "</s>", "<unk>")]
    vocab = pieces + specials if specials_last else specials + pieces
    tok = Tokenizer(models.Unigram(vocab, unk_id=[p for p, _ in vocab].index("<unk>")))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>")


@pytest.fixture(scope="module")
def teacher_tokenizer():
    return han_tokenizer()


def test_missing_pieces_are_the_han_and_kana_ones_the_student_lacks(teacher_tokenizer):
    ids = {p: teacher_tokenizer.convert_tokens_to_ids(p) for p in ("华为", "普京", "在北京", "トヨタ", "北京")}
    keep = np.array(sorted({0, 1, 2, 3, 4, ids["北京"]} | {teacher_tokenizer.convert_tokens_to_ids(c)
                                                         for c in "华为普京在北"}))
    found = missing_han_kana_pieces(teacher_tokenizer, keep, drop_particle_pieces=True)
    assert found == sorted([ids["华为"], ids["普京"], ids["トヨタ"]])  # not 在北京 (a particle glued on), not ▁Paris
    assert ids["在北京"] in missing_han_kana_pieces(teacher_tokenizer, keep, drop_particle_pieces=False)


def tiny_teacher_and_student(tokenizer, keep: np.ndarray, seed: int = 0):
    """A teacher (word embeddings only) over ``tokenizer`` and a student whose word rows are a linear map of the
    teacher's rows of ``keep`` (as a trained student's nearly are)."""
    from polyner.models.student import PolynerStudentConfig, PolynerStudentForTokenClassification

    torch.manual_seed(seed)
    teacher = torch.nn.Module()
    teacher_rows = torch.nn.Embedding(len(tokenizer), 8)
    teacher.get_input_embeddings = lambda: teacher_rows
    pad = int(np.searchsorted(keep, tokenizer.pad_token_id))
    config = PolynerStudentConfig(vocab_size=len(keep), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, embedding_rank=4, max_position_embeddings=32,
                                  pad_token_id=pad, bos_token_id=int(np.searchsorted(keep, tokenizer.bos_token_id)),
                                  eos_token_id=int(np.searchsorted(keep, tokenizer.eos_token_id)))
    student = PolynerStudentForTokenClassification(config)
    with torch.no_grad():
        student.get_input_embeddings().weight.copy_(teacher_rows.weight[torch.from_numpy(keep)] @ torch.randn(8, 4))
    return teacher, student


@pytest.mark.parametrize("specials_last", [False, True])
def test_a_completed_student_reads_the_new_pieces_whole(specials_last, tmp_path):
    """The student grows its word rows (kept rows unchanged; the special ids follow their pieces, wherever the new
    ids put them), the trimmed tokenizer of the completed ids reads 华为 as one piece, and the student saves and
    loads with it."""
    from polyner.distill.vocab import trim_tokenizer
    from polyner.models.student import PolynerStudentForTokenClassification

    tokenizer = han_tokenizer(specials_last)
    keep = np.array([i for i in range(len(tokenizer)) if tokenizer.convert_ids_to_tokens(i) not in ("华为", "トヨタ")])
    teacher, student = tiny_teacher_and_student(tokenizer, keep)
    before = student.get_input_embeddings().weight.detach().clone()
    completion = complete_student(student, teacher, tokenizer, keep, drop_particle_pieces=True)
    assert completion is not None and completion.added == 2 and student.config.vocab_size == len(tokenizer)
    assert completion.fit_r2 == pytest.approx(1.0)
    grown = student.get_input_embeddings()
    kept_rows = {int(i): row for i, row in zip(completion.keep_ids, grown.weight.detach())}
    for position, i in enumerate(keep):
        assert torch.equal(kept_rows[int(i)], before[position])
    student_tokenizer, _ = trim_tokenizer(tokenizer, completion.keep_ids.tolist(), tmp_path)
    assert student_tokenizer.tokenize("华为") == ["\u2581", "华为"]
    assert (student.config.pad_token_id, student.config.bos_token_id, student.config.eos_token_id) == (
        student_tokenizer.pad_token_id, student_tokenizer.bos_token_id, student_tokenizer.eos_token_id)
    assert grown.padding_idx == student_tokenizer.pad_token_id
    student.save_pretrained(tmp_path)
    again = PolynerStudentForTokenClassification.from_pretrained(tmp_path)
    assert torch.equal(again.get_input_embeddings().weight, grown.weight)
    assert again.get_input_embeddings().padding_idx == student_tokenizer.pad_token_id
    assert complete_student(again, teacher, tokenizer, completion.keep_ids, True) is None


def test_rows_that_are_no_map_of_the_teachers_are_left_alone(teacher_tokenizer, caplog):
    """A student whose word rows are not the teacher's mapped (random word embeddings) keeps its vocabulary."""
    keep = np.array([i for i in range(len(teacher_tokenizer))
                     if teacher_tokenizer.convert_ids_to_tokens(i) not in ("华为", "トヨタ")])
    teacher, student = tiny_teacher_and_student(teacher_tokenizer, keep)
    with torch.no_grad():
        student.get_input_embeddings().weight.normal_()
    before = student.get_input_embeddings().weight.detach().clone()
    with caplog.at_level("WARNING"):
        assert complete_student(student, teacher, teacher_tokenizer, keep, drop_particle_pieces=True) is None
    assert "not completed" in caplog.text
    assert torch.equal(student.get_input_embeddings().weight, before) and student.config.vocab_size == len(keep)
