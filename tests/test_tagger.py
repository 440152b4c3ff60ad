"""The tagging core: offsets into the original text, word boundaries, stride seams, batching, bad input."""
from __future__ import annotations

import re
import unicodedata

import numpy as np
import pytest

from polyner.labels import tags_to_spans
from polyner.models.classifier import DEFAULT_MAX_LENGTH
from polyner.tagging.tagger import Tagger, TaggerConfig, choose_windows, plan_windows
from polyner.tagging.words import recut_words, segment_words, tokenizer_run_splitter
from conftest import CJK_TEXTS, SAMPLE_TEXTS, CapitalRuleModel, build_tiny_model

TRICKY = SAMPLE_TEXTS[:16] + [
    "  Leading and trailing spaces  ",
    "Multiple   spaces\u00a0and\u2003odd\u3000whitespace Berlin",
    "Zero\u200bwidth and soft\u00adhyphen in Hamburg",
    "Combining e\u0301 accents in Zu\u0308rich",
    "Mixed 東京Tower and Москва-City 2024",
    "\x00\x01 control \x1b[31m characters Rome \x7f",
    "👨‍👩‍👧 family emoji next to Oslo",
]




def test_offsets_index_the_original_text(rule_tagger):
    for text, entities in zip(TRICKY, rule_tagger(TRICKY)):
        for entity in entities:
            assert text[entity["start"]:entity["end"]] == entity["text"]
            assert entity["label"] in {"PER", "ORG", "LOC"}
            assert 0.0 <= entity["score"] <= 1.0


def test_entities_never_split_a_word(rule_tagger, tokenizer):
    splitter = tokenizer_run_splitter(tokenizer)
    for text, entities in zip(TRICKY, rule_tagger(TRICKY)):
        words = segment_words(text, splitter)
        starts, ends = {s for s, _ in words}, {e for _, e in words}
        for entity in entities:
            assert entity["start"] in starts and entity["end"] in ends, (text, entity)


def test_capitalised_run_is_one_entity(rule_tagger):
    entities = rule_tagger("yesterday Angela Merkel met them in the city")
    assert [(e["text"], e["label"]) for e in entities] == [("Angela Merkel", "PER")]


def test_single_text_and_list(rule_tagger):
    one = rule_tagger("we saw Berlin")
    many = rule_tagger(["we saw Berlin", "nothing here"])
    assert one == many[0] and many[1] == []


@pytest.mark.parametrize("max_length,stride", [(8, 2), (16, 4), (32, 15), (64, 8)])
def test_stride_windows_lose_and_duplicate_nothing(tokenizer, max_length, stride):
    words = []
    for i in range(600):
        words += ["Anna Maria" if i % 7 == 0 else "word", "and", "Paris" if i % 5 == 0 else "the", str(i % 10)]
    text = " ".join(words)
    wide = Tagger(CapitalRuleModel(tokenizer), tokenizer, TaggerConfig(max_length=4096, stride=0))
    narrow = Tagger(CapitalRuleModel(tokenizer), tokenizer, TaggerConfig(max_length=max_length, stride=stride))
    reference = wide(text)
    assert len(reference) > 200
    assert narrow(text) == reference
    spans = [(e["start"], e["end"]) for e in reference]
    assert spans == sorted(set(spans))


def test_plan_windows_cover_every_word_with_overlap():
    counts = [1, 3, 2, 5, 1, 1, 4, 2, 2, 6, 1]
    windows = plan_windows(counts, content=8, stride=3)
    covered = set()
    for start, end in windows:
        assert sum(counts[start:end]) <= 8
        covered.update(range(start, end))
    assert covered == set(range(len(counts)))
    for (a, b), (c, d) in zip(windows, windows[1:]):
        assert a < c <= b  # progress, and the next window starts inside the previous one or right after it
    owner = choose_windows(windows, counts)
    assert set(owner) == set(range(len(counts)))


def test_oversized_word_gets_its_own_window():
    windows = plan_windows([2, 50, 1], content=8, stride=2)
    assert (1, 2) in windows


def test_batches_are_sorted_by_length(tokenizer):
    model = CapitalRuleModel(tokenizer)
    tagger = Tagger(model, tokenizer, TaggerConfig(max_length=64, batch_size=3))
    texts = ["a " * n + "Berlin" for n in (30, 1, 12, 5, 25, 2, 8)]
    tagger(texts)
    widths = [max(batch) for batch in model.batches]
    assert widths == sorted(widths)
    assert all(len(batch) <= 3 for batch in model.batches)


@pytest.mark.parametrize("text", ["", " ", "\n\t  \r\n", "\u3000\u00a0"])
def test_empty_and_whitespace_give_no_entities(rule_tagger, text):
    assert rule_tagger(text) == []
    assert rule_tagger([text, text]) == [[], []]


def test_empty_list(rule_tagger):
    assert rule_tagger([]) == []


@pytest.mark.parametrize("bad,message", [(123, "int"), (None, "NoneType"), (b"bytes", "bytes"),
                                         ({"text": "x"}, "dict")])
def test_wrong_types_raise_type_error(rule_tagger, bad, message):
    with pytest.raises(TypeError, match=message):
        rule_tagger(bad)


def test_wrong_item_type_names_its_index(rule_tagger):
    with pytest.raises(TypeError, match=r"texts\[1\] must be str, not int"):
        rule_tagger(["fine", 7])


def test_an_unordered_collection_is_refused(rule_tagger):
    """Results come back in the order of the texts: a set has none."""
    with pytest.raises(TypeError, match="must be ordered .* not set"):
        rule_tagger({"Angela Merkel", "Paris"})


@pytest.mark.parametrize("texts, where", [("Barack Oba\udc80ma", "the text"), (["fine", "Oba\ud800ma"], r"texts\[1\]")])
def test_a_lone_surrogate_is_refused_as_in_the_cli_and_the_service(rule_tagger, texts, where):
    """A lone surrogate (a JSON escape, surrogateescape-decoded bytes) would be read as a space, cutting the word."""
    with pytest.raises(ValueError, match=f"{where} is not valid Unicode: a lone surrogate U\\+D"):
        rule_tagger(texts)


@pytest.mark.parametrize("batch_size", [0, -1, "a", 2.0, True])
def test_a_bad_batch_size_in_the_call_is_a_clear_error(rule_tagger, batch_size):
    with pytest.raises(ValueError, match="batch_size must be an int of at least 1"):
        rule_tagger(["Angela Merkel"], batch_size=batch_size)


def test_huge_text_is_read_whole(rule_tagger):
    """100,000 characters across thousands of windows: every capitalised word is found, none twice, none lost at a
    window seam, each with its exact offsets."""
    text = ("Lorem ipsum Dolor sit amet, 😀 中文字符 \x07 " * 3000)[:100_000]
    entities = rule_tagger(text)
    expected = [(m.start(), m.end()) for m in re.finditer(r"Lorem|Dolor", text)]
    assert len(expected) > 5000
    assert [(e["start"], e["end"]) for e in entities] == expected
    assert all(text[e["start"]:e["end"]] == e["text"] and e["label"] == "PER" for e in entities)


def test_huge_single_word_is_one_entity(rule_tagger):
    """A word far longer than any window is read in pieces but comes back as one entity over the whole word."""
    text = "A" + "x" * 99_999
    entities = rule_tagger(text)
    assert [(e["start"], e["end"], e["label"]) for e in entities] == [(0, 100_000, "PER")]


@pytest.mark.parametrize("text, words", [
    ('דובר צה"ל מסר', ["דובר", 'צה"ל', "מסר"]),  # an acronym's gershayim (typed as ") before its last letter
    ("לארה״ב ורוסיה.", ["לארה״ב", "ורוסיה", "."]),  # U+05F4, after a prefix letter
    ("ג׳ורג׳ בוש", ["ג׳ורג׳", "בוש"]), ("ג'ו ביידן", ["ג'ו", "ביידן"]), ("צ'רצ'יל", ["צ'רצ'יל"]),  # geresh
    ('סופר "הארץ" בצפון', ["סופר", '"', "הארץ", '"', "בצפון"]),  # quotation marks stay words of their own
    ('ב"הארץ"', ["ב", '"', "הארץ", '"']),  # a prefix before a quoted name: not an acronym (more than one letter after)
    ("פרופ' כהן", ["פרופ", "'", "כהן"]),  # an abbreviation's geresh after another letter
    # apostrophes between letters, as the corpora keep them (turkish-wiki-ner, NER-UK, CoNLL O'Brien)
    ("Ankara'da ve 1990'da", ["Ankara'da", "ve", "1990'da"]), ("Türkiye’nin", ["Türkiye’nin"]),
    ("O'Brien", ["O'Brien"]), ("В'ячеслав і м'ясо", ["В'ячеслав", "і", "м'ясо"]),
    ("l'Europe dell'Italia", ["l", "'", "Europe", "dell", "'", "Italia"]),  # elided Latin words stay apart
    ("Obama's aide", ["Obama", "'", "s", "aide"]),  # an English possessive is not part of the name
    # the case ending of an abbreviation or number (Finnish, Swedish); a time or a heading stays apart
    ("EU:n ja YK:lle klo 10:30", ["EU:n", "ja", "YK:lle", "klo", "10", ":", "30"]),
    ("Hello: world ATTENTION:vous", ["Hello", ":", "world", "ATTENTION", ":", "vous"]),
    # initials and dotted abbreviations keep their periods; a sentence's period after a word does not join it
    ("A. Merkel in the U.S. said.", ["A.", "Merkel", "in", "the", "U.S.", "said", "."]),
    ("J.R.R. Tolkien", ["J.R.R.", "Tolkien"]), ("EU. Die", ["EU", ".", "Die"]),
    ("सी. के. शर्मा भारत.", ["सी.", "के.", "शर्मा", "भारत", "."]),  # Hindi initials, a sentence's period
    # a web or e-mail address is one word, without the sentence's punctuation after it
    ("Siehe http://de.wikipedia.org/wiki/Bahnhof_Fulda.", ["Siehe", "http://de.wikipedia.org/wiki/Bahnhof_Fulda", "."]),
    ("(https://en.wikipedia.org/wiki/Mercury_(planet))", ["(", "https://en.wikipedia.org/wiki/Mercury_(planet)", ")"]),
    ("Mail a.b@example.com, www.example.org!", ["Mail", "a.b@example.com", ",", "www.example.org", "!"]),
    ("见 https://example.com。北京", ["见", "https://example.com", "。", "北", "京"]),  # an address ends at 。
    ("https://x.com\u200bBerlin", ["https://x.com", "Berlin"]),
    # a review's findings: a colon before a letter no word holds; elided articles at a sentence's start; a Tamil
    # sentence's period; a single capital at the end of a sentence is no initial
    ("EU:ⓐ", ["EU", ":", "ⓐ"]), ("Tekirdag\u0306'da", ["Tekirdag\u0306'da"]), ('צָה"ל', ['צָה"ל']),  # marks before
    ("L'Europe et Nell'Unione", ["L", "'", "Europe", "et", "Nell", "'", "Unione"]),
    ("D'Angelo", ["D'Angelo"]), ("நான் ரவி.", ["நான்", "ரவி", "."]), ("the iPhone X.", ["the", "iPhone", "X", "."]),
])
def test_punctuation_the_corpora_keep_inside_words(text, words):
    """Raw text is cut into the words our corpora are made of: Hebrew and Turkish corpora keep צה"ל and Ankara'da
    whole, and the tagger cut them in three (an entity came out as צה"; Turkish dev read as raw text scored 43 F1
    against 71 on the corpus's words)."""
    assert [text[a:b] for a, b in segment_words(text)] == words


def test_a_case_ending_is_read_with_its_word_but_left_out_of_the_name(rule_tagger):
    """Ankara'da is one word to the model (as in the Turkish corpora) and the place is Ankara; O'Brien stays whole."""
    from polyner.tagging.word_punctuation import name_end

    text = "Dün Ankara'da ve EU:n kanssa toplandı"  # ı: a Turkish text, where an apostrophe marks a case ending
    found = [(e["text"], e["start"], e["end"]) for e in rule_tagger(text)]
    assert found == [("Dün Ankara", 0, 10), ("EU", 17, 19)]
    words = ["İstanbul'daki", "Erdoğan’ın", "YK:lle", "O'Brien", "Дар'я", "can't", "Merkel", "Sana'a"]
    assert [word[:name_end(word, turkish=True)] for word in words] == [
        "İstanbul", "Erdoğan", "YK", "O'Brien", "Дар'я", "can't", "Merkel", "Sana"]
    assert "Tekirdag\u0306'da"[:name_end("Tekirdag\u0306'da", turkish=True)] == "Tekirdag\u0306"  # decomposed ğ
    assert [word[:name_end(word)] for word in words] == [
        "İstanbul'daki", "Erdoğan’ın", "YK", "O'Brien", "Дар'я", "can't", "Merkel", "Sana'a"]


@pytest.mark.parametrize("text, turkish", [
    ("Dün Ankara'da Angela Merkel konuştu", True),  # ş alone, no Romanian letter
    ("Erdoğan İzmir'de", True), ("Diyarbakır", True),
    ("PRIMĂRIA MUNICIPIULUI BUCUREŞTI", False), ("Târgu Mureş", False),  # Romanian's cedilla ş
    ("PREŞEDINTELE A VIZITAT BRAŞOV ŞI SIBIU", False), ("Braşov şi Sibiu", False),  # its şi (and)
    ("Beşiktaş şimdi lider", True), ("Şişli", True),
    ("Sana'a and O'Brien", False), ("", False),
])
def test_one_turkish_detector_for_casing_and_case_endings(text, turkish):
    """A Turkish text lowers I to ı (a headline in capitals) and ends names before an apostrophe's case ending; a
    Romanian one writes ş too and does neither."""
    from polyner.languages import written_in_turkish

    assert written_in_turkish(text) is turkish


@pytest.mark.parametrize("text", ["A." * 50_000, "a." * 50_000, "x@" * 50_000, "EU:n " * 20_000, "A'" * 50_000,
                                  "http://" + "a" * 100_000, "http://x" + ")" * 100_000])
def test_inner_punctuation_rules_stay_linear(text):
    """Each rule looks at a bounded stretch of text: 100,000 characters of one pattern are cut at once (the initials
    rule once re-read the whole growing word at every period: 46 s)."""
    import time

    started = time.process_time()
    spans = segment_words(text)
    assert spans and spans[-1][1] <= len(text) and time.process_time() - started < 5


@pytest.mark.parametrize("word", ["Merkel" + "x" * 50_000, "-".join(["Merkel"] * 5_000)])
def test_a_long_word_stays_one_word(word):
    text = f"yesterday {word} met them"
    assert segment_words(text) == [(0, 9), (10, 10 + len(word)), (11 + len(word), 14 + len(word)),
                                   (15 + len(word), len(text))]


@pytest.mark.parametrize("word", ["Merkel" + "x" * 50_000, "-".join(["Merkel"] * 5_000)])
def test_an_entity_covers_a_long_word_whole_in_bounded_windows(tokenizer, word):
    """A word of any length is labelled as a whole by its first piece: an entity never starts or ends inside it.
    Its pieces are capped at one window, so the model reads a few windows of at most max_length pieces."""
    model = CapitalRuleModel(tokenizer)
    tagger = Tagger(model, tokenizer, TaggerConfig(max_length=16, stride=4))
    text = f"yesterday {word} met them"
    entities = tagger(text)
    assert [(e["text"], e["label"], e["start"], e["end"]) for e in entities] == [(word, "PER", 10, 10 + len(word))]
    widths = [width for batch in model.batches for width in batch]
    assert max(widths) <= 16 and len(widths) <= 3


@pytest.mark.parametrize("tags, expected", [
    (["B-LOC", "I-LOC", "O", "B-PER", "I-PER", "I-PER"], [("France", "LOC"), ("Angela Merkel", "PER")]),
    (["B-LOC", "B-LOC", "O", "O", "O", "O"], [("France", "LOC")]),  # a flag alone is no place
    (["O", "B-LOC", "I-LOC", "O", "B-PER", "I-PER"], [("and", "LOC"), ("Merkel", "PER")]),  # a symbol first
])
def test_symbol_words_at_an_entitys_edges_are_left_out(rule_tagger, tags, expected):
    """Emoji and flags are no part of a name: France 🇫🇷 tagged as one place gives France."""
    text = "France 🇫🇷 and Angela Merkel 👍🏽"
    spans = segment_words(text)
    assert [text[a:b] for a, b in spans] == ["France", "🇫🇷", "and", "Angela", "Merkel", "👍🏽"]
    found = rule_tagger._entities(text, spans, [(tag, 0.9) for tag in tags])
    assert [(e["text"], e["label"]) for e in found] == expected
    assert all(text[e["start"]:e["end"]] == e["text"] for e in found)


def test_a_plus_ending_a_name_stays(rule_tagger):
    text = "Canal+ and Disney+ ®"
    spans = segment_words(text)
    found = rule_tagger._entities(text, spans, [(t, 0.9) for t in ["B-ORG", "I-ORG", "O", "B-ORG", "I-ORG", "I-ORG"]])
    assert [e["text"] for e in found] == ["Canal+", "Disney+"]


@pytest.mark.parametrize("batch_size", [np.int64(2), 3])
def test_any_integer_is_a_batch_size(rule_tagger, batch_size):
    assert rule_tagger(["Angela Merkel", "Paris"], batch_size=batch_size) == rule_tagger(["Angela Merkel", "Paris"])


def test_the_config_takes_any_integer_and_keeps_a_plain_int():
    """A size from numpy (a length computed with it, say) is accepted and stored as the int it stands for."""
    config = TaggerConfig(max_length=np.int64(48), stride=np.int32(8), batch_size=np.int64(4))
    assert (config.max_length, config.stride, config.batch_size) == (48, 8, 4)
    assert all(type(v) is int for v in (config.max_length, config.stride, config.batch_size))
    with pytest.raises(ValueError, match="stride must be an int of at least 0, not 2.5"):
        TaggerConfig(stride=2.5)


@pytest.mark.parametrize("word, symbols", [("🇫🇷", True), ("👍🏽", True), ("❤️", True), ("👨\u200d👩\u200d👧", True),
                                           ("©", True), ("®", True), ("+", False), ("$", False), ("Paris", False),
                                           ("AT&T", False), ("3", False), (".", False), ("", False)])
def test_symbol_words(word, symbols):
    """Pictographs (and what joins them) are symbol words; the + of Canal+ is part of a name."""
    from polyner.tagging.words import is_symbol_word

    assert is_symbol_word(word) is symbols


@pytest.mark.parametrize("text, words", [
    ("France 🇫🇷 and", ["France", "🇫🇷", "and"]),
    ("🇩🇪🇫🇷!", ["🇩🇪", "🇫🇷", "!"]),  # flags pair from the left
    ("🇫 x 🇫🇷🇩", ["🇫", "x", "🇫🇷", "🇩"]),  # an unpaired regional indicator is a word of its own
])
def test_a_flag_is_one_word(text, words):
    """A flag is two regional indicator symbols: an entity edge never falls between them."""
    assert [text[s:e] for s, e in segment_words(text)] == words


@pytest.mark.parametrize("text, words", [
    ("القاهرة\u200f اليوم", ["القاهرة", "اليوم"]),  # a right-to-left mark ends no word
    ("\u202eAngela Merkel\u202c in Berlin", ["Angela", "Merkel", "in", "Berlin"]),  # bidi embedding and pop
    ("می\u200cخواهم تهران", ["می\u200cخواهم", "تهران"]),  # a Persian zero-width non-joiner stays inside its word
    ("Angela\u00adMerkel", ["Angela\u00adMerkel"]),  # so does a soft hyphen
    ("東京\u200f は", ["東", "京", "は"]),  # the end of a Han run (one character a word without a splitter)
    ("Co.\u200f Ltd", ["Co", ".", "Ltd"]),  # punctuation
    ("Zero\u200bwidth", ["Zero", "width"]),  # a zero-width space is a word break, as the tokenizer reads it
    ("東京\u200b大学", ["東", "京", "大", "学"]),
])
def test_invisible_format_characters_end_no_word(text, words):
    assert [text[s:e] for s, e in segment_words(text)] == words


def test_an_entity_never_ends_with_a_right_to_left_mark(rule_tagger):
    text = "Merkel\u200f met Macron\u200e."
    assert [e["text"] for e in rule_tagger(text)] == ["Merkel", "Macron"]


def test_max_text_chars_limit(tokenizer):
    tagger = Tagger(CapitalRuleModel(tokenizer), tokenizer, TaggerConfig(max_text_chars=10))
    with pytest.raises(ValueError, match="max_text_chars=10"):
        tagger(["short", "this one is far too long"])


def test_words_of_scripts_without_spaces(tokenizer):
    words = [w for w in segment_words("習近平在北京", None)]
    assert len(words) == 6  # one word per Han character
    kana = segment_words("東京タワーはTokyoにある")
    assert "Tokyo" in ["東京タワーはTokyoにある"[s:e] for s, e in kana]
    thai = "ฉันรักกรุงเทพมหานครและเชียงใหม่"
    split = segment_words(thai, tokenizer_run_splitter(tokenizer))
    assert len(split) > 1 and "".join(thai[s:e] for s, e in split) == thai


def test_iteration_marks_stay_inside_han_runs():
    # 々 (佐々木), 〆 and 〇 are written inside Han words: a splitter sees the whole run, never a lone mark.
    runs = []
    words = segment_words("佐々木さんは〆切を〇日に", lambda run: runs.append(run) or [(0, len(run))])
    assert runs == ["佐々木さんは〆切を〇日に"] and words == [(0, 12)]


def test_runs_without_spaces_are_cut_where_the_pieces_end(cjk_tokenizer):
    text = CJK_TEXTS[1]
    words = [text[s:e] for s, e in segment_words(text, tokenizer_run_splitter(cjk_tokenizer))]
    assert words == ["他", "曾", "在", "北京", "大学", "学", "习"]
    # a run that begins with a piece of several characters: the lone word-initial ▁ before it (whose offsets
    # cover the run's first character) is no cut, so 北京 stays whole
    assert cjk_tokenizer.tokenize("北京大学学习")[:2] == ["\u2581", "北京"]
    words = [w for w in ("北京大学学习"[s:e] for s, e in segment_words("北京大学学习", tokenizer_run_splitter(cjk_tokenizer)))]
    assert words == ["北京", "大学", "学", "习"]


def test_a_zero_width_space_ends_a_run_without_spaces(cjk_tokenizer, tokenizer):
    # the tokenizer reads U+200B as a space: the run's words must not swallow it with the words on both sides
    text = "北京大学\u200b学习"
    words = [text[s:e] for s, e in segment_words(text, tokenizer_run_splitter(cjk_tokenizer))]
    assert words == ["北京", "大学", "学", "习"]
    for joiner in ("\u200d", "\u200e", "\ufeff"):  # Han has no joiners: a format character belongs to no word
        text = f"北京大学{joiner}学习"
        words = [text[s:e] for s, e in segment_words(text, tokenizer_run_splitter(cjk_tokenizer))]
        assert words == ["北京", "大学", "学", "习"], joiner
    text = "北京\U000E0100\u200d学习"  # a variation selector stays with its character, the joiner with nothing
    words = [text[s:e] for s, e in segment_words(text, tokenizer_run_splitter(cjk_tokenizer))]
    assert "".join(words) == text.replace("\u200d", "") and not [w for w in words if "\u200d" in w]
    thai = "ภาษาไทย\u200bง่าย"
    words = [thai[s:e] for s, e in segment_words(thai, tokenizer_run_splitter(tokenizer))]
    assert "".join(words) == thai.replace("\u200b", "") and not [w for w in words if "\u200b" in w]


def test_a_cut_never_separates_a_combining_mark(tokenizer):
    thai = "ฉันรักกรุงเทพมหานครและเชียงใหม่"
    words = [thai[s:e] for s, e in segment_words(thai, tokenizer_run_splitter(tokenizer))]
    assert "".join(words) == thai and len(words) > 1
    assert not [w for w in words if unicodedata.category(w[0])[0] == "M"]


def _piece_interiors(tokenizer, text: str) -> set[int]:
    """Offsets strictly inside a piece of ``text`` as the tokenizer reads it."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return {x for start, end in offsets for x in range(start + 1, end)}


@pytest.mark.parametrize("seed", range(4))
def test_cjk_entities_never_start_or_end_inside_a_piece(cjk_tokenizer, seed):
    """With a tiny model from config (random labels), every entity edge in Chinese text falls between pieces,
    and tagging the characters as pre-split words gives the same entities as tagging the text."""
    tagger = Tagger(build_tiny_model(cjk_tokenizer, seed), cjk_tokenizer, TaggerConfig(decoding="argmax"))
    found = 0
    for text, entities in zip(CJK_TEXTS, tagger(CJK_TEXTS)):
        inside = _piece_interiors(cjk_tokenizer, text)
        for entity in entities:
            assert text[entity["start"]:entity["end"]] == entity["text"]
            assert entity["start"] not in inside and entity["end"] not in inside, (text, entity)
        found += len(entities)
        spans = [(s.start, s.end, s.label) for s in tags_to_spans(tagger.tag_words([list(text)])[0])]
        assert spans == [(e["start"], e["end"], e["label"]) for e in entities]
    assert found >= 3


def test_recut_words_reads_pre_split_chinese_as_the_tagger_reads_text(cjk_tokenizer):
    given = ["他", "曾在", "北京大学", "学习"]  # word-level gold, as in UNER zh
    recut = recut_words(given, tokenizer_run_splitter(cjk_tokenizer))
    text = "".join(given)
    assert recut.words == [text[s:e] for s, e in segment_words(text, tokenizer_run_splitter(cjk_tokenizer))]
    tags = ["O", "O", "B-ORG", "O"]
    assert recut.tags_of(tags) == ["O", "O", "O", "B-ORG", "I-ORG", "O", "O"]
    assert [tag for tag, _ in recut.back([(tag, 1.0) for tag in recut.tags_of(tags)])] == tags
    assert recut_words(["Angela", "Merkel", "U.S.", "東京Tower"]).words == ["Angela", "Merkel", "U.S.", "東京Tower"]


def test_words_keep_marks_and_hyphens():
    text = "नरेंद्र मोदी Baden-Württemberg e\u0301t\u00e9 l'Italia"
    words = [text[s:e] for s, e in segment_words(text)]
    assert words == ["नरेंद्र", "मोदी", "Baden-Württemberg", "e\u0301t\u00e9", "l", "'", "Italia"]


def test_labels_outside_the_scheme_are_refused(tokenizer):
    model = CapitalRuleModel(tokenizer)
    model.config = type("C", (), {"id2label": {0: "O", 1: "B-MISC"}})()
    with pytest.raises(ValueError, match="B-MISC"):
        Tagger(model, tokenizer)


def test_real_tiny_model_round_trip(tiny_model_dir, tokenizer):
    import polyner
    from conftest import build_tiny_model

    loaded = polyner.load(tiny_model_dir, max_length=32)
    in_memory = Tagger(build_tiny_model(tokenizer), tokenizer, TaggerConfig(max_length=32))
    texts = SAMPLE_TEXTS[:8]
    assert loaded(texts) == in_memory(texts)
    assert loaded.tag_words([["Angela", "Merkel"]]) == in_memory.tag_words([["Angela", "Merkel"]])


def test_chunked_tokenization_matches_one_text_at_a_time(rule_tagger, monkeypatch):
    """Texts are tokenized in chunks; chunk seams and empty texts between full ones change no result."""
    import polyner.tagging.tagger as ner

    texts = [text if i % 4 else "   " for i, text in enumerate(TRICKY * 2)]
    one_by_one = [rule_tagger(text) for text in texts]
    sentences = [[], ["Anna", "in", "Paris"], [], ["Rome"]]
    words_one_by_one = [rule_tagger.tag_words([words])[0] for words in sentences]
    for chunk in (1, 3, 1000):
        monkeypatch.setattr(ner, "TOKENIZE_CHUNK", chunk)
        assert rule_tagger(texts) == one_by_one
        assert rule_tagger.tag_words(sentences) == words_one_by_one


# --- the model's own window (ner_max_length in config.json) ----------------------------------------------------


@pytest.fixture()
def windowed_model_dir(tmp_path, tokenizer):
    """The tiny model saved with ``ner_max_length`` 16 in its config.json."""
    from conftest import build_tiny_model

    model = build_tiny_model(tokenizer)
    model.config.ner_max_length = 16
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    return tmp_path


def test_load_reads_in_the_models_window(windowed_model_dir, tiny_model_dir):
    import json

    import polyner

    assert json.loads((windowed_model_dir / "config.json").read_text())["ner_max_length"] == 16
    assert polyner.load(windowed_model_dir).config.max_length == 16
    assert polyner.load(windowed_model_dir, max_length=None).config.max_length == 16
    assert polyner.load(windowed_model_dir, max_length=48).config.max_length == 48  # the caller's choice wins
    assert polyner.load(tiny_model_dir).config.max_length == DEFAULT_MAX_LENGTH == 128  # no window named


def test_models_window_gives_the_entities_of_that_window(windowed_model_dir):
    """Reading in the model's window is the same as asking for that window: no batch is wider than 16 pieces."""
    import polyner

    text = " ".join(SAMPLE_TEXTS[:6])
    by_config = polyner.load(windowed_model_dir)
    widths = []
    original = by_config.model.forward

    def record(*args, **kwargs):
        widths.append((kwargs.get("input_ids") if "input_ids" in kwargs else args[0]).shape[1])
        return original(*args, **kwargs)

    by_config.model.forward = record
    assert by_config(text) == polyner.load(windowed_model_dir, max_length=16)(text)
    assert len(widths) > 0 and max(widths) <= 16
    assert len(by_config.tokenizer(text)["input_ids"]) > 16  # the text did need several windows


def test_tagger_without_config_reads_in_the_models_window(tokenizer):
    from conftest import build_tiny_model

    model = build_tiny_model(tokenizer)
    assert Tagger(model, tokenizer).config.max_length == 128
    model.config.ner_max_length = 24
    assert Tagger(model, tokenizer).config.max_length == 24
    assert Tagger(model, tokenizer, TaggerConfig(max_length=40)).config.max_length == 40


@pytest.mark.parametrize("value", ["64", 2, 12.5, True])
def test_bad_window_in_config_is_a_clear_error(tokenizer, value):
    from conftest import build_tiny_model

    model = build_tiny_model(tokenizer)
    model.config.ner_max_length = value
    with pytest.raises(ValueError, match="ner_max_length must be an int of at least 4"):
        Tagger(model, tokenizer)


def test_bad_window_in_a_model_directory_names_the_directory(windowed_model_dir):
    import json

    import polyner
    from polyner.models.io import ModelDirectoryError

    config = json.loads((windowed_model_dir / "config.json").read_text())
    config["ner_max_length"] = "sixty-four"
    (windowed_model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelDirectoryError, match=f"{windowed_model_dir}.*ner_max_length must be an int"):
        polyner.load(windowed_model_dir)
    assert polyner.load(windowed_model_dir, max_length=32).config.max_length == 32  # an explicit window still loads


@pytest.mark.parametrize("field,value", [("max_length", 3), ("max_length", "64"), ("stride", -1), ("batch_size", 0)])
def test_bad_tagger_settings_are_clear_errors(field, value):
    with pytest.raises(ValueError, match=f"{field} must be an int"):
        TaggerConfig(**{field: value})
