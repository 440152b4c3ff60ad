"""How words become pieces: every word on its own ("words") or runs of scripts without spaces as text ("text")."""
from __future__ import annotations

import numpy as np
import pytest

from polyner.data.align import encode_sentences
from polyner.data.iob2 import Sentence
from polyner.errors import ModelDirectoryError
from polyner.labels import IGNORE_INDEX, LABEL2ID
from polyner.models.classifier import config_unspaced_runs
from polyner.tagging.pieces import joined_runs, reading_form, reading_forms, word_pieces

WORDS = ["他", "曾", "在", "北京", "大学", "。", "Paris"]


def test_words_mode_reads_every_word_on_its_own(cjk_tokenizer):
    pieces = word_pieces(cjk_tokenizer, [WORDS, []], "words")
    enc = cjk_tokenizer(WORDS, is_split_into_words=True, add_special_tokens=False)
    expected = [[] for _ in WORDS]
    for piece, word in zip(enc["input_ids"], enc.word_ids()):
        expected[word].append(piece)
    assert pieces == [expected, []]
    assert cjk_tokenizer.convert_ids_to_tokens(pieces[0][3]) == ["\u2581", "北京"]  # a bare ▁ before every word


def test_text_mode_reads_a_run_as_it_is_written(cjk_tokenizer):
    assert joined_runs(WORDS, "text") == ["他曾在北京大学", "。", "Paris"]  # 。 is punctuation: a run of its own
    pieces = word_pieces(cjk_tokenizer, [WORDS], "text")[0]
    run = cjk_tokenizer("他曾在北京大学", add_special_tokens=False)["input_ids"]
    assert [p for word in pieces[:5] for p in word] == run  # the run's pieces as text, each on its word
    assert [cjk_tokenizer.convert_ids_to_tokens(p) for p in pieces[:5]] == [["\u2581他"], ["曾"], ["在"], ["北京"],
                                                                            ["大学"]]
    assert pieces[5:] == word_pieces(cjk_tokenizer, [WORDS[5:]], "words")[0]  # other words as before
    assert sum(map(len, pieces)) < sum(map(len, word_pieces(cjk_tokenizer, [WORDS], "words")[0]))
    with pytest.raises(ValueError, match="unspaced_runs must be one of 'words', 'text', not 'chars'"):
        word_pieces(cjk_tokenizer, [WORDS], "chars")


def test_training_labels_sit_on_each_words_first_piece_in_both_modes(cjk_tokenizer):
    tags = ["O", "O", "O", "B-ORG", "I-ORG", "O", "B-LOC"]
    sentence = Sentence(WORDS, tags, "zh")
    for mode in ("words", "text"):
        encoded = encode_sentences(cjk_tokenizer, [sentence], max_length=64, unspaced_runs=mode)
        ids, labels = encoded.example(0)
        pieces = word_pieces(cjk_tokenizer, [WORDS], mode)[0]
        assert ids.tolist() == [cjk_tokenizer.cls_token_id] + [p for w in pieces for p in w] + \
            [cjk_tokenizer.sep_token_id]
        firsts = np.cumsum([1] + [len(w) for w in pieces[:-1]])
        assert [labels[i] for i in firsts] == [LABEL2ID[t] for t in tags]
        assert sum(label != IGNORE_INDEX for label in labels) == len(WORDS)
    short = encode_sentences(cjk_tokenizer, [sentence], max_length=4, unspaced_runs="text")
    assert len(short.example(0)[0]) == 4  # truncated, specials kept


def test_the_model_config_says_how_it_reads_runs(tmp_path):
    from types import SimpleNamespace

    assert config_unspaced_runs(SimpleNamespace()) == "words"  # every model before the setting
    assert config_unspaced_runs(SimpleNamespace(ner_unspaced_runs="text")) == "text"
    with pytest.raises(ModelDirectoryError, match=r"m: config.json: ner_unspaced_runs must be one of .*not 'chars'"):
        config_unspaced_runs(SimpleNamespace(ner_unspaced_runs="chars"), "m")


def test_the_tagger_reads_runs_as_its_model_says(cjk_tokenizer):
    from conftest import build_tiny_model

    from polyner.tagging.tagger import Tagger

    model = build_tiny_model(cjk_tokenizer)
    assert Tagger(model, cjk_tokenizer).unspaced_runs == "words"
    model.config.ner_unspaced_runs = "text"
    tagger = Tagger(model, cjk_tokenizer)
    assert tagger.unspaced_runs == "text"
    assert list(tagger._word_pieces([WORDS], 62)) == word_pieces(cjk_tokenizer, [WORDS], "text")
    entities = tagger("他曾在北京大学学习")
    assert all(e["text"] == "他曾在北京大学学习"[e["start"]:e["end"]] for e in entities)


def test_a_space_ends_a_run_read_as_text(cjk_tokenizer):
    # Read as one run, 北京 is one piece and 京 gets none; the words of raw text "北 京" do not touch.
    assert word_pieces(cjk_tokenizer, [["北", "京"]], "text")[0][1] == []
    split = word_pieces(cjk_tokenizer, [["北", "京"]], "text", adjacent=[[False]])[0]
    assert [cjk_tokenizer.convert_ids_to_tokens(p) for p in split] == [["\u2581", "北"], ["\u2581", "京"]]
    assert joined_runs(["北", "京", "大学"], "text", [False, True]) == ["北", "京大学"]


def test_the_tagger_gives_every_word_of_spaced_runs_its_pieces(cjk_tokenizer, monkeypatch):
    from conftest import build_tiny_model

    from polyner.tagging.tagger import Tagger

    model = build_tiny_model(cjk_tokenizer)
    model.config.ner_unspaced_runs = "text"
    tagger = Tagger(model, cjk_tokenizer)
    seen = []
    original = tagger._word_pieces

    def spy(sentences, content, adjacent=None):
        for pieces in original(sentences, content, adjacent):
            seen.append(pieces)
            yield pieces

    monkeypatch.setattr(tagger, "_word_pieces", spy)
    text = "他在北 京学习　公 司"  # an ASCII and an ideographic space inside Han text
    entities = tagger(text)
    assert seen and all(seen[0]), seen  # no word without a piece (it would be tagged O whatever the model says)
    assert all(e["text"] == text[e["start"]:e["end"]] for e in entities)


@pytest.mark.parametrize("written, plain", [
    ("كتـــاب", "كتاب"),  # tatweel
    ("كِتَابٌ", "كتاب"),  # vowel marks and tanween
    ("مُحَمَّد", "محمد"),  # shadda
    ("שָׁלוֹם", "שלום"),  # Hebrew points
    ("בֵּית־לֶחֶם", "בית־לחם"),  # the maqaf is punctuation: it stays
])
def test_the_tagger_reads_a_word_with_marks_it_does_not_need_as_the_plain_word(rule_tagger, written, plain):
    """Tatweel, Arabic vowel marks and Hebrew points change no name: the tagger gives the word the plain word's
    pieces. Training reads its data as written (joined_runs): cached teacher outputs are keyed on those pieces."""
    assert reading_form(written) == plain
    assert list(rule_tagger._word_pieces([["Paris", written]], 100)) == \
        list(rule_tagger._word_pieces([["Paris", plain]], 100))
    assert joined_runs(["Paris", written], "words") == ["Paris", written]
    assert reading_form("Zoë Ωmega 東京") == "Zoë Ωmega 東京"  # other scripts' marks are read


@pytest.mark.parametrize("word", ["ـــ", "\u0640\u064e", "\u064e"])
def test_a_word_of_marks_alone_is_read_as_written(rule_tagger, tokenizer, word):
    """A line of tatweel is still a word between its neighbours: it keeps its pieces."""
    assert reading_form(word) == word
    (pieces,) = rule_tagger._word_pieces([["Paris", word]], 100)
    assert pieces[1] == tokenizer(word, add_special_tokens=False)["input_ids"]


def test_hamza_and_maddah_marks_stay_they_are_part_of_letters():
    """Decomposed text writes ئ as ي + U+0654 and آ as ا + U+0653: those marks are letters' parts, not vowels."""
    assert reading_form("ر\u064a\u0654\u064a\u0633") == "ر\u064a\u0654\u064a\u0633"  # رئيس decomposed
    assert reading_form("\u0627\u0653\u064e") == "\u0627\u0653"


def test_a_mark_inside_a_run_without_spaces_moves_no_piece(cjk_tokenizer):
    """Each word is read in its reading form before a run is joined, so each keeps the pieces starting inside it."""
    words = [reading_form(w) for w in ["北\u05b8京", "大学"]]
    pieces = word_pieces(cjk_tokenizer, [words], "text")[0]
    assert [cjk_tokenizer.convert_ids_to_tokens(p) for p in pieces] == [["\u2581", "北京"], ["大学"]]


def test_the_tagger_keeps_the_tatweel_in_the_text_and_offsets(rule_tagger):
    """The reading form is for the tokenizer only: the entity's text and offsets are the text as written."""
    text = "Visited Paـــris today"
    (entity,) = rule_tagger(text)
    assert entity["text"] == "Paـــris" and text[entity["start"]:entity["end"]] == entity["text"]


def test_persian_typed_with_arabic_yeh_and_kaf_reads_as_persian(rule_tagger):
    """Persian typed on an Arabic keyboard writes ي ك ى for ی ک: a text with a letter only Persian has (گ here) is
    read with Persian's; Arabic text, which has none of them, keeps its own letters."""
    typed = ["كتاب", "بزرگ", "علي"]  # Arabic kaf and yeh in a Persian text
    assert reading_forms(typed) == ["کتاب", "بزرگ", "علی"]
    assert list(rule_tagger._word_pieces([typed], 100)) == list(rule_tagger._word_pieces([reading_forms(typed)], 100))
    arabic = ["كتاب", "كبير", "علي"]
    assert reading_forms(arabic) == arabic
    assert reading_forms(["كِتاب", "علي"]) == ["كتاب", "علي"]  # marks go in Arabic too
    assert reading_forms(["مصطفى", "بزرگ"]) == ["مصطفی", "بزرگ"]  # a final alif maqsura too


@pytest.mark.parametrize("words", [
    ["قالت", "الشركة", "العراقية", "إن", "گوگل", "ستفتح", "مكتبا"],  # Arabic with a foreign name: ة outnumbers گ
    ["ئۇيغۇر", "تىلى", "چوڭ", "كىتاب"],  # Uyghur: its own letters (ۇ ڭ), its own ي and ى
])
def test_arabic_and_uyghur_with_a_persian_letter_keep_their_yeh_and_kaf(words):
    assert reading_forms(words) == words


@pytest.mark.parametrize("words, read", [
    (["ANGELA", "MERKEL", "BESUCHTE", "AM", "MONTAG", "PARIS", "UND", "BERLIN"],
     ["Angela", "Merkel", "Besuchte", "Am", "Montag", "Paris", "Und", "Berlin"]),  # a sentence in capitals
    (["BADEN-WÜRTTEMBERG", "WÄHLT", "EINEN", "NEUEN", "LANDTAG"], ["Baden-Württemberg", "Wählt", "Einen", "Neuen",
                                                                   "Landtag"]),
    (["(", "ANTONIO", "MONTERO", ")"], ["(", "ANTONIO", "MONTERO", ")"]),  # a short byline stays as written
    (["نظام", "UNIX", "و", "POSIX", "على", "كل", "المبرمجين", "القيام", "بعمل", "برامج", "XPG", "SUS"],
     ["نظام", "UNIX", "و", "POSIX", "على", "كل", "المبرمجين", "القيام", "بعمل", "برامج", "XPG", "SUS"]),  # acronyms
    (["NATO", "and", "the", "UN", "met", "in", "NYC"], ["NATO", "and", "the", "UN", "met", "in", "NYC"]),  # acronyms
    (["IBM", "SAP"], ["IBM", "SAP"]),  # too few letters to tell a text in capitals from acronyms
    (["ВЛАДИМИР", "ПУТИН", "ПРИЛЕТЕЛ", "ВЧЕРА", "В", "МОСКВУ"], ["Владимир", "Путин", "Прилетел", "Вчера", "В", "Москву"]),
    (["北京", "ANGELA"], ["北京", "ANGELA"]),
    (["Angela", "MERKEL", "BESUCHTE", "AM", "Montag", "PARIS", "und", "BERLIN"],  # four in five letters capitals
     ["Angela", "MERKEL", "BESUCHTE", "AM", "Montag", "PARIS", "und", "BERLIN"]),
    (["ب", "UNIX", "POSIX", "XPG", "SUS", "LINUX", "FREEBSD", "OPENBSD", "نظام", "المبرمجين", "القيام", "بعمل", "برامج",
      "لتعمل", "على", "بيئة", "البرمجة", "الحديثة", "والقديمة", "معا"],  # 33 Latin capitals, more Arabic letters
     ["ب", "UNIX", "POSIX", "XPG", "SUS", "LINUX", "FREEBSD", "OPENBSD", "نظام", "المبرمجين", "القيام", "بعمل", "برامج",
      "لتعمل", "على", "بيئة", "البرمجة", "الحديثة", "والقديمة", "معا"]),
    (["DİYARBAKIR", "VE", "İSTANBUL", "BELEDİYELERİ", "SEÇİMİ"], ["Diyarbakır", "Ve", "İstanbul", "Belediyeleri",
                                                                  "Seçimi"]),  # Turkish I and İ
    (["BAŞKAN", "YARDIMCISI", "DÜN", "TOPLANTIYA", "KATILDI"],  # ş and no Romanian letter: Turkish
     ["Başkan", "Yardımcısı", "Dün", "Toplantıya", "Katıldı"]),
    (["PREŞEDINTELE", "A", "VIZITAT", "BRAŞOV", "ŞI", "SIBIU", "DUMINICA"],  # Romanian's şi: I stays i
     ["Preşedintele", "A", "Vizitat", "Braşov", "Şi", "Sibiu", "Duminica"]),
    (["PRIMĂRIA", "MUNICIPIULUI", "BUCUREŞTI", "ANUNŢĂ", "LUCRĂRI"],  # Romanian's cedilla ş: I stays i
     ["Primăria", "Municipiului", "Bucureşti", "Anunţă", "Lucrări"]),
    (["MCDONALD'S", "AND", "O'BRIEN", "OPEN", "THE", "21ST", "STORE"],
     ["Mcdonald's", "And", "O'Brien", "Open", "The", "21st", "Store"]),
])
def test_a_text_in_capitals_is_read_in_title_case(words, read):
    """Names are learnt from their capitals, which every word of a text in capitals has (en dev in capitals lost
    half its F1): such a text is read in title case; acronyms in a normal text stay."""
    assert reading_forms(words) == read


def test_the_tagger_reads_a_headline_in_capitals_as_title_case(rule_tagger):
    headline = ["ANGELA", "MERKEL", "BESUCHTE", "AM", "MONTAG", "PARIS"]
    assert list(rule_tagger._word_pieces([headline], 100)) == \
        list(rule_tagger._word_pieces([["Angela", "Merkel", "Besuchte", "Am", "Montag", "Paris"]], 100))
    text = "ANGELA MERKEL BESUCHTE AM MONTAG PARIS"
    found = rule_tagger(text)
    assert found and all(text[e["start"]:e["end"]] == e["text"] and e["text"].isupper() for e in found)
