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


def test_previous_equal_keys_agree_with_a_dictionary() -> None:
    """The open-addressing table behind the repeat counts, against a plain dict: any
    int64 key (negative, equal low or high bits, so slots collide), lengths that make
    the table grow, and the n-gram counts of orders 2-4 on a larger alphabet."""
    from judgeserve.detectors._near_periodic import previous_equal

    rng = random.Random(11)
    pools = [
        [rng.randrange(-(2**63), 2**63) for _ in range(50)],
        [k << 40 for k in range(-20, 20)],  # equal low bits
        list(range(-30, 30)),  # equal high bits
    ]
    for _ in range(120):
        pool = rng.choice(pools)
        keys = [rng.choice(pool) for _ in range(rng.randrange(0, 1500))]
        last: dict[int, int] = {}
        expected = []
        for i, k in enumerate(keys):
            expected.append(last.get(k, -1))
            last[k] = i
        assert previous_equal(np.array(keys, dtype=np.int64)).tolist() == expected
    for _ in range(50):
        ids = [rng.randrange(40) for _ in range(rng.randrange(0, 600))]
        r = analyse(np.array(ids, dtype=np.int64))
        for n in (2, 3, 4):
            grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
            expected_rep = 1 - len(set(grams)) / len(grams) if grams else 0.0
            assert r.rep[n] == pytest.approx(expected_rep)


ART_LOOP = "Here is an ASCII drawing of a fence:\n\n" + "|  |  |  |  |\n" * 150 + "|  | "


def test_a_punctuation_only_line_drawn_hundreds_of_times_is_a_wordless_loop(
    make_sample: Callable[..., Sample],
) -> None:
    flag = scores(ART_LOOP, make_sample)["repetition.loop"]
    assert flag.value is True
    assert flag.details["kind"] == "wordless"
    start, end = flag.details["start"], flag.details["end"]
    assert ART_LOOP.index("|") <= start < ART_LOOP.index("|") + 20
    assert end >= len(ART_LOOP) - 10


@pytest.mark.parametrize(
    "text",
    [
        "Results\n" + "=" * 80 + "\nAll 42 tests passed.\n" + "-" * 80,
        "|" + "---|" * 14 + "\n|" + " 1 |" * 14,
        "1/6 + 1/6 + 1/6 + 1/6 + 1/6 = 5/6, so the probability is 5/6.",
        "That is roughly 69,000,000,000,000 kWh of energy.",
        "+---+---+---+---+---+---+---+---+\n"
        + "| p | p | p | p | p | p | p | p |\n+---+---+---+---+---+---+---+---+\n"
        + "|   |   |   |   |   |   |   |   |\n+---+---+---+---+---+---+---+---+\n" * 4,
        "<div><div></div></div>\n<div><div><div><div><p>David has three sisters.</p></div></div></div>",
    ],
    ids=["separators", "wide-table-rule", "sum", "big-number", "chessboard", "html-nesting"],
)
def test_punctuation_numbers_and_markup_that_repeat_briefly_are_not_loops(
    text: str, make_sample: Callable[..., Sample]
) -> None:
    flag = scores(text, make_sample)["repetition.loop"]
    assert flag.value is False, flag.details


VERSE = (
    "I walked along the {} at night,\nThe stars were shining cold and bright,\n"
    "I thought of you and all we knew,\nAnd every road that led me through.\n\n"
    "Oh, sing it loud, sing it clear,\nThe road is long but home is near.\n\n"
)


def test_a_verse_sung_again_with_one_word_swapped_each_time_is_a_near_loop(
    make_sample: Callable[..., Sample],
) -> None:
    words = ["river", "highway", "shoreline", "railway", "mountain"]
    text = "Title: Home\n\n" + "".join(VERSE.format(w) for w in words)
    flag = scores(text, make_sample)["repetition.loop"]
    assert flag.value is True
    assert flag.details["kind"] == "near"
    # The span runs from the first verse to the last; the unit is one verse.
    assert flag.details["start"] <= text.index("I walked") + 2
    assert flag.details["end"] >= text.rindex("home is near")
    assert 35 <= flag.details["period_tokens"] <= 60
    # The exact-repeat analysis alone misses it: the swapped word breaks the period.
    [out] = RepetitionScorer(near=None).score([make_sample(text)])
    assert out[-1].value is False


def test_a_table_of_contents_restarting_with_new_numbers_is_a_near_loop(
    make_sample: Callable[..., Sample],
) -> None:
    titles = ["Introduction", "Getting Started", "Installation", "Configuration", "Usage"]
    text = "Contents:\n" + "\n".join(f"{k + 1}. {titles[k % 5]}" for k in range(40))
    flag = scores(text, make_sample)["repetition.loop"]
    assert flag.value is True and flag.details["kind"] == "near"
    assert flag.details["repeats"] >= 6


def test_a_table_of_contents_with_dot_leaders_is_a_near_loop(
    make_sample: Callable[..., Sample],
) -> None:
    """Sections restart under new chapter numbers, with page numbers after dot leaders.
    Ten dots are one drawn element: counted as ten tokens they would outweigh the titles
    and pass the loop off as punctuation (the word share)."""
    from judgeserve.detectors._near_periodic import candidates, text_classes

    titles = ["Getting Started", "Basic Usage", "Advanced Topics", "Common Problems"]
    text = "Contents:\n" + "\n".join(
        f"{c}.{k + 1} {t} .......... {4 * (4 * (c - 1) + k) + 3}"
        for c in range(1, 7)
        for k, t in enumerate(titles)
    )
    flag = scores(text, make_sample)["repetition.loop"]
    assert flag.value is True and flag.details["kind"] == "near", flag.details
    best = max(candidates(text_classes(text)), key=lambda c: c.covered)
    # Per line 2 words in 7 elements ("1" "." "1" two words, the leader, the page); by
    # tokens, 2 in 16, under the 20% a loop needs.
    assert best.word_share == pytest.approx(2 / 7, abs=0.02)


def test_a_table_with_rules_is_not_a_loop(make_sample: Callable[..., Sample]) -> None:
    rows = [("Ann", 31, "Oslo"), ("Bo", 28, "Lund"), ("Cy", 45, "Rome"), ("Di", 39, "Kyiv"),
            ("Ed", 52, "Lima"), ("Flo", 23, "Baku"), ("Gus", 61, "Riga"), ("Hal", 34, "Bern")]
    text = "| Name | Age | City |\n|----------|-----|----------|\n" + "\n".join(
        f"| {n} | {a} | {c} |\n|----------|-----|----------|" for n, a, c in rows
    )
    flag = scores(text, make_sample)["repetition.loop"]
    assert flag.value is False, flag.details


@pytest.mark.parametrize(
    "text",
    [
        "\n".join(
            f"{n}. {s}"
            for n, s in enumerate(
                [
                    "Preheat the oven to 180 C and grease a round tin.",
                    "Whisk the eggs and sugar until pale and fluffy.",
                    "Fold in the flour and the baking powder.",
                    "Melt the butter and stir it in with the vanilla.",
                    "Pour the batter into the tin and smooth the top.",
                    "Bake for 35 minutes, until a skewer comes out clean.",
                    "Leave the cake to cool for ten minutes.",
                    "Spread the frosting and decorate with berries.",
                ],
                1,
            )
        ),
        "\n".join(
            f"Company {c}: ${p} billion profit / ${r} billion revenue = {m}% profit margin"
            for c, p, r, m in [
                ("X", 3, 30, 10),
                ("Y", 6, 60, 10),
                ("Z", 7, 20, 35),
                ("W", 21, 300, 7),
                ("V", 25, 200, 12),
                ("U", 20, 180, 11),
                ("T", 9, 45, 20),
                ("S", 4, 80, 5),
            ]
        ),
        "\n".join(", ".join(f"({a},{b})" for b in range(1, 7)) for a in range(1, 7)),
        "\n".join(f"7 x {i} = {7 * i}" for i in range(1, 13)),
        "\n".join(
            f'  {{"month": "2022-{m:02d}", "highest": {h}, "lowest": {lo}}},'
            for m, h, lo in zip(
                range(1, 13),
                [156, 164, 171, 169, 180, 186, 181, 192, 197, 190, 203, 210],
                [149, 160, 163, 160, 171, 178, 175, 184, 190, 185, 195, 203],
                strict=True,
            )
        ),
        "Verse 1:\nThe city lights are fading out,\nThe last train's leaving town.\n\n"
        "Chorus:\nAnd I will find my way back home,\nThrough the rain and through the snow.\n\n"
        "Verse 2:\nWe said goodbye on Sunday,\nThe coffee getting cold.\n\n"
        "Chorus:\nAnd I will find my way back home,\nThrough the rain and through the snow.\n\n"
        "Verse 3:\nNow every street remembers\nThe way we used to walk.\n\n"
        "Chorus:\nAnd I will find my way back home,\nThrough the rain and through the snow.",
    ],
    ids=[
        "numbered-list",
        "profit-table",
        "dice-grid",
        "times-table",
        "json-records",
        "song-chorus",
    ],
)
def test_structured_answers_are_not_loops(text: str, make_sample: Callable[..., Sample]) -> None:
    flag = scores(text, make_sample)["repetition.loop"]
    assert flag.value is False, flag.details
