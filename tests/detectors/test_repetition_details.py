"""What the repetition scorer reports, value by value, on texts whose answers are counted by hand.

The other repetition tests check that loops are found and structure is not; these pin the
scores and details a viewer reads (offsets, unit, repeats, kind), the switches between the
exact and wordless kinds, non-ASCII text (which takes the tokenizer's strings, not the ASCII
fast path), and the candidate search of near loops when a text holds more than one.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np
import pytest

from judgeserve.detectors._near_periodic import _periods, candidates, text_classes
from judgeserve.detectors.repetition import Loop, RepetitionScorer, analyse
from judgeserve.schema import Sample, Score


def scores(text: str, make_sample: Callable[..., Sample], **kw: object) -> dict[str, Score]:
    [out] = RepetitionScorer(**kw).score([make_sample(text)])  # type: ignore[arg-type]
    return {s.scorer: s for s in out}


# Tokens: Well , | I am fine . (x4) | Bye -- 19 tokens, the loop is tokens 2..17.
FINE = "Well, " + "I am fine. " * 4 + "Bye"


def test_every_score_of_a_looping_text_counted_by_hand(make_sample: Callable[..., Sample]) -> None:
    [out] = RepetitionScorer().score([make_sample(FINE)])
    assert [s.scorer for s in out] == [
        "repetition.rep2", "repetition.rep3", "repetition.rep4", "repetition.longest_repeat",
        "repetition.compression", "repetition.loop",
    ]
    assert {s.version for s in out} == {"2"}
    s = {x.scorer: x for x in out}
    # 18 bigrams, 7 distinct: (Well ,) (, I) (I am) (am fine) (fine .) (. I) (. Bye).
    assert s["repetition.rep2"].value == pytest.approx(1 - 7 / 18)
    assert s["repetition.rep3"].value == pytest.approx(1 - 7 / 17)
    assert s["repetition.rep4"].value == pytest.approx(1 - 7 / 16)
    assert s["repetition.rep2"].details == {}
    # "I am fine . I am fine . I am fine ." twice, 4 tokens apart: 12 tokens, under the
    # 2 x min_tokens that earns offsets.
    assert s["repetition.longest_repeat"].value == 12.0
    assert s["repetition.longest_repeat"].details == {"tokens": 12}
    raw = FINE.encode()
    assert s["repetition.compression"].value == pytest.approx(len(raw) / len(zlib.compress(raw, 1)))
    assert s["repetition.compression"].details == {"bytes": len(raw)}
    loop = s["repetition.loop"]
    assert loop.value is True
    assert loop.details == {
        "kind": "exact", "start": 6, "end": len(FINE) - len(" Bye"), "period_tokens": 4,
        "repeats": 4.0, "unit": "I am fine.",
    }


def test_only_the_orders_asked_for_are_scored(make_sample: Callable[..., Sample]) -> None:
    s = scores(FINE, make_sample, orders=(3,))
    assert [n for n in s if n.startswith("repetition.rep")] == ["repetition.rep3"]
    assert s["repetition.rep3"].value == pytest.approx(1 - 7 / 17)
    assert s["repetition.loop"].value is True
    # An order the defaults lack: 15 5-grams, 7 distinct (starts 0-5 and the last).
    s = scores(FINE, make_sample, orders=(5,))
    assert [n for n in s if n.startswith("repetition.rep")] == ["repetition.rep5"]
    assert s["repetition.rep5"].value == pytest.approx(1 - 7 / 15)


@pytest.mark.parametrize(("settings", "shown"), [({}, True), ({"min_tokens": 9}, False)])
def test_a_repeat_of_twice_min_tokens_tokens_shows_both_occurrences(
    settings: dict[str, int], shown: bool, make_sample: Callable[..., Sample]
) -> None:
    text = "I am fine. " * 5  # 20 tokens: the first 16 occur again 4 tokens later
    s = scores(text, make_sample, **settings)["repetition.longest_repeat"]
    assert s.value == 16.0
    if shown:  # by default min_tokens is 8
        assert s.details == {"tokens": 16, "first": [0, 43], "second": [11, 54]}
        assert text[0:43] == text[11:54]
    else:
        assert s.details == {"tokens": 16}


PHRASE = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"


@pytest.mark.parametrize(
    "text",
    [
        f"{PHRASE} then {PHRASE} and later " + "go on " * 6,
        "go on " * 6 + f"and {PHRASE} then {PHRASE}",
    ],
    ids=["loop-after", "loop-before"],
)
def test_a_repeat_and_a_loop_in_one_text_both_get_their_offsets(
    text: str, make_sample: Callable[..., Sample]
) -> None:
    # The offsets are computed once, up to the furthest token either detail needs.
    s = scores(text, make_sample)
    rep = s["repetition.longest_repeat"]
    assert rep.value == 16.0
    first = text.index(PHRASE)
    second = text.index(PHRASE, first + 1)
    assert rep.details["first"] == [first, first + len(PHRASE)]
    assert rep.details["second"] == [second, second + len(PHRASE)]
    loop = s["repetition.loop"]
    assert loop.value is True
    begins = text.index("go on")
    assert (loop.details["start"], loop.details["end"]) == (begins, begins + len("go on " * 6) - 1)
    assert (loop.details["period_tokens"], loop.details["repeats"], loop.details["unit"]) == (2, 6.0, "go on")


def test_a_truncated_last_unit_gives_fractional_repeats_rounded_to_two_places(
    make_sample: Callable[..., Sample],
) -> None:
    text = "Sing: la di da la di da la di da la"  # 10 tokens of period 3
    loop = scores(text, make_sample)["repetition.loop"]
    assert loop.details == {
        "kind": "exact", "start": 6, "end": len(text), "period_tokens": 3, "repeats": 3.33,
        "unit": "la di da",
    }


def test_a_long_unit_is_shown_cut_at_200_characters(make_sample: Callable[..., Sample]) -> None:
    unit = " ".join(f"word{k}" for k in range(60)) + ". "  # 61 tokens, 410 characters
    text = unit * 3
    loop = scores(text, make_sample)["repetition.loop"]
    assert loop.details["period_tokens"] == 61
    assert loop.details["unit"] == text[:200]
    assert (loop.details["start"], loop.details["end"]) == (0, len(text) - 1)


def test_empty_and_single_token_texts_score_nothing(make_sample: Callable[..., Sample]) -> None:
    for text in ["", "word"]:
        s = scores(text, make_sample)
        assert [s[f"repetition.rep{n}"].value for n in (2, 3, 4)] == [0.0, 0.0, 0.0]
        assert s["repetition.longest_repeat"].value == 0.0
        assert s["repetition.longest_repeat"].details == {"tokens": 0}
        assert s["repetition.loop"].value is False and s["repetition.loop"].details == {}
    empty = scores("", make_sample)["repetition.compression"]
    assert (empty.value, empty.details) == (1.0, {"bytes": 0})


def test_analyse_short_sequences_and_the_loop_repeats() -> None:
    for ids in ([], [7]):
        r = analyse(np.array(ids, dtype=np.int64))
        assert r.rep == {2: 0.0, 3: 0.0, 4: 0.0}
        assert (r.longest, r.longest_at, r.loop_period, r.loop_repeats) == (0, (0, 0), 0, 0.0)
    r = analyse(np.array([1, 1], dtype=np.int64))
    assert r.rep == {2: 0.0, 3: 0.0, 4: 0.0}  # one bigram, distinct
    assert (r.longest, r.longest_at, r.loop_period) == (1, (0, 1), 0)  # 2 tokens: not 3 repeats
    r = analyse(np.array([9, 5, 9], dtype=np.int64))  # the repeat lies length - 1 apart
    assert (r.longest, r.longest_at) == (1, (0, 2))
    # Orders in any order: one longer than the text does not stop the shorter ones.
    assert r.rep == {2: 0.0, 3: 0.0, 4: 0.0}
    assert analyse(np.array([9, 5, 9], dtype=np.int64), orders=(4, 2, 5, 1)).rep == pytest.approx(
        {4: 0.0, 2: 0.0, 5: 0.0, 1: 1 - 2 / 3}
    )
    r = analyse(np.array([5, 6, 5, 6, 5, 6, 5], dtype=np.int64))
    assert (r.loop_period, r.loop_start, r.loop_end, r.loop_repeats) == (2, 0, 7, 3.5)
    assert r.rep[2] == pytest.approx(1 - 2 / 6)
    assert Loop("exact", 4, 2, 12).repeats == 2.5


def test_a_text_with_more_loop_candidates_than_kept_still_reports_its_loop() -> None:
    # 800 equal tokens: a run at every distance up to 266 qualifies (m + p >= 3p), more
    # than the 256 candidate rows; period 1 over all of them is the loop.
    r = analyse(np.zeros(800, dtype=np.int64), max_distance=300)
    assert (r.loop_period, r.loop_start, r.loop_end) == (1, 0, 800)
    assert (r.longest, r.longest_at) == (799, (0, 1))


@pytest.mark.parametrize(
    ("text", "kind", "period"),
    [
        ("Oh: hello! hello! hello! hello!", "exact", 2),  # the word opens the unit
        ("Oh: , hello , hello , hello , hello", "exact", 2),  # the word closes the unit
        ("Note: " + "=" * 100, "wordless", 1),
        ("Note: " + "=" * 99, None, 0),  # wordless_min_tokens is 100
    ],
)
def test_a_unit_with_a_word_anywhere_is_an_exact_loop_one_without_is_wordless(
    text: str, kind: str | None, period: int
) -> None:
    loop = RepetitionScorer(near=None).loop(text)
    if kind is None:
        assert loop is None
    else:
        assert loop is not None and (loop.kind, loop.period) == (kind, period)
        assert loop.end == len(text_classes(text))


@pytest.mark.parametrize(("text", "found"), [("Note: " + "-+" * 10, True), ("Note: " + "-+" * 9 + "-", False)])
def test_a_wordless_loop_needs_wordless_min_repeats(text: str, found: bool) -> None:
    scorer = RepetitionScorer(wordless_min_tokens=10, wordless_min_repeats=10, near=None)
    loop = scorer.loop(text)
    if found:
        assert loop is not None and (loop.kind, loop.period, loop.start, loop.end) == ("wordless", 2, 2, 22)
    else:
        assert loop is None  # 19 tokens of period 2: 9.5 repeats
    # Both settings are needed: the tokens alone or the repeats alone are not enough.
    assert RepetitionScorer(wordless_min_tokens=21, wordless_min_repeats=10).loop(text) is None
    assert RepetitionScorer(wordless_min_tokens=10, wordless_min_repeats=11).loop(text) is None


@pytest.mark.parametrize("text", ["</div>" * 6, "Menú: " + "</div>" * 6, "<em>" * 10])
def test_html_tag_names_are_markup_not_words(text: str) -> None:
    # A word in the unit would make 24-36 tokens an exact loop; as markup they are wordless.
    assert RepetitionScorer().loop(text) is None
    # The same names after "(" instead of "<" are words.
    assert RepetitionScorer().loop(text.replace("<", "(")) is not None


def test_a_cjk_loop_in_non_ascii_text_is_found_with_its_offsets(
    make_sample: Callable[..., Sample],
) -> None:
    text = "Ça va? " + "我很好。" * 5  # each CJK character is a token and a word
    loop = scores(text, make_sample)["repetition.loop"]
    assert loop.details == {
        "kind": "exact", "start": 7, "end": len(text), "period_tokens": 4, "repeats": 5.0,
        "unit": "我很好。",
    }


@pytest.mark.parametrize(
    "text",
    [
        "Échecs :\n" + "| p " * 12 + "|",  # lone ASCII letters: pawns, not words
        "Línea: " + "—" * 60,  # marks are not words
        "Le comité s'est réuni mardi pour examiner le budget. Après une longue discussion "
        "sur le personnel, les déplacements et le nouveau laboratoire, les membres ont décidé "
        "de reporter le vote jusqu'au rapport des auditeurs en mars.",
    ],
    ids=["pawns", "dashes", "prose"],
)
def test_non_ascii_text_that_does_not_loop(text: str, make_sample: Callable[..., Sample]) -> None:
    s = scores(text, make_sample)
    assert s["repetition.loop"].value is False, s["repetition.loop"].details


def test_non_ascii_prose_counts_distinct_tokens(make_sample: Callable[..., Sample]) -> None:
    s = scores("Ça va très bien, merci beaucoup à vous.", make_sample)  # 9 distinct tokens
    assert s["repetition.rep2"].value == 0.0
    assert s["repetition.longest_repeat"].value == 0.0


def test_a_non_ascii_table_of_contents_restarting_with_new_numbers_is_a_near_loop(
    make_sample: Callable[..., Sample],
) -> None:
    # Numbers are folded into one token in non-ASCII text too: every 4-gram here holds one.
    titles = ["Introducción", "Primeros pasos", "Instalación", "Configuración", "Uso"]
    text = "Índice:\n" + "\n".join(f"{k + 1}. {titles[k % 5]}" for k in range(40))
    loop = scores(text, make_sample)["repetition.loop"]
    assert loop.value is True and loop.details["kind"] == "near"
    assert loop.details["period_tokens"] == 16
    [c] = [c for c in candidates(text_classes(text)) if c.period == 16]
    assert c.data_share == 0.0  # the numbers count up by 5, copy after copy


WORDS8 = "alpha beta gamma delta epsilon zeta eta"
WORDS13 = "one two three four five six seven eight nine ten eleven twelve"


def test_of_two_near_loops_the_one_covering_more_tokens_is_reported(
    make_sample: Callable[..., Sample],
) -> None:
    # Two numbered lists: units of 8 tokens x 10 (72 covered) then of 13 tokens x 10 (117).
    first = " ".join(f"{k} {WORDS8}" for k in range(1, 11))
    second = " ".join(f"{k} {WORDS13}" for k in range(1, 11))
    text = f"{first} {second}"
    found = {c.period: c for c in candidates(text_classes(text))}
    # Numbers fold into one token: "epsilon zeta eta 1" copies "epsilon zeta eta 10", so
    # the first region ends on the second list's first number.
    assert (found[8].start, found[8].end, found[8].covered) == (8, 81, 73)
    assert (found[13].start, found[13].end, found[13].covered) == (93, 210, 117)
    loop = scores(text, make_sample)["repetition.loop"]
    assert loop.details == {
        "kind": "near", "start": len(first) + 1, "end": len(text), "period_tokens": 13,
        "repeats": 10.0, "unit": f"1 {WORDS13}",
    }
    # Alone, the first list is the loop, from its first copy.
    loop = scores(first, make_sample)["repetition.loop"]
    assert (loop.details["start"], loop.details["end"], loop.details["period_tokens"]) == (0, len(first), 8)
    assert loop.details["repeats"] == 10.0
    # Exact loops only: neither is one (a number breaks each copy).
    assert scores(text, make_sample, near=None)["repetition.loop"].value is False


def _prev(starts: dict[int, int], length: int = 60) -> np.ndarray:
    """``prev`` with ``count`` 4-gram starts repeating at each ``distance``."""
    prev = np.full(length, -1, dtype=np.int64)
    i = 20 + max(starts)  # each start has its copy in range
    for distance, count in starts.items():
        for _ in range(count):
            prev[i] = i - distance
            i += 1
    return prev


@pytest.mark.parametrize(
    ("starts", "kept"),
    [
        ({12: 8, 10: 7}, [12, 10]),  # 12 +- 2.4: [10, 14]; 10 +- 2: [8, 12]: both hold 15
        ({12: 8, 9: 7}, []),  # 9 is under ceil(12 - 2.4) and 12 over 9 + 2
        ({12: 8, 16: 7}, []),  # 16 is over int(12 + 2.4) and 12 under 16 - 3.2
        ({12: 8, 15: 7}, [15]),  # 15 - 3 reaches 12, but 12 + 2.4 does not reach 15
        ({10: 8, 8: 7}, [10, 8]),  # 10 - 2 = 8 and 8 + 2 = 10: windows include their ends
    ],
)
def test_a_period_counts_the_repeats_within_its_tolerance(
    starts: dict[int, int], kept: list[int]
) -> None:
    assert _periods(_prev(starts), 512, 8).tolist() == kept


def test_the_most_frequent_periods_come_first_up_to_k() -> None:
    prev = _prev({7: 16, 30: 20, 50: 18}, length=160)
    assert _periods(prev, 512, 8).tolist() == [30, 50, 7]
    assert _periods(prev, 512, 2).tolist() == [30, 50]
    assert _periods(prev, 40, 8).tolist() == [30, 7]  # 50 lies beyond max_distance
    assert _periods(_prev({5: 1}), 512, 8).tolist() == []


def test_analyse_looks_for_repeats_up_to_512_tokens_back_by_default() -> None:
    ids = np.arange(600, dtype=np.int64)
    ids[512] = ids[0]
    assert (analyse(ids).longest, analyse(ids).longest_at) == (1, (0, 512))
    ids[512], ids[513] = 512, ids[0]
    assert analyse(ids).longest == 0
    assert analyse(ids, max_distance=513).longest_at == (0, 513)



@pytest.mark.parametrize(("unit_tokens", "found"), [(512, True), (513, False)])
def test_the_scorer_looks_512_tokens_back_by_default(unit_tokens: int, found: bool) -> None:
    text = " ".join(f"w{k}" for k in range(unit_tokens)) + " "
    loop = RepetitionScorer().loop(text * 3)
    if found:
        assert loop is not None and (loop.kind, loop.period, loop.start, loop.end) == ("exact", 512, 0, 1536)
    else:
        assert loop is None


@pytest.mark.parametrize(("tokens", "found"), [(110, True), (109, False)])
def test_a_wordless_loop_needs_ten_repeats_by_default(tokens: int, found: bool) -> None:
    unit = "+-*/=<>!?#%"  # 11 marks, 11 tokens
    text = "Art: " + (unit * 10)[:tokens]
    loop = RepetitionScorer().loop(text)
    if found:
        assert loop is not None and (loop.kind, loop.period, loop.start, loop.end) == ("wordless", 11, 2, 112)
    else:
        assert loop is None  # 109 tokens, over 100, but 9.9 repeats


def test_near_loop_periods_stop_at_max_distance() -> None:
    text = " ".join(f"{k} {WORDS13}" for k in range(1, 11))
    loop = RepetitionScorer(max_distance=13).loop(text)
    assert loop is not None and (loop.kind, loop.period, loop.start, loop.end) == ("near", 13, 0, 130)
    assert RepetitionScorer(max_distance=12).loop(text) is None


def test_a_period_must_recur_at_least_twice() -> None:
    # Twenty distances once each: nothing, though 20 starts lie within any window.
    assert _periods(_prev(dict.fromkeys(range(40, 60), 1), length=120), 512, 8).tolist() == []
    # Eight distances twice each, 16 starts: each window of +- 9-10 holds them all.
    prev = _prev(dict.fromkeys(range(45, 53), 2), length=100)
    assert _periods(prev, 512, 8).tolist() == list(range(45, 53))


def test_the_previous_equal_4gram_of_each_start() -> None:
    from judgeserve.detectors._near_periodic import _previous

    # Starts 0 and 8 hold "1 2 3 4"; start 4 holds "1 9 3 4", which differs only inside.
    norm = np.array([1, 2, 3, 4, 1, 9, 3, 4, 1, 2, 3, 4], dtype=np.int64)
    assert _previous(norm, 4).tolist() == [-1] * 8 + [0]
    rng = np.random.default_rng(4)
    for _ in range(30):
        norm = rng.integers(0, 3, size=int(rng.integers(4, 60)))
        grams = [tuple(norm[i : i + 4]) for i in range(len(norm) - 3)]
        last: dict[tuple[int, ...], int] = {}
        expected = []
        for i, g in enumerate(grams):
            expected.append(last.get(g, -1))
            last[g] = i
        assert _previous(norm.astype(np.int64), 4).tolist() == expected


@pytest.mark.parametrize(
    ("numbers", "data"),
    [
        (["4"] * 9 + ["9"], 1),  # one change, one step: data
        (["5", "5", "17", "3", "99", "42", "8", "61", "23", "70"], 8),  # 5 then 5: unchanged
        (["5"] * 7 + ["2", "12", "22"], 1),  # -3 once, +10 twice: the +10s count
    ],
)
def test_a_number_step_taken_once_is_data_one_taken_twice_a_counter(
    numbers: list[str], data: int
) -> None:
    text = " ".join(f"{k} {WORDS8}" for k in numbers)
    [c] = candidates(text_classes(text))
    assert (c.period, c.covered) == (8, 72)
    assert c.data_share == pytest.approx(data / 72)


def test_counting_from_one_to_forty_is_a_counter_without_words() -> None:
    text = " ".join(str(k) for k in range(1, 41))
    found = candidates(text_classes(text))
    assert found and all(c.data_share == 0.0 and c.word_share == 0.0 for c in found)
    assert RepetitionScorer().loop(text) is None


@pytest.mark.parametrize(("max_distance", "periods"), [(None, []), (513, [513])])
def test_near_loop_candidates_look_512_tokens_back_by_default(
    max_distance: int | None, periods: list[int]
) -> None:
    text = (" ".join(f"w{k}" for k in range(513)) + " ") * 3
    classes = text_classes(text)
    found = candidates(classes) if max_distance is None else candidates(classes, max_distance)
    assert [c.period for c in found] == periods


def test_a_token_seen_for_the_first_time_gets_its_class_and_a_distinct_id() -> None:
    # A fresh table: the module's own one already holds every token earlier tests used.
    from judgeserve.detectors._near_periodic import NUMBER, OTHER, WORD, _Codes

    codes = _Codes()
    classes = {
        "Ça": WORD, "好": WORD, "é": WORD, "word": WORD, "x2": WORD,  # a lone non-ASCII letter is a word
        "12": NUMBER, "٣": NUMBER, "07": NUMBER,  # decimal digits, any script
        "p": OTHER, "—": OTHER, "|": OTHER, "_": OTHER,  # lone ASCII letters and marks
    }
    assert {t: codes[t] & 3 for t in classes} == classes
    tokens = [f"mot{k}" for k in range(200)] + [str(k) for k in range(200, 400)] + list(classes)
    ids = [codes[t] for t in tokens]
    assert len(set(ids)) == len(tokens)  # distinct tokens, distinct ids
    assert [codes[t] for t in tokens] == ids and all(t in codes for t in tokens)


@pytest.mark.parametrize(("text", "found"), [("Well: go on go on go on go on", True), ("Well: go on go on go on go", False)])
def test_a_word_loop_needs_eight_tokens_by_default(text: str, found: bool) -> None:
    loop = RepetitionScorer().loop(text)
    if found:
        assert loop is not None and (loop.kind, loop.period, loop.start, loop.end) == ("exact", 2, 2, 10)
    else:
        assert loop is None  # 3.5 repeats, over min_repeats, but 7 tokens
