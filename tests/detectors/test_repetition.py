from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import pytest

from judgeserve.detectors.repetition import RepetitionScorer, analyse
from judgeserve.schema import Sample, Score

CLEAN = (
    "The committee met on Tuesday to review the budget. After a long discussion about "
    "staffing, travel costs and the new laboratory, members agreed to postpone the vote "
    "until the auditors deliver their report in March."
)


def scores(text: str, make_sample: Callable[..., Sample], **kw: int) -> dict[str, Score]:
    [out] = RepetitionScorer(**kw).score([make_sample(text)])
    return {s.scorer: s for s in out}


def test_a_loop_is_flagged_with_the_offsets_of_the_looping_span(
    make_sample: Callable[..., Sample],
) -> None:
    loop = "I like the morning. " * 6
    text = "Let me tell you about my day. " + loop + "The end"
    s = scores(text, make_sample)
    flag = s["repetition.loop"]
    assert flag.value is True
    start, end = flag.details["start"], flag.details["end"]
    # The phase of a loop is ambiguous by a token ("day. I like" also repeats from "."),
    # so check that the span holds the repeats and stays inside the loop, give or take it.
    begins = text.index(loop)
    assert begins - len("day. ") <= start and end <= begins + len(loop)
    assert text[start:end].count("I like the morning") >= 5
    assert flag.details["period_tokens"] == 5
    assert flag.details["repeats"] >= 6


def test_clean_text_has_no_loop_and_low_repetition(make_sample: Callable[..., Sample]) -> None:
    clean, looping = scores(CLEAN, make_sample), scores("the cat sat on the mat " * 10, make_sample)
    assert clean["repetition.loop"].value is False
    assert clean["repetition.loop"].details == {}
    for name in ("repetition.rep2", "repetition.rep3", "repetition.rep4", "repetition.compression"):
        assert looping[name].value > clean[name].value
    assert looping["repetition.longest_repeat"].value > clean["repetition.longest_repeat"].value


def test_single_word_loop_and_truncated_last_repeat(make_sample: Callable[..., Sample]) -> None:
    text = "Good morning morning morning morning morning morning morning morning morn"
    flag = scores(text, make_sample)["repetition.loop"]
    assert flag.value is True
    assert text[flag.details["start"] : flag.details["end"]].split() == ["morning"] * 8
    assert flag.details["unit"] == "morning"


def test_a_markdown_table_rule_is_not_a_loop(make_sample: Callable[..., Sample]) -> None:
    table = "| Name | Age | City | Job |\n| --- | --- | --- | --- |\n| Ann | 31 | Oslo | Chef |"
    assert scores(table, make_sample)["repetition.loop"].value is False


def test_a_short_repeat_is_not_a_loop(make_sample: Callable[..., Sample]) -> None:
    assert scores("No, no, no. I said it before.", make_sample)["repetition.loop"].value is False


def test_the_longest_repeat_reports_both_occurrences(make_sample: Callable[..., Sample]) -> None:
    phrase = "the quick brown fox jumps over the lazy dog while seven cats watch it from the old barn roof"
    text = f"First {phrase}. Then something else entirely happens here. Finally {phrase}!"
    s = scores(text, make_sample)["repetition.longest_repeat"]
    assert s.value == len(phrase.split())
    (a, b), (c, d) = s.details["first"], s.details["second"]
    assert text[a:b] == phrase and text[c:d] == phrase


@pytest.mark.parametrize("text", ["", "   ", "word", "a a", "!!!!!!!!!!!!"])
def test_degenerate_inputs(text: str, make_sample: Callable[..., Sample]) -> None:
    s = scores(text, make_sample)
    assert len(s) == 6
    assert all(0.0 <= s[f"repetition.rep{n}"].value <= 1.0 for n in (2, 3, 4))


def _brute_longest(ids: list[int]) -> int:
    best = 0
    for i in range(len(ids)):
        for j in range(i + 1, len(ids)):
            k = 0
            while j + k < len(ids) and ids[i + k] == ids[j + k]:
                k += 1
            best = max(best, k)
    return best


def test_analyse_agrees_with_brute_force() -> None:
    rng = random.Random(7)
    for _ in range(200):
        ids = [rng.randrange(4) for _ in range(rng.randrange(0, 40))]
        r = analyse(np.array(ids, dtype=np.int64), orders=(2,))
        assert r.longest == _brute_longest(ids)
        if r.longest:
            a, b = r.longest_at
            assert ids[a : a + r.longest] == ids[b : b + r.longest]
        if r.loop_period:
            p, s, e = r.loop_period, r.loop_start, r.loop_end
            assert e - s >= 3 * p
            assert all(ids[i] == ids[i + p] for i in range(s, e - p))
        grams = [tuple(ids[i : i + 2]) for i in range(len(ids) - 1)]
        expected = 1 - len(set(grams)) / len(grams) if grams else 0.0
        assert r.rep[2] == pytest.approx(expected)
